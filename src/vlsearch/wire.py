"""The wire format of multimodal inputs: items as OpenAI-style content parts, and back.

Encoding (``content_parts``) is what the remote models send: media read and checked locally,
then inlined as data URIs of their original bytes. Decoding (``to_item``) is what the server
accepts: strings, lists of content parts, ``{"content": [...], ...}`` objects or the library's
item keys, with every media source checked by a ``SourcePolicy`` before anything is decoded.

Forms of one input:
    "a string"                                            text
    [{"type": "text", "text": ...}, {"type": "image_url", "image_url": {"url": ...}}, ...]
                                                          content parts (OpenAI chat style)
    {"content": [parts...], "instruction": ..., "fps": ..., "max_frames": ...}
    {"text": ..., "image": ..., "video": ..., "instruction": ...}   (the library's item keys)
    {"type": "image_url", ...}                            a single part

A video part's url is a URL or data URI of a video file, or a list of frames.
"""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from .errors import InputError
from .items import Item, listed, split_videos
from .media.images import MediaLimits, is_url, load_image, read_source

PART_TYPES = ("text", "image_url", "image", "video_url", "video")
OBJECT_KEYS = {"content", "text", "image", "video", "instruction", "fps", "max_frames"}


# ---------------------------------------------------------------- encoding

def data_uri(source: Any, limits: MediaLimits, kind: str) -> str:
    """A media input as a data URI: a file's own bytes, a PIL image as PNG; URLs pass through."""
    if isinstance(source, str) and (source.startswith("data:") or is_url(source)):
        return source
    if isinstance(source, Image.Image):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if kind == "image":
        load_image(source, limits)  # refuse bad or oversized images here, with the local message
    data = read_source(source, limits)
    mime = mimetypes.guess_type(str(source))[0] if isinstance(source, (str, Path)) else None
    mime = mime or ("image/png" if kind == "image" else "video/mp4")
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def content_parts(item: Item, limits: MediaLimits) -> list[dict[str, Any]]:
    """An item's content parts: videos, then images, then texts (the model's order)."""
    parts: list[dict[str, Any]] = []
    sampling = {**({"fps": item.fps} if item.fps else {})}
    for video in split_videos(item.video):
        if isinstance(video, list):  # a video given as frames: the url is the list of frames
            parts.append({"type": "video_url", "video_url": {"url": [data_uri(f, limits, "image") for f in video]},
                          **sampling})
        else:
            parts.append({"type": "video_url", "video_url": {"url": data_uri(video, limits, "video")}, **sampling,
                          **({"max_frames": item.max_frames} if item.max_frames else {})})
    parts += [{"type": "image_url", "image_url": {"url": data_uri(i, limits, "image")}} for i in listed(item.image)]
    parts += [{"type": "text", "text": t} for t in listed(item.text)]
    if not parts or not any(p.get("text", "x").strip() for p in parts):
        raise InputError("empty item: no text, image or video")
    return parts


def is_text(parts: list[dict[str, Any]]) -> bool:
    """Whether the parts are one text and nothing else."""
    return len(parts) == 1 and parts[0]["type"] == "text"


# ---------------------------------------------------------------- decoding

class SourcePolicy(Protocol):
    """Decides which media sources an input may name (the server's ``SourceGuard``)."""

    def check(self, src: Any) -> str:
        """``src`` if it may be loaded, else InputError / MediaError / FetchError."""
        ...

    def frames(self, frames: list[Any]) -> list[str]:
        """Each frame of a frame-list video, checked."""
        ...


def _url_of(value: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """The url of an ``image_url``/``video_url`` value (a string or ``{"url": ...}``), with extras."""
    if isinstance(value, dict):
        if "url" not in value:
            raise InputError(f"{key} must be a string or an object with a url")
        return value["url"], {k: v for k, v in value.items() if k != "url"}
    return value, {}


LIMITS = {"fps": 1000.0, "max_frames": 1_000_000.0}  # sampling options beyond these are errors


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= LIMITS[name]:
        raise InputError(f"{name} must be a positive number, at most {LIMITS[name]:g}")
    return float(value)


class _Builder:
    """Collects the parts of one input into an ``Item``."""

    def __init__(self, policy: SourcePolicy) -> None:
        self.policy = policy
        self.texts: list[str] = []
        self.images: list[str] = []
        self.videos: list[Any] = []
        self.fps: float | None = None
        self.max_frames: int | None = None

    def sampling(self, values: dict[str, Any]) -> None:
        if values.get("fps") is not None:
            self.fps = _number(values["fps"], "fps")
        if values.get("max_frames") is not None:
            self.max_frames = int(_number(values["max_frames"], "max_frames"))

    def video(self, value: Any, extras: dict[str, Any]) -> None:
        self.videos.append(self.policy.frames(list(value)) if isinstance(value, list) else self.policy.check(value))
        self.sampling(extras)

    def text(self, value: Any, what: str = "text") -> None:
        if not isinstance(value, str):
            raise InputError(f"{what} must be a string" + (" or a list of strings" if what == "text" else ""))
        self.texts.append(value)

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
            self.text(value, "a text part's text")
        elif kind in ("image_url", "image"):
            self.images.append(self.policy.check(_url_of(value, kind)[0]))
        else:
            url, extras = _url_of(value, kind)
            self.video(url, {**{k: part[k] for k in ("fps", "max_frames") if k in part}, **extras})

    def item(self, instruction: str | None = None) -> Item:
        if not (any(t.strip() for t in self.texts) or self.images or self.videos):
            raise InputError("empty input: no text, image or video")
        return Item(text=self.texts or None, image=self.images or None, video=self.videos or None,
                    instruction=instruction, fps=self.fps, max_frames=self.max_frames)


def to_item(value: Any, policy: SourcePolicy) -> Item:
    """One input (string, list of parts, object) as an ``Item``; see the module docstring."""
    builder = _Builder(policy)
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
    for part in listed(value.get("content")):
        builder.part(part)
    for text in listed(value.get("text")):
        builder.text(text)
    for image in listed(value.get("image")):
        builder.images.append(policy.check(image))
    if value.get("video") is not None:
        builder.video(value["video"], {})
    builder.sampling(value)
    instruction = value.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise InputError("instruction must be a string")
    return builder.item(instruction)
