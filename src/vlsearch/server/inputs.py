"""API inputs to ``Item`` objects, refusing unsafe media sources before anything is decoded.

Media in API inputs are data URIs or, when the server allows them, http(s) URLs. Local paths,
``file://`` and other schemes are refused: a request never reads the server's files. The input
forms are those of ``vlsearch.wire`` (strings, content parts, objects).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import FetchError, InputError, MediaError, each_item
from ..items import Item
from ..media.images import describe
from ..wire import to_item
from .config import ServerConfig


class SourceGuard:
    """The server's ``wire.SourcePolicy``: checks each media source before any decoding.

    Example:
        >>> SourceGuard(ServerConfig()).check("/etc/passwd")
        Traceback (most recent call last):
        vlsearch.errors.InputError: '/etc/passwd': media must be a data URI or an http(s) URL ...
    """

    def __init__(self, config: ServerConfig) -> None:
        policy = config.fetch_policy()
        self.urls = policy is not None
        self.only_hosts = None if policy is None or policy.only_hosts is None else {
            h.strip().lower().strip("[]") for h in policy.only_hosts}
        self.max_bytes = config.max_media_bytes
        self.max_frames = config.max_video_frames

    def check(self, src: Any) -> str:
        """``src`` if it may be loaded; else InputError, MediaError or FetchError (all 400)."""
        if not isinstance(src, str) or not src.strip():
            raise InputError("a media source must be a non-empty string (a data URI or an http(s) URL)")
        text = src.strip()
        if text[:5].lower() == "data:":
            header, sep, payload = text.partition(",")
            if not sep or ";base64" not in header.lower():
                raise MediaError(f"{describe(text)}: only base64 data URIs are supported")
            if len(payload) * 3 // 4 > self.max_bytes:
                raise MediaError(f"{describe(text)}: inline media larger than {self.max_bytes} bytes")
            return text
        raw = raw_base64_image(text)
        if raw is not None:  # Jina's form of an inline image
            return self.check(raw)
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        scheme = parts.scheme.lower() if parts else ""
        if scheme in ("http", "https"):
            if not self.urls:
                raise FetchError(f"{describe(text)}: URL inputs are disabled on this server "
                                 "(send the media as a data URI, or start the server with --allow-url-host HOST)")
            host = (parts.hostname or "") if parts else ""
            if self.only_hosts is not None and host not in self.only_hosts:
                raise FetchError(f"{describe(text)}: refused: host {host or '(none)'} is not in the allowed hosts")
            return text
        raise InputError(f"{describe(text)}: media must be a data URI or an http(s) URL "
                         "(local paths, file:// and other schemes are not accepted)")

    def frames(self, frames: list[Any]) -> list[str]:
        if not frames:
            raise InputError("a video given as frames needs at least one frame")
        if len(frames) > self.max_frames:
            raise MediaError(f"{len(frames)} frames, over the limit of {self.max_frames}")
        return [self.check(f) for f in frames]


#: the first bytes of the image formats a raw base64 image may be in
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF87a": "gif", b"GIF89a": "gif",
                    b"BM": "bmp", b"II*\x00": "tiff", b"MM\x00*": "tiff"}
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}")


def raw_base64_image(text: str) -> str | None:
    """A base64 image without the ``data:`` prefix (as Jina's API takes them) as a data URI; None for
    anything else."""
    if len(text) < 16 or not _BASE64.fullmatch(text):
        return None
    try:
        head = base64.b64decode(text[:64], validate=False)
    except ValueError:
        return None
    kind = next((k for sig, k in IMAGE_SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "webp"
    return None if kind is None else f"data:image/{kind};base64,{''.join(text.split())}"


def to_items(values: list[Any], guard: SourceGuard, label: Callable[[int], str]) -> list[Item]:
    """Each value as an ``Item``; an error names the input (``label(i)``)."""
    return each_item(values, lambda value: to_item(value, guard), label)


def embedding_inputs(value: Any, guard: SourceGuard, max_items: int) -> list[Item]:
    """The ``input`` of an embeddings request: a string, or a list of inputs (at most ``max_items``)."""
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, list):
        if not value:
            raise InputError("input must not be empty")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(
                isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
                for v in value):
            raise InputError("token id inputs are not supported: send text")
        values = value
    else:
        values = [value]
    if len(values) > max_items:
        raise InputError(f"{len(values)} inputs in one request, over the limit of {max_items}")
    return to_items(values, guard, lambda i: f"input {i}")
