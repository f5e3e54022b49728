"""Images from paths, URLs, data URIs, bytes or PIL objects, validated before use.

Every failure is a ``MediaError`` naming the source and the reason: missing file,
not an image, truncated data, a decompression bomb (too many pixels, checked from
the header before decoding).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import MediaError
from .fetch import FetchPolicy, fetch_url


@dataclass(frozen=True)
class MediaLimits:
    """Caps applied to every media input before it is decoded.

    Attributes:
        max_image_pixels: largest width x height of a source image or video frame (decompression bombs).
        max_aspect_ratio: the most elongated image or frame (longer side / shorter side) the models take
            (qwen-vl-utils' own limit is 200); checked from the header, before decoding.
        max_file_bytes: largest file, download or inline payload read.
        max_video_seconds: longest video decoded.
        max_video_frames: most frames in a video (file or frame list).
        fetch: URL policy; ``None`` refuses every URL.
    """

    max_image_pixels: int = 64_000_000
    max_aspect_ratio: float = 200.0
    max_file_bytes: int = 512 * 1024 * 1024
    max_video_seconds: float = 4 * 3600.0
    max_video_frames: int = 1_000_000
    fetch: FetchPolicy | None = FetchPolicy()


@dataclass(frozen=True)
class NamedFile:
    """A local stand-in for another source: a downloaded object, an archive member, a document
    converted to PDF. Decoders read ``data`` (a local path, or the bytes themselves); messages
    name ``name`` (the source the user knows), never the private copy.

    Example:
        >>> describe(NamedFile(Path("/tmp/x1.pdf"), "s3://bucket/report.pdf"))
        "'s3://bucket/report.pdf'"
    """

    data: Path | bytes
    name: str


def describe(src: Any) -> str:
    """A short printable name for a media source, for error messages."""
    if isinstance(src, NamedFile):
        return describe(src.name)
    if isinstance(src, (str, Path)):
        text = str(src)
        if text.startswith("data:"):
            return text[:30] + "..."
        return repr(text if len(text) < 200 else text[:200] + "...")
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return f"<PIL image {src.width}x{src.height}>"
    return f"<{type(src).__name__}>"


def is_url(src: Any) -> bool:
    return isinstance(src, str) and "://" in src[:16] and not src.startswith("file://")


def read_source(src: str | Path | bytes | bytearray | memoryview | NamedFile, limits: MediaLimits) -> bytes:
    """The raw bytes of a path, ``file://`` path, URL, data URI, byte string or ``NamedFile``."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif isinstance(src, NamedFile) and isinstance(src.data, bytes):
        if len(src.data) > limits.max_file_bytes:
            raise MediaError(f"{describe(src)}: {len(src.data)} bytes, larger than {limits.max_file_bytes}")
        data = src.data
    elif isinstance(src, str) and src.startswith("data:"):
        header, sep, payload = src.partition(",")
        if not sep or ";base64" not in header:
            raise MediaError(f"{describe(src)}: only base64 data URIs are supported")
        if len(payload) * 3 // 4 > limits.max_file_bytes:
            raise MediaError(f"{describe(src)}: larger than {limits.max_file_bytes} bytes")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MediaError(f"{describe(src)}: invalid base64 payload ({exc})") from None
    elif is_url(src):
        if limits.fetch is None:
            raise MediaError(f"{describe(src)}: URL inputs are disabled")
        policy = limits.fetch
        if policy.max_bytes > limits.max_file_bytes:
            policy = replace(policy, max_bytes=limits.max_file_bytes)
        data = fetch_url(src, policy)
    elif isinstance(src, (str, Path, NamedFile)):
        path = _checked_path(src, limits)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MediaError(f"{describe(src)}: cannot read ({exc.strerror or exc})") from None
    else:
        raise MediaError(f"{describe(src)}: unsupported media type {type(src).__name__}")
    if not data:
        raise MediaError(f"{describe(src)}: empty file")
    return data


def local_file(src: Any, limits: MediaLimits) -> Path | None:
    """The path of a local file source (plain, ``file://`` or a ``NamedFile`` on a path), checked as
    ``read_source`` would check it (exists, regular, readable, not empty, within ``max_file_bytes``)
    but not read, so a decoder can stream it; ``None`` for URLs, data URIs, bytes and other sources.

    Example:
        >>> local_file("clip.mp4", MediaLimits())
        PosixPath('clip.mp4')
    """
    if isinstance(src, NamedFile):
        if isinstance(src.data, bytes):
            return None
    elif not isinstance(src, (str, Path)) or is_url(src) or str(src).startswith("data:"):
        return None
    path = _checked_path(src, limits)
    try:
        with open(path, "rb") as handle:
            empty = not handle.read(1)
    except OSError as exc:
        raise MediaError(f"{describe(src)}: cannot read ({exc.strerror or exc})") from None
    if empty:
        raise MediaError(f"{describe(src)}: empty file")
    return path


def _checked_path(src: str | Path | NamedFile, limits: MediaLimits) -> Path:
    if isinstance(src, NamedFile):
        path = Path(src.data)  # type: ignore[arg-type]
    else:
        path = Path(str(src)[7:] if str(src).startswith("file://") else src)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise MediaError(f"{describe(src)}: not a regular file")
    except FileNotFoundError:
        raise MediaError(f"{describe(src)}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{describe(src)}: cannot read ({exc.strerror or exc})") from None
    if size > limits.max_file_bytes:
        raise MediaError(f"{describe(src)}: {size} bytes, larger than {limits.max_file_bytes}")
    return path


def load_image(src: Any, limits: MediaLimits | None = None) -> Image.Image:
    """Decode an image fully and check it against the limits.

    Args:
        src: path, ``file://`` path, http(s) URL, data URI, bytes or ``PIL.Image``.
        limits: caps; the defaults of ``MediaLimits`` when omitted.

    Returns:
        A loaded ``PIL.Image`` (first frame of animations), in its original mode.

    Example:
        >>> load_image("page.png").size
        (1240, 1754)
    """
    limits = limits or MediaLimits()
    if isinstance(src, Image.Image):
        _check_pixels(src, src, limits)
        return src
    local = local_file(src, limits)  # read by the decoder as it needs: a 400 MB GIF's first frame is not 400 MB
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(local if local is not None else io.BytesIO(read_source(src, limits)))
            _check_pixels(src, image, limits)
            image.load()
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(f"{describe(src)}: not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(f"{describe(src)}: too many pixels (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(f"{describe(src)}: corrupt or truncated image ({exc})") from None
    if image.width < 1 or image.height < 1:
        raise MediaError(f"{describe(src)}: image has no pixels")
    return image


def _check_pixels(src: Any, image: Image.Image, limits: MediaLimits) -> None:
    check_size(describe(src), image.width, image.height, limits)


def check_size(name: str, width: int, height: int, limits: MediaLimits) -> None:
    """Refuse an image or frame size (known from a header) over the pixel or aspect-ratio cap."""
    pixels = width * height
    if pixels > limits.max_image_pixels:
        raise MediaError(f"{name}: {width}x{height} = {pixels} pixels, over the limit of "
                         f"{limits.max_image_pixels} (decompression bomb guard)")
    if min(width, height) >= 1 and max(width, height) / min(width, height) > limits.max_aspect_ratio:
        raise MediaError(f"{name}: {width}x{height} is too elongated (aspect ratio "
                         f"{max(width, height) / min(width, height):.0f}, over {limits.max_aspect_ratio:.0f})")


#: EXIF orientation (tag 0x0112) -> the transpose that shows the stored pixels upright (as viewers do)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def orientation(image: Image.Image) -> int:
    """An image's EXIF orientation (1-8; 1, upright, when absent or invalid)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block is no orientation
        return 1
    return value if value in _UPRIGHT else 1


def upright(image: Image.Image, turned: int) -> Image.Image:
    """The image as viewers show a file with EXIF orientation ``turned``.

    Example:
        >>> upright(Image.new("RGB", (40, 30)), 6).size
        (30, 40)
    """
    return image.transpose(_UPRIGHT[turned]) if turned in _UPRIGHT else image


def model_size(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 32) -> tuple[int, int]:
    """The (width, height) Qwen3-VL's preprocessing gives an image: each side a multiple of ``factor``,
    width x height within [``min_pixels``, ``max_pixels``], the aspect ratio kept as near as that allows.

    Example:
        >>> model_size(7000, 6000, 4096, 1843200)
        (1440, 1248)
    """
    w, h = max(factor, round(width / factor) * factor), max(factor, round(height / factor) * factor)
    if w * h > max_pixels:
        shrink = math.sqrt(width * height / max_pixels)
        w = max(factor, math.floor(width / shrink / factor) * factor)
        h = max(factor, math.floor(height / shrink / factor) * factor)
    elif w * h < min_pixels:
        grow = math.sqrt(min_pixels / (width * height))
        w, h = math.ceil(width * grow / factor) * factor, math.ceil(height * grow / factor) * factor
    return w, h


def within_budget(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """An image over ``max_pixels`` scaled to its ``model_size`` (bicubic, as the model's preprocessing
    scales it, which then has nothing left to do); any other image as it is."""
    if image.width * image.height <= max_pixels:
        return image
    return image.resize(model_size(image.width, image.height, min_pixels, max_pixels), Image.Resampling.BICUBIC)
