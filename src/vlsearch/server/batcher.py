"""Dynamic micro-batching: concurrent requests merged into model calls by one worker thread.

Each request validates and encodes its own inputs (so a bad input fails only that request),
then hands the encoded inputs to a ``MicroBatcher``. Its single worker thread owns the model:
it takes the queued requests, waits a bounded time for requests still being prepared, runs
them as one call and hands each request its own slice of the results. Results equal the
library's, whatever the batch (the models are batch-invariant).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ..errors import Overloaded


class BatchObserver(Protocol):
    """Receives the batcher's numbers (see ``metrics.Metrics``)."""

    def batch(self, name: str, items: int, requests: int, seconds: float) -> None: ...

    def queue(self, name: str, items: int) -> None: ...


@dataclass
class _Job:
    items: Sequence[Any]
    future: Future = field(default_factory=Future)


class Slot:
    """A request announced to the batcher while it prepares its inputs (see ``MicroBatcher.reserve``)."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher, self.used = batcher, False

    def submit(self, items: Sequence[Any]) -> Future:
        """Queue the encoded inputs; the future resolves to their results, in order."""
        self.used = True
        return self._batcher._submit(items, announced=True)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.used:
            self._batcher._withdraw()


class MicroBatcher:
    """One worker thread running ``run(items) -> results`` on merged requests.

    Args:
        name: label for threads and metrics ("embed", "rerank").
        run: the model call; gets the concatenated inputs, returns one result per input.
        max_items: inputs per merged call (a larger request runs alone, whole).
        wait_s: the longest the worker waits for announced requests before running a batch.
        max_queue_items: inputs allowed to wait; beyond, ``submit`` raises ``Overloaded``.
        observer: optional metrics sink.

    Example:
        >>> batcher = MicroBatcher("embed", embedder.embed_encoded, max_items=64, wait_s=0.005)
        >>> with batcher.reserve() as slot:
        ...     future = slot.submit([embedder.encode_item(item)])
        >>> future.result().shape
        (1, 2048)
    """

    def __init__(self, name: str, run: Callable[[list[Any]], Sequence[Any]], *, max_items: int = 64,
                 wait_s: float = 0.005, max_queue_items: int = 4096, observer: BatchObserver | None = None) -> None:
        self.name, self._run, self.max_items, self.wait_s = name, run, max(1, max_items), max(0.0, wait_s)
        self.max_queue_items, self._observer = max_queue_items, observer
        self._cv = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._queued_items = 0
        self._announced = 0  # requests preparing inputs that will be submitted soon
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"vlsearch-{name}-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer side

    def reserve(self) -> Slot:
        """Announce a request that is preparing its inputs, so that a batch can wait for it."""
        with self._cv:
            self._announced += 1
        return Slot(self)

    def submit(self, items: Sequence[Any]) -> Future:
        """Queue inputs without announcing them first."""
        return self._submit(items, announced=False)

    def _withdraw(self) -> None:
        with self._cv:
            self._announced -= 1
            self._cv.notify_all()

    def _submit(self, items: Sequence[Any], announced: bool) -> Future:
        job = _Job(list(items))
        with self._cv:
            if announced:
                self._announced -= 1
            if self._closed:
                self._cv.notify_all()
                raise Overloaded("the server is shutting down", "shutting_down")
            if not job.items:
                self._cv.notify_all()
                job.future.set_result([])
                return job.future
            if self._queued_items and self._queued_items + len(job.items) > self.max_queue_items:
                self._cv.notify_all()
                raise Overloaded(f"the {self.name} queue is full ({self._queued_items} inputs waiting); retry later",
                                 retry_after=1)
            self._queue.append(job)
            self._queued_items += len(job.items)
            self._report_queue()
            self._cv.notify_all()
        return job.future

    @property
    def queued_items(self) -> int:
        return self._queued_items

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued work, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------ worker side

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                deadline = time.monotonic() + self.wait_s
                while self._announced > 0 and self._queued_items < self.max_items and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                jobs = self._take()
                self._report_queue()
            if jobs:
                self._execute(jobs)

    def _take(self) -> list[_Job]:
        jobs: list[_Job] = []
        count = 0
        while self._queue:
            job = self._queue[0]
            if jobs and count + len(job.items) > self.max_items:
                break
            self._queue.popleft()
            self._queued_items -= len(job.items)
            if job.future.set_running_or_notify_cancel():  # False: the client went away
                jobs.append(job)
                count += len(job.items)
        return jobs

    def _execute(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        flat = [item for job in jobs for item in job.items]
        try:
            results = self._run(flat)
        except BaseException as exc:  # noqa: BLE001 - the worker must survive anything
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
            else:  # run each request alone, so that only the culprit fails
                for job in jobs:
                    self._execute_alone(job)
            return
        if self._observer:
            self._observer.batch(self.name, len(flat), len(jobs), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            job.future.set_result(results[offset:offset + len(job.items)])
            offset += len(job.items)

    def _execute_alone(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            results = self._run(list(job.items))
        except BaseException as exc:  # noqa: BLE001
            job.future.set_exception(exc)
            return
        if self._observer:
            self._observer.batch(self.name, len(job.items), 1, time.perf_counter() - started)
        job.future.set_result(results)

    def _report_queue(self) -> None:
        if self._observer:
            self._observer.queue(self.name, self._queued_items)
