"""Extract many files in worker processes, part by part, so memory stays bounded.

Each file is first planned (a cheap worker task: page count, video probe) and then
extracted as parts (runs of pages or video segments), each a separate task. At most
``max_in_flight`` tasks are submitted and not yet handed back, whatever the files' sizes.

A native decoder that crashes takes its worker process with it; the pool is rebuilt,
the other tasks are run again, and only the file owning the task that crashed fails.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..errors import VlsearchError
from .discover import Found
from .extractors import ExtractOptions, Part, Piece, extract_part, plan_parts

__all__ = ["ExtractResult", "extract_all", "default_workers", "CRASHED", "CRASH_HOOK_ENV"]

CRASHED = "decoder crashed (worker process died)"

#: TEST-ONLY hook. When this environment variable holds a file name, a worker process that
#: is handed any task of a file of that name (its plan or a part) kills itself with SIGSEGV,
#: the way a crashing native decoder would; ``name@N`` crashes only on part N of that file.
#: Only the worker entry points read it; the in-process mode (``workers=0``) ignores it.
#: Never set it outside tests.
CRASH_HOOK_ENV = "VLSEARCH_TEST_CRASH_FILE"

#: TEST-ONLY: called with each pool ``extract_all`` builds (to watch ``peak``).
_POOL_HOOK: Callable[[_Pool], None] | None = None


@dataclass
class ExtractResult:
    """The outcome of one part of a file: its pieces, or why the file failed.

    A file gives ``parts`` results, one per part (``part`` 0-based), in order of
    completion; ``last`` is True on the one that completes the file. A file that fails
    gives a single result with ``error`` set and ``last`` True, after which none of its
    parts come; parts yielded before the failure belong to a failed file and should be
    dropped. ``parts`` is 0 when the file failed before it was planned.

    Example:
        >>> for result in extract_all(tasks, ExtractOptions()):
        ...     print(result.found.source, result.part, result.parts, result.error or len(result.pieces))
    """

    found: Found
    content_hash: str
    pieces: list[Piece] = field(default_factory=list)
    error: str | None = None
    part: int = 0
    parts: int = 1
    last: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers(model_on_cpu: bool = True) -> int:
    """Decoding processes for this machine: the cores the model does not need (half of them when it
    runs on the CPU, all but one when it runs elsewhere: a GPU or a model server), at most 16."""
    cores = os.cpu_count() or 1
    return max(1, min(16, cores // 2 if model_on_cpu else cores - 1))


def _crash_hook(path: str, part: int | None) -> None:
    """Test-only, see ``CRASH_HOOK_ENV``."""
    crash_on = os.environ.get(CRASH_HOOK_ENV)
    if not crash_on:
        return
    name, _, number = crash_on.partition("@")
    if path.rsplit("/", 1)[-1] == name and (not number or (part is not None and int(number) == part)):
        os.kill(os.getpid(), signal.SIGSEGV)


def _plan_work(path: str, kind: str, digest: str, options: ExtractOptions) -> list[Part]:
    """Worker entry point: plan a file (runs in the child process)."""
    _crash_hook(path, None)
    return plan_parts(path, kind, digest, options)  # type: ignore[arg-type]


def _part_work(part: Part, options: ExtractOptions) -> list[Piece]:
    """Worker entry point: extract one part (runs in the child process)."""
    _crash_hook(part.path, part.index)
    return extract_part(part, options)


def _ping() -> int:
    """Worker entry point that only proves a worker process can start."""
    return os.getpid()


def _make_executor(workers: int) -> Executor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _reason(found: Found, exc: BaseException) -> str:
    if isinstance(exc, VlsearchError):
        return str(exc)
    return f"{found.source!r}: {type(exc).__name__}: {exc}"


def _precheck(found: Found, digest: str) -> ExtractResult | None:
    """A result for entries that cannot be extracted at all (discovery error, unsupported)."""
    if found.error is not None:
        return ExtractResult(found, digest, error=f"{found.source!r}: {found.error}", parts=0)
    if found.kind is None:
        return ExtractResult(found, digest, error=f"{found.source!r}: unsupported file type", parts=0)
    return None


def extract_all(found: Iterable[tuple[Found, str]], options: ExtractOptions | None = None, workers: int = 2,
                max_in_flight: int | None = None) -> Iterator[ExtractResult]:
    """Extract files in a pool of ``workers`` processes, one result per part, in order of completion.

    Each file is planned, then extracted part by part (``ExtractOptions.pages_per_part``,
    ``segments_per_part``); see ``ExtractResult`` for the ``part``, ``parts`` and ``last``
    fields and for failures. At most ``max_in_flight`` tasks (plans and parts, default
    ``2 * workers``) are submitted and not yet yielded, so memory stays bounded and the
    input iterable is consumed lazily. A file whose task kills its worker (a native crash)
    fails alone with the reason ``CRASHED``: the pool is rebuilt and the tasks that were in
    flight with it run again, one at a time, to find the culprit. Worker processes use the
    "spawn" start method, so a script calling this needs an ``if __name__ == "__main__":`` guard.

    Args:
        found: (``Found``, content hash) pairs; entries with an error or no kind fail at once.
        options: how to cut files; ``ExtractOptions()`` when omitted.
        workers: processes; 0 extracts in this process, one part after the other (debugging).
        max_in_flight: tasks submitted but not yet yielded.

    Returns:
        An iterator of ``ExtractResult``; each input pair ends with exactly one ``last`` result.

    Example:
        >>> tasks = ((f, fingerprint(f)) for f in discover(["docs"]) if f.ok)
        >>> for result in extract_all(tasks, ExtractOptions(), workers=4):
        ...     print(result.found.relative, result.part, result.error or len(result.pieces))
    """
    options = options or ExtractOptions()
    if workers < 0:
        raise ValueError(f"workers must be >= 0, not {workers}")
    if workers == 0:
        yield from _in_process(found, options)
        return
    pool = _Pool(workers, max_in_flight or 2 * workers, options)
    if _POOL_HOOK is not None:
        _POOL_HOOK(pool)
    yield from pool.run(iter(found))


def _in_process(found: Iterable[tuple[Found, str]], options: ExtractOptions) -> Iterator[ExtractResult]:
    for entry, digest in found:
        early = _precheck(entry, digest)
        if early is not None:
            yield early
            continue
        try:
            parts = plan_parts(entry.source, entry.kind, digest, options)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - one file's failure never stops the run
            yield ExtractResult(entry, digest, error=_reason(entry, exc), parts=0)
            continue
        for part in parts:
            try:
                pieces = extract_part(part, options)
            except Exception as exc:  # noqa: BLE001
                yield ExtractResult(entry, digest, error=_reason(entry, exc), part=part.index, parts=part.count)
                break
            yield ExtractResult(entry, digest, pieces, part=part.index, parts=part.count,
                                last=part.index == part.count - 1)


@dataclass(eq=False)
class _File:
    found: Found
    digest: str
    parts: int = 0  # planned parts (0 until planned)
    done: int = 0  # parts yielded
    failed: bool = False


@dataclass(eq=False)
class _Job:
    file: _File
    part: Part | None  # None: the file's plan


class _Pool:
    """A process pool of plan and part tasks that survives worker deaths; see ``extract_all``."""

    def __init__(self, workers: int, limit: int, options: ExtractOptions) -> None:
        self.workers, self.limit, self.options = workers, max(1, limit), options
        self.executor: Executor | None = None
        self.in_flight: dict[Future, tuple[_Job, bool]] = {}  # future -> (job, running alone)
        self.pending: deque[_Job] = deque()  # planned parts waiting for a slot
        self.retry: deque[_Job] = deque()  # to run again normally
        self.suspects: deque[_Job] = deque()  # to run alone: one of them crashed a worker
        self.workers_start = False  # proven once a task or a ping came back from a worker
        self.peak = 0  # the most tasks submitted and not yet yielded or discarded, at any time

    def _executor(self) -> Executor:
        if self.executor is None:
            self.executor = _make_executor(self.workers)
        return self.executor

    def _submit(self, job: _Job, alone: bool) -> None:
        try:
            future = self._start(job)
        except BrokenProcessPool:  # broke between two waits: rebuild and try once more
            self._restart()
            future = self._start(job)
        self.in_flight[future] = (job, alone)
        self.peak = max(self.peak, len(self.in_flight))

    def _start(self, job: _Job) -> Future:
        if job.part is None:
            entry = job.file.found
            return self._executor().submit(_plan_work, entry.source, entry.kind, job.file.digest, self.options)
        return self._executor().submit(_part_work, job.part, self.options)

    def _restart(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = None

    @staticmethod
    def _pop(queue: deque[_Job]) -> _Job | None:
        """The next job of a file that has not failed (those of failed files are dropped)."""
        while queue:
            job = queue.popleft()
            if not job.file.failed:
                return job
        return None

    def run(self, source: Iterator[tuple[Found, str]]) -> Iterator[ExtractResult]:
        exhausted = False
        try:
            while True:
                if self.suspects:
                    if not self.in_flight:  # isolation: a suspect runs with nothing beside it
                        job = self._pop(self.suspects)
                        if job is not None:
                            self._submit(job, alone=True)
                else:
                    while len(self.in_flight) < self.limit:
                        job = self._pop(self.retry) or self._pop(self.pending)
                        if job is None:
                            task = None if exhausted else next(source, None)
                            if task is None:
                                exhausted = True
                                break
                            early = _precheck(*task)
                            if early is not None:
                                yield early
                                continue
                            job = _Job(_File(*task), None)
                        self._submit(job, alone=False)
                if not self.in_flight:
                    if self.suspects or self.retry or self.pending:
                        continue
                    break
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                yield from self._collect(done)
        finally:
            self._restart()

    def _collect(self, done: set[Future]) -> Iterator[ExtractResult]:
        broken: list[tuple[_Job, bool]] = []
        if any(isinstance(_error(f), BrokenProcessPool) for f in done):
            # the whole pool is gone: every future still in flight fails promptly, gather them all
            done = set(done) | wait(self.in_flight).done
        ready = list(done)
        del done
        while ready:
            future = ready.pop()
            job, alone = self.in_flight.pop(future)
            exc = _error(future)
            if isinstance(exc, BrokenProcessPool):
                broken.append((job, alone))
                continue
            if not future.cancelled():
                self.workers_start = True
            if job.file.failed or future.cancelled():
                continue  # a part of a file that already failed: discarded
            if exc is not None:
                yield self._fail(job, _reason(job.file.found, exc))
            elif job.part is None:
                parts = future.result()
                job.file.parts = len(parts)
                self.pending.extend(_Job(job.file, part) for part in parts)
            else:
                job.file.done += 1
                yield ExtractResult(job.file.found, job.file.digest, future.result(), part=job.part.index,
                                    parts=job.file.parts, last=job.file.done == job.file.parts)
        if not broken:
            return
        self._restart()
        if len(broken) == 1 or any(alone for _, alone in broken):
            self._check_start()
            culprit = next((job for job, alone in broken if alone), broken[0][0])
            if not culprit.file.failed:
                yield self._fail(culprit, f"{culprit.file.found.source!r}: {CRASHED}")
            self.retry.extend(job for job, _ in broken if job is not culprit)
        else:
            self.suspects.extend(job for job, _ in broken)

    def _fail(self, job: _Job, reason: str) -> ExtractResult:
        """Mark the job's file failed, cancel what of it has not started, and make its one error result."""
        job.file.failed = True
        for future, (other, _) in self.in_flight.items():
            if other.file is job.file:
                future.cancel()  # only succeeds before it starts; otherwise discarded when it ends
        return ExtractResult(job.file.found, job.file.digest, error=reason,
                             part=job.part.index if job.part is not None else 0, parts=job.file.parts)

    def _check_start(self) -> None:
        """Before blaming a file, make sure workers can start at all (else every file would be blamed)."""
        if self.workers_start:
            return
        try:
            self._executor().submit(_ping).result()
        except BrokenProcessPool:
            self._restart()
            raise VlsearchError("ingestion worker processes die at start-up (a script that starts them needs "
                                "an `if __name__ == \"__main__\":` guard; or use workers=0)") from None
        self.workers_start = True


def _error(future: Future) -> BaseException | None:
    """The future's exception (``None`` for a cancelled one)."""
    return None if future.cancelled() else future.exception()
