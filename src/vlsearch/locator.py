"""Locator: where an item sits inside its source (a page, a time span, a text chunk, or the whole file).

One value carries the modality and the position of an item; it gives the item's record id
(with the source) and its label in messages. Pieces, records, search hits and results all
hold one, so the position fields are written once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from .errors import InputError

Modality = Literal["text", "image", "pdf_page", "video"]
MODALITIES: tuple[str, ...] = ("text", "image", "pdf_page", "video")


@dataclass(frozen=True)
class Locator:
    """An item's modality and position in its source.

    Attributes:
        modality: "text", "image", "pdf_page" or "video".
        page: 1-based PDF page, else None.
        start, end: video span in seconds, else None.
        chunk: 0-based index of a text chunk, else None.

    Example:
        >>> Locator("pdf_page", page=3).label
        'page 3'
        >>> Locator("video", start=5.0, end=10.0).record_id("/clips/talk.mp4") == \
        ...     Locator("video", start=5.0, end=10.0).record_id("/clips/talk.mp4")
        True
    """

    modality: str
    page: int | None = None
    start: float | None = None
    end: float | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise InputError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    def record_id(self, source: str) -> str:
        """The item's stable id: the same source and locator always give the same id.

        The content hash is deliberately not part of it: re-indexing a changed file replaces
        its records instead of adding new ones beside the old. Ids of collections built by
        every earlier version are kept (``tests/test_record_ids.py``).
        """
        parts = [source, self.modality, _fmt(self.page), _fmt(self.start), _fmt(self.end), _fmt(self.chunk)]
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]

    @property
    def label(self) -> str:
        """How messages name the item inside its source: "page 3", "5.0-10.0 s", "chunk 2", "item"."""
        if self.page is not None:
            return f"page {self.page}"
        if self.start is not None:
            return f"{self.start:.1f}-{(self.end or self.start):.1f} s"
        return f"chunk {self.chunk}" if self.chunk is not None else "item"

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "page": self.page, "start": self.start, "end": self.end,
                "chunk": self.chunk}


class Located:
    """The locator's fields, read through: for classes with a ``locator`` attribute."""

    locator: Locator

    @property
    def modality(self) -> str:
        return self.locator.modality

    @property
    def page(self) -> int | None:
        return self.locator.page

    @property
    def start(self) -> float | None:
        return self.locator.start

    @property
    def end(self) -> float | None:
        return self.locator.end

    @property
    def chunk(self) -> int | None:
        return self.locator.chunk


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return repr(round(float(value), 3)) if isinstance(value, float) else str(int(value))
