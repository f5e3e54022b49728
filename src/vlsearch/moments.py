"""Video moments: the few seconds of a matched segment that best match the query.

A segment's sampled frames are cut into overlapping windows of about ``seconds`` (at least two frames,
the model's temporal patch), each window is embedded as a short video in one batch, and the window whose
vector is nearest the query's wins. That costs one embedder forward per window; it is an option of
``Collection.search`` (``moments=True``). A window's span is its frames' sampling intervals (each frame
sits in the middle of its own), kept inside the segment::

    {"start": 12.0, "end": 16.0, "score": 0.41}

Example:
    >>> windows(8, 1.0, 4.0)
    [(0, 4), (2, 6), (4, 8)]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .items import Item
from .models.contract import EmbedderLike

__all__ = ["best_moment", "windows", "MOMENT_SECONDS"]

MOMENT_SECONDS = 4.0


def windows(frames: int, rate: float, seconds: float = MOMENT_SECONDS) -> list[tuple[int, int]]:
    """Frame ranges [i, j) of about ``seconds`` at ``rate`` frames per second, half-overlapping, the
    last one ending at the last frame; one range for a segment no longer than a window."""
    size = max(2, round(seconds * rate))
    if frames <= size:
        return [(0, frames)]
    step = max(1, size // 2)
    starts = list(range(0, frames - size + 1, step))
    if starts[-1] + size < frames:
        starts.append(frames - size)
    return [(i, i + size) for i in starts]


def best_moment(embedder: EmbedderLike, query: Sequence[float], frames: list[Any], rate: float, start: float,
                end: float, times: Sequence[float] | None = None, seconds: float = MOMENT_SECONDS,
                dim: int | None = None) -> dict[str, float | None]:
    """The window of a segment's ``frames`` (sampled at ``rate`` per second; ``times``: each frame's time
    in the video, else spread evenly from ``start``) whose embedding is nearest ``query``, as
    ``{"start", "end", "score"}`` in seconds of the video, inside [``start``, ``end``]."""
    spans = windows(len(frames), rate, seconds)
    if len(spans) == 1:  # no shorter window: the segment itself, no forward spent
        return {"start": start, "end": end, "score": None}  # type: ignore[dict-item]
    if times is None or len(times) != len(frames):
        times = [start + (k + 0.5) / rate for k in range(len(frames))]
    vectors = embedder.embed([Item(video=frames[i:j], fps=rate) for i, j in spans], dim=dim)
    scores = np.asarray(vectors, np.float32) @ np.asarray(query, np.float32)
    best = int(np.argmax(scores))
    i, j = spans[best]
    half = 0.5 / rate
    return {"start": round(max(start, times[i] - half), 3), "end": round(min(end, times[j - 1] + half), 3),
            "score": round(float(scores[best]), 6)}
