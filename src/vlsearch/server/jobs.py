"""Ingestion jobs: ``Collection.add`` in a background thread, one job at a time, with progress."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import VlsearchError
from .errors import APIError, scrub

log = logging.getLogger("vlsearch.server")


@dataclass
class Job:
    """One ingestion: what it reads, where it stands, and what it did."""

    id: str
    collection: str
    paths: list[str]
    options: dict[str, Any]
    source: str  # "upload", "paths" or "watch"
    status: str = "queued"  # queued, running, done, failed
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    files_done: int = 0
    files_total: int | None = None
    items: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
    result: Any = field(default=None, repr=False)  # the ``IndexReport`` itself (for the server's watcher)
    finished_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "ingest_job", "collection": self.collection, "source": self.source,
                "status": self.status, "created": self.created, "started": self.started, "finished": self.finished,
                "progress": {"files_done": self.files_done, "files_total": self.files_total, "items": self.items},
                "report": self.report, "error": self.error}


class JobManager:
    """Runs jobs in order on one thread; keeps the last ``keep`` jobs for ``GET /v1/jobs/{id}``.

    Args:
        run: ``run(job, on_progress)`` does the work and returns the report (an ``IndexReport``).
        on_change: called with the counts by status after every change (metrics).
        keep: finished jobs kept in memory.
    """

    def __init__(self, run: Callable[[Job, Callable[[int, int, int], None]], Any],
                 on_change: Callable[[dict[str, int]], None] | None = None, keep: int = 1000) -> None:
        self._run, self._on_change, self._keep = run, on_change, keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="vlsearch-ingest", daemon=True)
        self._thread.start()

    def submit(self, collection: str, paths: list[str], options: dict[str, Any], source: str) -> Job:
        job = Job(uuid.uuid4().hex, collection, paths, options, source)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        self._queue.put(job)
        self._changed()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise APIError(404, f"no job {job_id!r}", "not_found_error", "job_not_found")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=1.0)
        with self._lock:
            for job in self._jobs.values():
                job.finished_event.set()  # nobody waits for a job that will not run

    def _changed(self) -> None:
        if self._on_change:
            counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
            for job in self.list():
                counts[job.status] = counts.get(job.status, 0) + 1
            self._on_change(counts)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.status, job.started = "running", time.time()
            self._changed()

            def progress(done: int, total: int, items: int, job: Job = job) -> None:
                job.files_done, job.files_total, job.items = done, total, items

            try:
                report = job.result = self._run(job, progress)
                job.report = summarise(report)
                job.items = report.items
                job.status = "done"
            except VlsearchError as exc:
                job.error, job.status = scrub(str(exc)), "failed"
            except Exception:  # noqa: BLE001 - a job never takes the worker down
                log.exception("ingestion job %s failed", job.id)
                job.error, job.status = f"internal error (job {job.id})", "failed"
            job.finished = time.time()
            job.finished_event.set()
            self._changed()


def summarise(report: Any) -> dict[str, Any]:
    """An ``IndexReport`` as JSON: counts, failures as ``[{source, reason}]``, and the summary text."""
    return {"seen": report.seen, "new": report.new, "changed": report.changed, "unchanged": report.unchanged,
            "skipped": report.skipped, "retried": report.retried, "failed_before": report.failed_before,
            "items": report.items, "pruned": report.pruned, "seconds": round(report.seconds, 3),
            "failed": [{"source": s, "reason": scrub(r)} for s, r in report.failed],
            "not_read": [{"source": s, "reason": r} for s, r in getattr(report, "not_read", [])],
            "summary": report.summary()}
