"""Turn one file into pieces ready to embed: PDF pages, an image, video segments, text chunks.

Each ``Piece`` carries the ``Item`` the embedder receives, plus what a search result
shows: source, page or time span, text, a small JPEG thumbnail. A piece's record id
derives from the file's path and the piece's locator, so re-ingesting a file gives the same ids. Every
failure is a ``MediaError`` (or ``InputError`` for bad options) naming the file and why.

Work on a file is cut into parts so that memory stays bounded whatever its size:
``plan_parts`` opens the file cheaply (a PDF's page count, a video's probe) and returns
``Part`` descriptors; ``extract_part`` makes the pieces of one part (a run of pages, a run
of video segments, a whole image or text file). ``extract`` does both, for small files
and tests; ``piece_item`` rebuilds the model input of one piece at search time.
"""

from __future__ import annotations

import io
import math
import re
import threading
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image

from ..errors import InputError, MediaError, VlsearchError
from ..items import Item
from ..locator import Located, Locator
from ..media.images import (MediaLimits, NamedFile, describe, load_image, orientation, read_source, upright,
                            within_budget)
from ..media.pdf import PdfPage, page_count, render_pages
from ..media.video import VideoInfo, probe
from .archives import ArchiveLimits
from .entries import Kind, kind_of
from .ocr import ENGINES, OCR_MODES, read_text, usable_text_layer
from .office import to_pdf
from .sources import local_copy
from .text import chunk_text, html_to_text
from .video_frames import Segment, decode_segments

__all__ = ["Piece", "Part", "ExtractOptions", "plan_parts", "extract_part", "extract", "iter_extract",
           "piece_item", "picture", "plan_segments", "chunk_text", "html_to_text", "thumbnail_jpeg", "to_rgb"]

THUMBNAIL_SIDE = 256
PDFIUM = threading.Lock()  # one PDFium call at a time in a process (extraction workers are processes)
_ID_TOLERANCE = 5e-4  # record ids give segment times to the millisecond
#: text-layer words kept with a page for regions (about 30 kB of metadata; Milvus takes 64 kB a record)
MAX_LAYER_WORDS = 1000


@dataclass
class Piece(Located):
    """One unit to embed and to show in results.

    Attributes:
        source: the file's path.
        content_hash: SHA-256 of the file's bytes.
        locator: modality ("text", "image", "pdf_page" or "video") and position: the PDF page
            (1-based), the video segment's start and end in seconds, the text chunk (0-based).
        text: what is shown and keyword-searched (text chunk, PDF text layer, "" otherwise).
        thumbnail: JPEG bytes, longest side <= 256 px (``None`` for text).
        metadata: per-modality details (sizes, page count, frame times, character offsets).
        item: what the embedder receives.

    Its record id is ``record_id``: the same for the same source and locator, whatever the bytes.

    Example:
        >>> piece = extract("report.pdf", "pdf", content_hash("report.pdf"), ExtractOptions())[0]
        >>> piece.locator, piece.page
        (Locator(modality='pdf_page', page=1, start=None, end=None, chunk=None), 1)
    """

    source: str
    content_hash: str
    locator: Locator
    text: str
    thumbnail: bytes | None
    metadata: dict[str, Any]
    item: Item

    @property
    def record_id(self) -> str:
        return self.locator.record_id(self.source)


@dataclass
class ExtractOptions:
    """How files are cut into pieces.

    Attributes:
        max_pixels, min_pixels: pixel budget of a rendered PDF page, and of an image (a larger one is
            scaled to it in the worker, as the model would scale it).
        max_pages: PDFs with more pages are refused.
        segment_seconds: length of a video segment (the last one is shorter).
        video_fps: frames sampled per second of video.
        video_max_frames: most frames kept per segment (>= 2).
        video_max_pixels: frames larger than this are scaled down at decode time (memory);
            the default is Qwen3-VL's per-frame ceiling (768 tokens of 32 x 32), ``None`` keeps them.
        chunk_chars: target characters per text chunk.
        chunk_overlap: characters shared by consecutive chunks.
        pages_per_part: PDF pages extracted by one part (one worker task).
        segments_per_part: video segments extracted by one part.
        ocr: "never", "auto" (PDF pages without a usable text layer, and images) or "always" (every
            PDF page too); the text read is the item's searchable text, its words and boxes go in
            ``metadata["ocr"]``.
        ocr_engine: "tesseract" (the Debian program), "rapidocr" (models inside the package) or
            "auto" (tesseract when installed, else rapidocr; a collection records the one used).
        ocr_lang: the engine's language code (tesseract: "deu", "fra" ...); None: its default.
        ocr_video: also read the middle frame of each video segment.
        limits: file-size, image-pixel and video-length caps.
        archives: caps on zip and tar archives (members, total size, ratio, nesting).
        office_timeout: seconds LibreOffice may take to convert one Office document to PDF.
        follow_links: False: a local file is read only if no symbolic link lies on its path, checked
            as it is opened (ingestion with ``follow_symlinks=False`` sets it; not part of the layout).

    Example:
        >>> ExtractOptions(segment_seconds=10.0, chunk_chars=800, chunk_overlap=100)
    """

    max_pixels: int = 1843200
    min_pixels: int = 4096
    max_pages: int = 10000
    segment_seconds: float = 30.0
    video_fps: float = 1.0
    video_max_frames: int = 64
    video_max_pixels: int | None = 768 * 32 * 32
    chunk_chars: int = 1500
    chunk_overlap: int = 200
    pages_per_part: int = 8
    segments_per_part: int = 1
    ocr: str = "auto"
    ocr_engine: str = "auto"
    ocr_lang: str | None = None
    ocr_video: bool = False
    limits: MediaLimits = field(default_factory=MediaLimits)
    archives: ArchiveLimits = field(default_factory=ArchiveLimits)
    office_timeout: float = 120.0
    follow_links: bool = True

    def __post_init__(self) -> None:
        checks = [(0 < self.min_pixels <= self.max_pixels, "need 0 < min_pixels <= max_pixels"),
                  (self.max_pages >= 1, "max_pages must be >= 1"),
                  (self.segment_seconds > 0, "segment_seconds must be > 0"),
                  (self.video_fps > 0, "video_fps must be > 0"),
                  (self.video_max_frames >= 2, "video_max_frames must be >= 2"),
                  (self.video_max_pixels is None or self.video_max_pixels >= 1, "video_max_pixels must be >= 1"),
                  (self.chunk_chars >= 1, "chunk_chars must be >= 1"),
                  (0 <= self.chunk_overlap < self.chunk_chars, "need 0 <= chunk_overlap < chunk_chars"),
                  (self.pages_per_part >= 1, "pages_per_part must be >= 1"),
                  (self.segments_per_part >= 1, "segments_per_part must be >= 1"),
                  (self.office_timeout > 0, "office_timeout must be > 0"),
                  (self.ocr in OCR_MODES, f"ocr must be one of {', '.join(OCR_MODES)}, not {self.ocr!r}"),
                  (self.ocr_engine in ("auto", *ENGINES), f"ocr_engine must be auto, {', '.join(ENGINES)}")]
        for ok, message in checks:
            if not ok:
                raise InputError(f"ExtractOptions: {message}")


@dataclass(frozen=True)
class Part:
    """One unit of extraction work: some pages of a PDF, some segments of a video, or a whole file.

    Attributes:
        path, kind, content_hash: the file (its source string), as given to ``plan_parts``.
        index: 0-based number of this part in its file.
        count: parts of the file.
        first, stop: PDF: 1-based pages ``[first, stop)``; video: 0-based segment numbers
            ``[first, stop)``; an image or a text file: 0 and 1.
        total: pages or segments of the whole file (1 for an image or a text file).
        video: the probed stream (videos only).
        segments: the planned segments ``first`` to ``stop - 1`` (videos only).
        data: the PDF an Office document was converted to (Office documents only; converted once,
            when planned).

    Example:
        >>> [(p.index, p.first, p.stop) for p in plan_parts("report.pdf", "pdf", digest)]
        [(0, 1, 9), (1, 9, 13)]
    """

    path: str
    kind: Kind
    content_hash: str
    index: int
    count: int
    first: int
    stop: int
    total: int
    video: VideoInfo | None = None
    segments: tuple[Segment, ...] = ()
    data: bytes | None = field(default=None, repr=False, compare=False)


def plan_parts(path: str | Path, kind: Kind, content_hash: str,
               options: ExtractOptions | None = None) -> list[Part]:
    """Open a file cheaply and cut its work into parts (see ``Part``); nothing is rendered or decoded.

    A PDF is checked (readable, not encrypted, has pages, at most ``max_pages``) and cut
    every ``pages_per_part`` pages; an Office document is converted to PDF (LibreOffice) and cut
    the same way; a video is probed (frame count, length limits) and its segments grouped by
    ``segments_per_part``; an image or a text file is one part. Objects and archive members are
    read through a private copy (``sources.local_copy``).

    Raises:
        MediaError: the file cannot be read or breaks a limit.
        InputError: an unknown kind or a malformed hash.

    Example:
        >>> parts = plan_parts("talk.mp4", "video", digest, ExtractOptions(segments_per_part=2))
        >>> pieces = [piece for part in parts for piece in extract_part(part)]
    """
    options = options or ExtractOptions()
    if kind not in _PLANNERS:
        raise InputError(f"{describe(str(path))}: unsupported kind {kind!r}; expected one of {sorted(_PLANNERS)}")
    if not re.fullmatch(r"[0-9a-f]{16,}", content_hash or ""):
        raise InputError(f"{describe(str(path))}: content_hash must be a hex digest, not {content_hash!r}")
    source = str(path)
    with _Errors(describe(source)), _readable(source, options, content_hash) as readable:
        return _PLANNERS[kind](source, readable, kind, content_hash, options)


def extract_part(part: Part, options: ExtractOptions | None = None) -> list[Piece]:
    """The pieces of one part, in order (``options`` must be those the part was planned with).

    Raises:
        MediaError: the part cannot be read or decoded.
    """
    return list(_iter_part(part, options or ExtractOptions()))


def extract(path: str | Path, kind: Kind, content_hash: str, options: ExtractOptions | None = None) -> list[Piece]:
    """All pieces of one file (see ``iter_extract``).

    Example:
        >>> [p.chunk for p in extract("notes.md", "text", content_hash("notes.md"))]
        [0]
    """
    return list(iter_extract(path, kind, content_hash, options))


def iter_extract(path: str | Path, kind: Kind, content_hash: str,
                 options: ExtractOptions | None = None) -> Iterator[Piece]:
    """The pieces of one file, produced part by part (``plan_parts`` then ``extract_part``).

    Args:
        path: the file.
        kind: "pdf", "image", "video", "text" or "office" (see ``discover.kind_of``).
        content_hash: the file's SHA-256 hex digest (ids derive from it).
        options: how to cut; ``ExtractOptions()`` when omitted.

    Raises:
        MediaError: the file cannot be read or decoded, or breaks a limit.
        InputError: an unknown kind or a malformed hash.

    Example:
        >>> for piece in iter_extract("talk.mp4", "video", digest, ExtractOptions(segment_seconds=10)):
        ...     print(piece.start, piece.end, len(piece.item.video))
    """
    options = options or ExtractOptions()
    for part in plan_parts(path, kind, content_hash, options):
        yield from _iter_part(part, options)


def piece_item(source: str, locator: Locator, options: ExtractOptions | None = None,
               digest: str | None = None) -> Item:
    """The model input of one stored piece, rebuilt from its file without extracting the rest.

    A PDF page is rendered alone (an Office document's page from its PDF, converted again);
    a video segment is decoded from the keyframe before it, with the frames extraction picked;
    an image is loaded. Objects and archive members are read back through a private copy, with
    the same caps. ``options`` must be those used at ingestion (page pixel budget, segment
    length, frame rate and caps). ``digest``, the content hash recorded at ingestion, lets such a
    copy be checked and kept for the next pieces of the same file.

    Raises:
        MediaError: the file cannot be read, or (video) has no segment ``[start, end)``
            under these options.
        InputError: a text piece (its text is the input), an unknown modality, a missing page or span.

    Example:
        >>> item = piece_item(hit.record.source, hit.record.locator, options)
    """
    o = options or ExtractOptions()
    name = describe(source)
    modality, page, start, end = locator.modality, locator.page, locator.start, locator.end
    if modality == "text":
        raise InputError(f"{name}: a text piece needs no rebuilding: its text is the model input")
    with _Errors(name), _readable(source, o, digest) as readable:
        if modality == "pdf_page":
            if page is None:
                raise InputError(f"{name}: a pdf_page piece needs its page number")
            document = _as_pdf(source, readable, o) if kind_of(source) == "office" else readable
            return Item(image=_page_image(document, page, o))
        if modality == "image":
            return Item(image=picture(readable, locator, o))
        if modality == "video":
            if start is None or end is None:
                raise InputError(f"{name}: a video piece needs its start and end")
            info = probe(readable, o.limits)
            match = [s for s in plan_segments(info.frames, info.fps, o)
                     if abs(s.start - start) <= _ID_TOLERANCE and abs(s.end - end) <= _ID_TOLERANCE]
            if not match:
                raise MediaError(f"{name}: no video segment {start:.3f}-{end:.3f} s with these options "
                                 f"(was the file or segment_seconds changed?)")
            ((segment, frames),) = decode_segments(readable, match[:1], info.fps, origin=info.first_pts,
                                                   max_pixels=o.video_max_pixels, limits=o.limits)
            return Item(video=frames, fps=segment.fps)
        raise InputError(f"{name}: unknown modality {modality!r}")


def picture(readable: str | NamedFile, locator: Locator, options: ExtractOptions) -> Image.Image:
    """The pixels of a page or image as embedded, from its source: the PDF page rendered at the layout's
    pixel budget, the image as stored (regions give its boxes upright: ``media.images.upright``).

    Raises:
        InputError: not a PDF page or an image.
        MediaError: the source cannot be read, or breaks a cap.
    """
    with _Errors(describe(readable)):
        if locator.modality == "pdf_page" and locator.page is not None:
            return _page_image(readable, locator.page, options)
        if locator.modality == "image":
            return to_rgb(load_image(readable, options.limits))
    raise InputError(f"{describe(readable)}: a {locator.modality} item has no picture to crop")


def _page_image(document: str | NamedFile, page: int, o: ExtractOptions) -> Image.Image:
    with PDFIUM:  # PDFium is not thread-safe: searches reranking at once take turns
        pages = render_pages(document, max_pixels=o.max_pixels, min_pixels=o.min_pixels,  # type: ignore[arg-type]
                             max_pages=o.max_pages, limits=o.limits, first=page, last=page)
        with closing(pages):
            return next(pages).image


def _readable(source: str, o: ExtractOptions, digest: str | None = None) -> Any:
    """A context giving what decoders read for ``source`` (see ``sources.local_copy``)."""
    return local_copy(source, o.limits, o.archives, digest, o.follow_links)


def _as_pdf(source: str, readable: str | NamedFile, o: ExtractOptions) -> NamedFile:
    """An Office document's PDF, named by the document."""
    return NamedFile(to_pdf(readable, o.office_timeout, o.limits), source)


class _Errors:
    """Turns what a decoder raises into a ``MediaError`` naming the file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, VlsearchError):
            return False
        if isinstance(exc, MemoryError):
            raise MediaError(f"{self.name}: out of memory while extracting") from None
        if isinstance(exc, (OSError, ValueError, EOFError, SyntaxError, RuntimeError)):
            raise MediaError(f"{self.name}: cannot extract ({type(exc).__name__}: {exc})") from None
        return False


def _iter_part(part: Part, options: ExtractOptions) -> Iterator[Piece]:
    with _Errors(describe(part.path)):
        if part.data is not None:  # an Office document's PDF, carried by the part
            yield from _PARTS[part.kind](part, NamedFile(part.data, part.path), options)
            return
        with _readable(part.path, options, part.content_hash) as readable:
            yield from _PARTS[part.kind](part, readable, options)


def _piece(source: str, digest: str, locator: Locator, *, item: Item, text: str = "",
           thumbnail: bytes | None = None, **metadata: Any) -> Piece:
    return Piece(source=source, content_hash=digest, locator=locator, text=text, thumbnail=thumbnail,
                 metadata=metadata, item=item)


def _whole(path: str, readable: str | NamedFile, kind: Kind, digest: str, o: ExtractOptions) -> list[Part]:
    return [Part(path, kind, digest, index=0, count=1, first=0, stop=1, total=1)]


# -- images and PDF pages -------------------------------------------------------------------------

def to_rgb(image: Image.Image) -> Image.Image:
    """An image in RGB (itself when it is already); RGBA is composited on white (the rule qwen-vl-utils
    applies)."""
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def thumbnail_jpeg(image: Image.Image, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """A JPEG of the image scaled down (never up) so its longest side is <= ``side``.

    Example:
        >>> Image.open(io.BytesIO(thumbnail_jpeg(Image.new("RGB", (1000, 500))))).size
        (256, 128)
    """
    thumb = to_rgb(image) if image.mode != "RGB" else image.copy()
    thumb.thumbnail((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _plan_pdf(path: str, readable: str | NamedFile, kind: Kind, digest: str, o: ExtractOptions,
              data: bytes | None = None) -> list[Part]:
    total = page_count(readable, max_pages=o.max_pages, limits=o.limits)  # type: ignore[arg-type]
    firsts = range(1, total + 1, o.pages_per_part)
    return [Part(path, kind, digest, index=i, count=len(firsts), first=first,
                 stop=min(first + o.pages_per_part, total + 1), total=total, data=data)
            for i, first in enumerate(firsts)]


def _plan_office(path: str, readable: str | NamedFile, kind: Kind, digest: str, o: ExtractOptions) -> list[Part]:
    """Convert once (LibreOffice), then plan the PDF; the parts carry it."""
    pdf = _as_pdf(path, readable, o)
    return _plan_pdf(path, pdf, kind, digest, o, data=pdf.data)  # type: ignore[arg-type]


def _pdf_part(part: Part, readable: str | NamedFile, o: ExtractOptions) -> Iterator[Piece]:
    for page in render_pages(readable, max_pixels=o.max_pixels, min_pixels=o.min_pixels,  # type: ignore[arg-type]
                             max_pages=o.max_pages, limits=o.limits, first=part.first, last=part.stop - 1):
        yield _pdf_piece(part.path, part.content_hash, page, o)


def _ocr(image: Image.Image, o: ExtractOptions, wanted: bool) -> tuple[str, dict[str, Any]]:
    """(text, metadata) read from ``image`` when OCR is wanted, else nothing."""
    if not wanted:
        return "", {}
    return read_text(image, o.ocr_engine, o.ocr_lang)


def _pdf_piece(path: str, digest: str, page: PdfPage, o: ExtractOptions) -> Piece:
    layer = page.text if usable_text_layer(page.text) else ""
    read, found = _ocr(page.image, o, o.ocr == "always" or (o.ocr == "auto" and not layer))
    text = "\n".join(t for t in (layer or page.text.strip(), read) if t)
    words = {"layer_words": page.words[:MAX_LAYER_WORDS]} if layer and page.words else {}  # pixels as rendered
    return _piece(path, digest, Locator("pdf_page", page=page.number), item=Item(image=page.image), text=text,
                  thumbnail=thumbnail_jpeg(page.image), **found, **words, page_count=page.count,
                  width=page.image.width, height=page.image.height, scale=page.scale)


def _image_part(part: Part, readable: str | NamedFile, o: ExtractOptions) -> Iterator[Piece]:
    loaded = load_image(readable, o.limits)  # size and decompression-bomb checks, first frame of animations
    about = {"width": loaded.width, "height": loaded.height, "format": loaded.format, "mode": loaded.mode,
             "frames": getattr(loaded, "n_frames", 1)}
    image = to_rgb(loaded)
    turned = orientation(loaded)  # the thumbnail upright, as viewers show the file; regions map to it
    shown = {"orientation": turned} if turned != 1 else {}
    del loaded
    text, found = _ocr(image, o, o.ocr != "never")  # at full size: small print stays legible
    # what crosses to the model's process is what the model keeps: the budget's pixels, not the source's
    scaled = within_budget(image, o.min_pixels, o.max_pixels)
    del image
    yield _piece(part.path, part.content_hash, Locator("image"), item=Item(image=scaled), text=text, **found, **shown,
                 thumbnail=thumbnail_jpeg(upright(scaled, turned)), **about)


# -- video ----------------------------------------------------------------------------------------

def plan_segments(frames: int, fps: float, o: ExtractOptions) -> list[Segment]:
    """Cut ``frames`` source frames at ``fps`` into segments and choose the frames each keeps.

    Segments last ``segment_seconds`` (the last one shorter). Each keeps about
    ``video_fps`` frames per second, centred in their interval, at most ``video_max_frames``
    (then spread evenly and ``fps`` says the lower rate), at least 2 (a one-frame
    segment repeats it).

    Example:
        >>> [(s.start, s.end, len(s.indices)) for s in plan_segments(96, 8.0, ExtractOptions(segment_seconds=5))]
        [(0.0, 5.0, 5), (5.0, 10.0, 5), (10.0, 12.0, 2)]
    """
    seconds = frames / fps
    count = max(1, math.ceil(seconds / o.segment_seconds - 1e-9))
    step = fps / o.video_fps  # source frames per sampled frame
    out: list[Segment] = []
    for j in range(count):
        start, end = j * o.segment_seconds, min((j + 1) * o.segment_seconds, seconds)
        first = math.ceil(start * fps - 1e-6)
        stop = frames if j == count - 1 else math.ceil(end * fps - 1e-6)
        if stop <= first:  # a sliver of a segment with no frame of its own: fold into the previous one
            if out:
                out[-1].end = end
            continue
        available = stop - first
        wanted = max(1, round(available / step))
        keep = min(max(wanted, 2), available, o.video_max_frames)
        spacing = available / keep
        indices = [first + min(available - 1, int((i + 0.5) * spacing)) for i in range(keep)]
        rate = o.video_fps if keep == wanted else keep / (end - start)
        if keep == 1:
            indices, rate = indices * 2, o.video_fps
        out.append(Segment(float(start), float(end), indices, rate))
    return out


def _plan_video(path: str, readable: str | NamedFile, kind: Kind, digest: str, o: ExtractOptions) -> list[Part]:
    info = probe(readable, o.limits)  # also enforces max_video_seconds and max_video_frames
    segments = plan_segments(info.frames, info.fps, o)
    firsts = range(0, len(segments), o.segments_per_part)
    return [Part(path, kind, digest, index=i, count=len(firsts), first=first,
                 stop=min(first + o.segments_per_part, len(segments)), total=len(segments), video=info,
                 segments=tuple(segments[first:first + o.segments_per_part])) for i, first in enumerate(firsts)]


def _video_part(part: Part, readable: str | NamedFile, o: ExtractOptions) -> Iterator[Piece]:
    info = part.video
    assert info is not None, "a video part carries its probe"
    decoded = decode_segments(readable, list(part.segments), info.fps, origin=info.first_pts,
                              max_pixels=o.video_max_pixels, limits=o.limits)
    for number, (segment, frames) in enumerate(decoded, part.first):
        start, end, middle = segment.start, segment.end, frames[len(frames) // 2]
        text, found = _ocr(middle, o, o.ocr_video and o.ocr != "never")
        yield _piece(part.path, part.content_hash, Locator("video", start=start, end=end),
                     item=Item(video=frames, fps=segment.fps), text=text, **found,
                     thumbnail=thumbnail_jpeg(middle), segment=number, segments=part.total,
                     sample_fps=segment.fps, source_fps=info.fps, duration=info.seconds, width=info.width,
                     height=info.height, frame_times=[round(i / info.fps, 3) for i in segment.indices])


# -- text -----------------------------------------------------------------------------------------

def _text_part(part: Part, readable: str | NamedFile, o: ExtractOptions) -> Iterator[Piece]:
    path, name = part.path, describe(part.path)
    data = read_source(readable, o.limits)  # "empty file" for zero bytes
    text = data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    is_html = Path(path).suffix.lower() in (".html", ".htm")
    if is_html:
        text = html_to_text(text)
    if not text.strip():
        raise MediaError(f"{name}: empty file (no text{' outside markup' if is_html else ''})")
    for number, (offset, chunk) in enumerate(chunk_text(text, o.chunk_chars, o.chunk_overlap)):
        yield _piece(path, part.content_hash, Locator("text", chunk=number), item=Item(text=chunk), text=chunk,
                     offset=offset, chars=len(chunk))


_PLANNERS: dict[str, Callable[..., list[Part]]] = {
    "pdf": _plan_pdf, "image": _whole, "video": _plan_video, "text": _whole, "office": _plan_office}
_PARTS: dict[str, Callable[[Part, Any, ExtractOptions], Iterator[Piece]]] = {
    "pdf": _pdf_part, "image": _image_part, "video": _video_part, "text": _text_part, "office": _pdf_part}
