"""``serve --watch``: the server keeps folders indexed, each batch of changes as an ingestion job."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import VlsearchError
from ..ingest.writer import IndexReport
from ..watch import Changes, Watcher
from .config import ServerConfig
from .jobs import JobManager

log = logging.getLogger("vlsearch.server")


class WatchService:
    """A ``Watcher`` on the server's thread of its own; its batches queue as jobs (source ``"watch"``), so
    one job at a time writes to a collection, whoever submitted it."""

    def __init__(self, config: ServerConfig, jobs: JobManager) -> None:
        self.collection, self.jobs = config.watch_collection, jobs
        self.watcher = Watcher([str(p) for p in config.watch_paths], self._apply, debounce=config.watch_debounce,
                               ignore=[config.resolved_home(), config.resolved_data_dir()])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vlsearch-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def state(self) -> dict[str, Any]:
        """The watcher's state, as ``/v1/collections/{name}`` shows it under ``watch``."""
        return self.watcher.snapshot()

    def _run(self) -> None:
        try:
            self.watcher.run(self._stop)
        except Exception as exc:  # noqa: BLE001 - the server keeps serving; the state says what happened
            log.exception("the folder watcher stopped")
            self.watcher.stopped_by(f"the watcher stopped: {type(exc).__name__}: {exc}")

    def _apply(self, changes: Changes) -> IndexReport:
        job = self.jobs.submit(self.collection, list(changes.add), {"remove": list(changes.remove)}, "watch")
        while not job.finished_event.wait(0.2):
            if self._stop.is_set():
                raise VlsearchError("the server is stopping")
        if job.status != "done" or job.result is None:
            raise VlsearchError(job.error or "the ingestion job did not run")
        return job.result
