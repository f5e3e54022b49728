"""How long an indexing run will take: the items to embed, guessed when the run is planned, at the
pace measured over its first batch.

The guess looks at each local file cheaply: a PDF's page count, a video's duration from its
container header, a text's size over the chunk length; an image is one item. Objects in buckets,
archive members and Office documents count one item each (a look would cost a download or a
conversion), so the estimate is low for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

from ..errors import VlsearchError
from ..media.pdf import page_count
from ..media.video import open_video
from .entries import Found
from .extractors import PDFIUM, ExtractOptions

HOURS_WARNING = 3600.0  # seconds: a run on the CPU estimated longer is warned about, with the way to a GPU
SHOWN_FROM = 60.0  # seconds: a shorter run's estimate is not worth a line (the progress bar has it)
GPU_HINT = ("on a machine with a GPU, run `vlsearch serve` there and index here with --model http://HOST:8000 "
            "(files are read here, embedded there)")


def _pdf_items(path: Path, options: ExtractOptions) -> int:
    with PDFIUM:  # searches may be rendering pages for the reranker in this process
        return page_count(path, max_pages=options.max_pages, limits=options.limits)


def _video_items(path: Path, options: ExtractOptions) -> int:
    with open_video(path, options.limits) as container:  # MediaError for what PyAV cannot read
        seconds = (container.duration or 0) / 1_000_000
    return math.ceil(seconds / options.segment_seconds)


def _text_items(path: Path, options: ExtractOptions) -> int:
    return math.ceil(path.stat().st_size / max(1, options.chunk_chars - options.chunk_overlap))


#: kind -> items of a local file of that kind (any other kind, or any failure: one)
LOOKS: dict[str, Callable[[Path, ExtractOptions], int]] = {"pdf": _pdf_items, "video": _video_items,
                                                           "text": _text_items}


def expected_items(files: Sequence[Found], options: ExtractOptions) -> int:
    """About how many items ``files`` give (see the module docstring)."""
    total = 0
    for found in files:
        look = LOOKS.get(found.kind or "")
        try:
            total += max(1, look(found.path, options)) if look and isinstance(found.path, Path) else 1
        except (VlsearchError, OSError, ValueError):  # a broken file fails later, with its reason
            total += 1
    return total


def duration(seconds: float) -> str:
    """``2 h 05 min``, ``12 min``, ``40 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{math.ceil(seconds / 60)} min" if seconds >= 60 else f"{math.ceil(seconds)} s"


def announce(items_done: int, items_expected: int, elapsed: float, on_cpu: bool) -> str:
    """The estimate after the first batch ("" for a short run), and on the CPU, for a run of hours,
    how to use a GPU instead."""
    rate = items_done / max(elapsed, 1e-9)
    left = max(items_expected - items_done, 0) / rate
    if left < SHOWN_FROM:
        return ""
    line = (f"vlsearch: about {duration(left)} to go for ~{items_expected} items "
            f"({rate:.2f} items/s over the first batch)")
    if on_cpu and left > HOURS_WARNING:
        line += f"\nvlsearch: warning: that is hours on this CPU; {GPU_HINT}"
    return line
