"""How a forward pass lays out its sequences: padded rows or one packed row.

The language model's custom pieces (``InvariantLinear``, the attention function) read the
layout of the current call from ``ROWS``, so that they can run each sequence on its own
tokens whatever the layout:

- ``RowLayout``: a right-padded (rows, width) batch; a sequence is ``x[row, :n]``.
- ``PackedLayout``: the sequences concatenated without padding into one (1, total) row; a
  sequence is ``x[0, start:end]`` (``cu_seqlens`` holds the boundaries).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Callable, Literal

AttentionBackend = Literal["auto", "flash_varlen", "sdpa_jagged", "sdpa_mask", "rowwise"]


@dataclass(frozen=True)
class RowLayout:
    """The real lengths of the rows of a right-padded (rows, width) batch."""

    lengths: list[int]

    def matches(self, x: Any) -> bool:
        return x.dim() >= 3 and x.shape[0] == len(self.lengths) and x.shape[1] == max(self.lengths)


@dataclass(frozen=True)
class PackedLayout:
    """Sequences of ``lengths`` tokens concatenated into one (1, total) row.

    ``attention`` is the backend that runs their causal attention (``models/attention.py``).
    Every layer of a forward pass reads the same layout: device tensors derived from it are
    made once (``cached``), not once per layer.
    """

    lengths: list[int]
    attention: AttentionBackend = "rowwise"
    cu_seqlens: list[int] = field(init=False)
    _cache: dict[Any, Any] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cu_seqlens", [0, *accumulate(self.lengths)])

    @property
    def total(self) -> int:
        return self.cu_seqlens[-1]

    @property
    def max_length(self) -> int:
        return max(self.lengths)

    def spans(self) -> list[tuple[int, int]]:
        """(start, end) of each sequence in the packed row."""
        return list(zip(self.cu_seqlens[:-1], self.cu_seqlens[1:]))

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the same object afterwards."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def matches(self, x: Any) -> bool:
        return x.dim() >= 3 and x.shape[0] == 1 and x.shape[1] == self.total


ROWS: ContextVar[RowLayout | PackedLayout | None] = ContextVar("vlsearch_rows", default=None)
