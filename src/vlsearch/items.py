"""Item: the one multimodal input type.

An item is what the official wrappers call a "multimodal object": some text, some
images, some videos, an optional instruction and video sampling settings. Plain dicts
with the same keys are accepted everywhere an ``Item`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Union

from .errors import InputError

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
        """Turn an ``Item``, a dict with item keys or a plain string into an ``Item``."""
        if isinstance(value, Item):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, Mapping):
            unknown = set(value) - set(ITEM_KEYS)
            if unknown:
                raise InputError(f"unknown item keys {sorted(unknown)}; expected some of {list(ITEM_KEYS)}")
            return cls(**{k: v for k, v in value.items() if k != "metadata" or v is not None})
        raise InputError(f"an item must be a dict, an Item or a string, not {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The non-empty fields as a dict (the official wrappers' input format)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, {})}


ItemLike = Union[Item, Mapping[str, Any], str]
