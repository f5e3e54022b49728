"""Item: the one multimodal input type.

An item is what the official wrappers call a "multimodal object": some text, some
images, some videos, an optional instruction and video sampling settings. Plain dicts
with the same keys are accepted everywhere an ``Item`` is.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from PIL import Image

from .errors import InputError, each_item

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tiff", ".tif", ".svg")
ITEM_KEYS = ("text", "image", "video", "instruction", "fps", "max_frames", "metadata")


@dataclass
class Item:
    """One input to embed or to rerank.

    Args:
        text: a string or a list of strings.
        image: a path, URL, data URI, bytes, ``PIL.Image`` or a list of them.
        video: a path or URL, a list of frames (paths, bytes or PIL images), or a
            list of such videos.
        instruction: task instruction (embedder: system prompt; reranker: ignored,
            the reranker takes one instruction per call).
        fps: frames per second sampled from video files.
        max_frames: the most frames taken from one video.
        metadata: free-form data carried along, never sent to the model.

    Example:
        >>> Item(text="a dog on a beach", instruction="Retrieve images.")
    """

    text: str | list[str] | None = None
    image: Any = None
    video: Any = None
    instruction: str | None = None
    fps: float | None = None
    max_frames: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: ItemLike) -> Item:
        """Turn an ``Item``, a dict with item keys, a ``PIL.Image`` (an image) or a plain string (a text)
        into an ``Item``.

        A string is always text, as in the official wrappers, even when it names an image file;
        the first such string earns a warning naming the ``{"image": path}`` form.
        """
        if isinstance(value, Item):
            return value
        if isinstance(value, str):
            _warn_if_image_path(value)
            return cls(text=value)
        if isinstance(value, Image.Image):
            return cls(image=value)
        if isinstance(value, Mapping):
            unknown = set(value) - set(ITEM_KEYS)
            if unknown:
                raise InputError(f"unknown item keys {sorted(unknown)}; expected some of {list(ITEM_KEYS)}")
            return cls(**{k: v for k, v in value.items() if k != "metadata" or v is not None})
        raise InputError(f"an item must be a dict, an Item, a PIL image or a string, not {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The non-empty fields as a dict (the official wrappers' input format)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, {})}


ItemLike = Union[Item, Mapping[str, Any], str, Image.Image]


def is_single(value: Any) -> bool:
    """Whether ``value`` is one item (a string, dict, ``Item`` or ``PIL.Image``) rather than a list of them."""
    return isinstance(value, (str, Mapping, Item, Image.Image))


def as_items(items: Iterable[ItemLike] | ItemLike) -> list[Item]:
    """A list of ``Item`` from a list of dicts/Items/strings/PIL images (or one of them); errors name the index."""
    if is_single(items):
        items = [items]
    return each_item(items, Item.of)


_warned_image_path = False


def _warn_if_image_path(text: str) -> None:
    """Warn once per process when a text item is the path of an existing image file."""
    global _warned_image_path
    if _warned_image_path or len(text) > 4096 or "\n" in text or not text.strip().lower().endswith(IMAGE_EXTENSIONS):
        return
    try:
        exists = os.path.isfile(os.path.expanduser(text.strip()))
    except (OSError, ValueError):
        return
    if exists:
        _warned_image_path = True
        warnings.warn(f"the text item {text[:200]!r} names an image file but is embedded as text, as in the "
                      f"official wrappers; to embed the image, pass {{\"image\": {text[:200]!r}}} "
                      "(this warning is shown once)", UserWarning, stacklevel=4)


def check_text(text: str, what: str = "text") -> str:
    """``text`` if it is valid Unicode; InputError for a lone surrogate (JSON can carry "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} is not valid Unicode (a lone surrogate at character {exc.start})") from None
    return text


def listed(value: Any) -> list[Any]:
    """``value`` as a list: None is empty, a list or tuple is itself, anything else one element."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_frame(value: Any) -> bool:
    if isinstance(value, Image.Image):
        return True
    if isinstance(value, (str, Path)):
        text = str(value).split("?", 1)[0].lower()
        return text.endswith(IMAGE_EXTENSIONS) or text.startswith("data:image")
    return False


def split_videos(video: Any) -> list[Any]:
    """The official rule: a path/URL or a list of frames is one video; any other list is many."""
    if video is None:
        return []
    if isinstance(video, (str, Path, bytes, bytearray)):
        return [video]
    if isinstance(video, (list, tuple)):
        if not video:
            return []
        if _is_frame(video[0]) or (isinstance(video[0], bytes) and _sniff_image(video[0])):
            return [list(video)]
        return list(video)
    raise InputError(f"video must be a path, URL, bytes or a list, not {type(video).__name__}")


def _sniff_image(data: bytes) -> bool:
    import io

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except Exception:
        return False
