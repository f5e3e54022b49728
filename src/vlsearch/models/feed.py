"""Feeding the model: a collated batch, token counts, and the next batch prepared ahead on a GPU.

On a GPU a forward pass returns before the device has finished, so the host is free while a
batch runs. ``Ahead`` uses that time to collate the next batch and start its host-to-device
copies (from pinned memory, on a stream of its own); the forward pass waits on that stream's
event only where it needs the inputs. Preprocessing (decoding, resizing, the processor) runs
earlier still, on the encoding threads (``qwen3vl.encode_each``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .qwen3vl import Encoded


@dataclass
class Prepared:
    """One batch on the device: the model's kwargs, its layout and the tokens it computes."""

    batch: dict[str, Any]
    layout: Any  # layout.RowLayout or layout.PackedLayout
    computed: int  # language-model tokens computed, padding included
    event: Any = None  # CUDA event recorded after the copies (prepared ahead only)


@dataclass
class TokenCounts:
    """Language-model tokens since the last ``reset``: real ones and those computed (with padding)."""

    real: int = 0
    computed: int = 0

    def add(self, real: int, computed: int) -> None:
        self.real += real
        self.computed += computed

    @property
    def efficiency(self) -> float:
        """Real / computed tokens (1.0 when nothing ran)."""
        return self.real / self.computed if self.computed else 1.0

    def reset(self) -> None:
        self.real = self.computed = 0


def _key(encoded: Sequence[Encoded]) -> tuple[int, ...]:
    return tuple(id(e) for e in encoded)


class Ahead:
    """Prepares batches on one thread ahead of the forward passes (on CUDA; a no-op elsewhere).

    Example:
        >>> with Ahead(model._prepare, "cuda") as ahead:
        ...     ahead.submit(next_batch)            # collated and copied while ...
        ...     hidden = model._hidden(this_batch)  # ... this one runs; _hidden takes it next time
    """

    _current: ContextVar[Ahead | None] = ContextVar("vlsearch_ahead", default=None)

    def __init__(self, prepare: Callable[[Sequence[Encoded]], Prepared], device: str) -> None:
        self._prepare, self._device = prepare, device
        self._on = str(device).startswith("cuda")
        self._pending: dict[tuple[int, ...], Future] = {}

    def __enter__(self) -> Ahead:
        if self._on:
            import torch

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlsearch-feed")
            self._stream = torch.cuda.Stream(device=self._device)
        self._token = Ahead._current.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        Ahead._current.reset(self._token)
        if self._on:
            for future in self._pending.values():
                future.cancel()
            self._pool.shutdown(wait=True)  # no copy outlives the call
            self._pending.clear()

    def submit(self, encoded: Sequence[Encoded]) -> None:
        """Start preparing ``encoded`` (a later ``take`` of the same inputs gets it)."""
        if self._on:
            self._pending[_key(encoded)] = self._pool.submit(self._run, list(encoded))

    def _run(self, encoded: list[Encoded]) -> Prepared:
        import torch

        with torch.cuda.stream(self._stream):
            prepared = self._prepare(encoded)
            prepared.event = torch.cuda.Event()
            prepared.event.record(self._stream)
        return prepared

    @staticmethod
    def take(encoded: Sequence[Encoded]) -> Prepared | None:
        """The batch prepared ahead for exactly ``encoded``, ready for the current stream; None if
        there is none (the CPU, the first batch, the halves of a batch split after running out
        of memory)."""
        ahead = Ahead._current.get()
        if ahead is None or not ahead._pending:
            return None
        future = ahead._pending.pop(_key(encoded), None)
        if future is None:
            return None
        import torch

        prepared = future.result()
        stream = torch.cuda.current_stream(ahead._device)
        stream.wait_event(prepared.event)
        for tensor in prepared.batch.values():
            tensor.record_stream(stream)  # made on the copy stream, used on this one
        return prepared
