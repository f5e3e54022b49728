"""API inputs to ``Item`` objects, refusing unsafe media sources before anything is decoded.

Media in API inputs are data URIs or, when the server allows them, http(s) URLs. Local paths,
``file://`` and other schemes are refused: a request never reads the server's files.

Input forms (one input each):
    "a string"                                            text
    [{"type": "text", "text": ...}, {"type": "image_url", "image_url": {"url": ...}}, ...]
                                                          content parts (OpenAI chat style)
    {"content": [parts...], "instruction": ..., "fps": ..., "max_frames": ...}
    {"text": ..., "image": ..., "video": ..., "instruction": ...}   (the library's item keys)
    {"type": "image_url", ...}                            a single part
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import FetchError, InputError, MediaError, each_item
from ..items import Item
from ..media.images import describe
from .config import ServerConfig

PART_TYPES = ("text", "image_url", "image", "video_url", "video")
OBJECT_KEYS = {"content", "text", "image", "video", "instruction", "fps", "max_frames"}


class SourceGuard:
    """Checks each media source against the server's policy, before any decoding.

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


def _url_of(value: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """The url of an ``image_url``/``video_url`` value (a string or ``{"url": ...}``), with extras."""
    if isinstance(value, dict):
        if "url" not in value:
            raise InputError(f"{key} must be a string or an object with a url")
        return value["url"], {k: v for k, v in value.items() if k != "url"}
    return value, {}


class _Builder:
    def __init__(self, guard: SourceGuard) -> None:
        self.guard = guard
        self.texts: list[str] = []
        self.images: list[str] = []
        self.videos: list[Any] = []
        self.fps: float | None = None
        self.max_frames: int | None = None

    def video(self, value: Any, extras: dict[str, Any]) -> None:
        self.videos.append(self.guard.frames(list(value)) if isinstance(value, list) else self.guard.check(value))
        if extras.get("fps") is not None:
            self.fps = _number(extras["fps"], "fps")
        if extras.get("max_frames") is not None:
            self.max_frames = int(_number(extras["max_frames"], "max_frames"))

    def part(self, part: Any) -> None:
        if isinstance(part, str):
            self.texts.append(part)
            return
        if not isinstance(part, dict):
            raise InputError(f"a content part must be an object, not {type(part).__name__}")
        kind = part.get("type")
        if kind not in PART_TYPES:
            raise InputError(f"unknown content part type {kind!r}; expected one of {list(PART_TYPES)}")
        if kind not in part:
            raise InputError(f"a {kind!r} part needs a {kind!r} field")
        value = part[kind]
        if kind == "text":
            if not isinstance(value, str):
                raise InputError("a text part's text must be a string")
            self.texts.append(value)
        elif kind in ("image_url", "image"):
            url, _ = _url_of(value, kind)
            self.images.append(self.guard.check(url))
        else:
            url, extras = _url_of(value, kind)
            self.video(url, {**{k: part[k] for k in ("fps", "max_frames") if k in part}, **extras})

    def item(self, instruction: str | None = None) -> Item:
        if not (any(t.strip() for t in self.texts) or self.images or self.videos):
            raise InputError("empty input: no text, image or video")
        return Item(text=self.texts or None, image=self.images or None, video=self.videos or None,
                    instruction=instruction, fps=self.fps, max_frames=self.max_frames)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"{name} must be a positive number")
    return float(value)


def to_item(value: Any, guard: SourceGuard) -> Item:
    """One API input (string, list of parts, object) as an ``Item``; see the module docstring."""
    builder = _Builder(guard)
    if isinstance(value, str):
        if not value.strip():
            raise InputError("empty input: no text, image or video")
        return Item(text=value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise InputError("token id inputs are not supported: send text")
        for part in value:
            builder.part(part)
        return builder.item()
    if not isinstance(value, dict):
        raise InputError(f"an input must be a string, a list of content parts or an object, not {type(value).__name__}")
    if "type" in value:
        builder.part(value)
        return builder.item()
    unknown = set(value) - OBJECT_KEYS
    if unknown:
        raise InputError(f"unknown input keys {sorted(unknown)}; expected some of {sorted(OBJECT_KEYS)}")
    content = value.get("content")
    if content is not None:
        for part in content if isinstance(content, list) else [content]:
            builder.part(part)
    for text in _listed(value.get("text")):
        if not isinstance(text, str):
            raise InputError("text must be a string or a list of strings")
        builder.texts.append(text)
    for image in _listed(value.get("image")):
        builder.images.append(guard.check(image))
    if value.get("video") is not None:
        builder.video(value["video"], {})
    if value.get("fps") is not None:
        builder.fps = _number(value["fps"], "fps")
    if value.get("max_frames") is not None:
        builder.max_frames = int(_number(value["max_frames"], "max_frames"))
    instruction = value.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise InputError("instruction must be a string")
    return builder.item(instruction)


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


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
