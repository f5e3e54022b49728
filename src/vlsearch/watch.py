"""Watch folders and keep a collection up to date (``vlsearch watch``, ``vlsearch serve --watch``).

A ``Watcher`` first runs a normal incremental pass over its folders (with prune), so whatever
changed while nothing watched is caught up; then it follows file-system events (watchdog):
creations, changes, deletions and moves. Events are debounced: a path is handled once it has had
no event for ``debounce`` seconds and its size and time held still, so a file still being written
is indexed once, complete. A folder that is deleted or unmounted is reported (its state says so)
and the other folders stay watched; when it comes back it is watched again, after a pass over it.

Symbolic links are never followed out of a watched folder: a batch indexes with
``follow_symlinks=False`` (a link created inside, or a file swapped for one, fails as a link, also
when the swap comes after the event: files are opened without links), and a folder replaced by a
link is reported like a deleted one, and not watched while it is a link.

The work itself is a callback, ``apply(changes)``: ``apply_changes`` on a ``Collection`` for the
command line, an ingestion job for the server (one writer at a time).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .collection import Collection
from .errors import MissingExtraError, VlsearchError
from .ingest.archives import archive_format
from .ingest.entries import kind_of
from .ingest.sources import under
from .ingest.writer import IndexReport

__all__ = ["Changes", "Watcher", "WatchState", "apply_changes"]

RECENT_FAILURES = 20  # failures kept in the state


@dataclass
class Changes:
    """What one batch handles: paths to index (files or folders, incrementally, with prune below
    them) and paths whose sources are gone (files, folders)."""

    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    initial: bool = False  # the pass over whole folders at start, or when a folder comes back

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def apply_changes(collection: Collection, changes: Changes, **options: Any) -> IndexReport:
    """Apply a batch to a collection: forget what was removed, then index what was added or changed
    (``Collection.add`` with ``prune=True`` below each path, no symbolic link followed, and
    ``options``). Returns one report."""
    removed = collection.forget_under(changes.remove) if changes.remove else 0
    present = [p for p in changes.add if os.path.lexists(p)]
    report = collection.add(present, prune=True, follow_symlinks=False, **options) if present else IndexReport()
    report.pruned += removed
    return report


@dataclass
class FolderState:
    path: str
    state: str = "starting"  # starting, watching, missing
    message: str = ""


@dataclass
class WatchState:
    """Where a watcher stands; ``to_dict`` for the server, ``line`` for a terminal."""

    folders: list[FolderState]
    state: str = "starting"  # starting, indexing, idle, stopped
    pending: int = 0
    batches: int = 0
    files: int = 0  # indexed (new, changed, retried)
    removed: int = 0
    items: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # the latest failures
    failed_total: int = 0
    last_event: float | None = None
    last_indexed: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "folders": [vars(f).copy() for f in self.folders], "pending": self.pending,
                "batches": self.batches, "files_indexed": self.files, "files_removed": self.removed,
                "items": self.items, "failed": self.failed_total,
                "recent_failures": [{"source": s, "reason": r} for s, r in self.failed],
                "last_event": self.last_event, "last_indexed": self.last_indexed, "error": self.error}

    def line(self) -> str:
        """One line: folders, activity, totals, the last batch's time."""
        watching = sum(f.state == "watching" for f in self.folders)
        missing = [f for f in self.folders if f.state == "missing"]
        text = f"watching {watching} folder{'s' * (watching != 1)}"
        if missing:
            text += f" ({len(missing)} missing: {', '.join(os.path.basename(f.path) or f.path for f in missing)})"
        activity = {"starting": "first pass", "indexing": "indexing"}.get(self.state)
        text += f" | {activity or (f'{self.pending} pending' if self.pending else self.state)}"
        text += f" | {self.files} indexed, {self.removed} removed, {self.failed_total} failed, {self.items} items"
        if self.last_indexed:
            text += " | last " + time.strftime("%H:%M:%S", time.localtime(self.last_indexed))
        if self.error:
            text += f" | error: {self.error[:120]}"
        return text


class Watcher:
    """Follow folders and hand debounced batches of changes to ``apply``.

    Args:
        paths: local folders (or files) to watch.
        apply: handles one batch (``Changes``) and returns an ``IndexReport``.
        debounce: seconds without an event (and with size and time still) before a path is handled.
        poll: seconds between checks of the pending paths and of the folders themselves.
        ignore: paths whose events are dropped (the collection's own directory, if inside).
        on_state: called with the ``WatchState`` after every change of it (from the watcher's thread).

    Example:
        >>> stop = threading.Event()
        >>> Watcher(["~/papers"], lambda ch: apply_changes(collection, ch)).run(stop)
    """

    def __init__(self, paths: Sequence[str | os.PathLike], apply: Callable[[Changes], IndexReport], *,
                 debounce: float = 2.0, poll: float = 0.25, ignore: Sequence[str | os.PathLike] = (),
                 on_state: Callable[[WatchState], None] | None = None) -> None:
        self.roots = list(dict.fromkeys(os.path.realpath(os.path.expanduser(os.fspath(p))) for p in paths))
        self.apply, self.debounce, self.poll = apply, debounce, poll
        self.ignore = [os.path.realpath(os.fspath(p)) for p in ignore]
        self.on_state = on_state
        self.state = WatchState([FolderState(r) for r in self.roots])
        self._pending: dict[str, tuple[str, float, tuple[int, int] | None]] = {}  # path -> (action, time, stat)
        self._lock = threading.Lock()
        self._identity: dict[str, tuple[int, int]] = {}  # root -> (device, inode) while watched
        self._watches: dict[str, Any] = {}
        self._observer: Any = None

    # ---------------------------------------------------------------- running

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set: the first pass, then batches of changes."""
        try:
            from watchdog.observers import Observer
        except ImportError:
            raise MissingExtraError("watchdog", "watch") from None
        self._observer = Observer()
        self._observer.start()
        try:
            for folder in self.state.folders:
                self._attach(folder)
            self._batch(Changes(add=[f.path for f in self.state.folders if f.state == "watching"], initial=True))
            while not stop.wait(self.poll):
                self._check_folders()
                changes = self._ready(time.monotonic())
                if changes:
                    self._batch(changes)
                elif self.state.state != "idle":
                    self._set(state="idle")
        finally:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._set(state="stopped")

    def stopped_by(self, message: str) -> None:
        """Record why the watcher stopped (a failure outside a batch), for its state."""
        self._set(state="stopped", error=message)

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON (safe to call from any thread)."""
        with self._lock:
            return self.state.to_dict()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            self.state.pending = len(self._pending)
        if self.on_state:
            self.on_state(self.state)

    def _batch(self, changes: Changes) -> None:
        if not changes:
            self._set(state="idle")
            return
        self._set(state="starting" if changes.initial else "indexing")
        try:
            report = self.apply(changes)
        except VlsearchError as exc:
            self._set(error=f"{exc}", state="idle")
            return
        with self._lock:
            s = self.state
            s.batches += 1
            s.files += report.new + report.changed + report.retried
            s.removed += report.pruned
            s.items += report.items
            s.failed_total += len(report.failed)
            s.failed = (s.failed + report.failed)[-RECENT_FAILURES:]
            s.last_indexed, s.error = time.time(), None
        self._set(state="idle")

    # ---------------------------------------------------------------- folders

    def _attach(self, folder: FolderState) -> None:
        """Watch a folder that exists (and is no link, nor below one); else mark it missing."""
        identity = _identity(folder.path)
        if identity is None:
            self._missing(folder, "cannot watch it (missing, not a folder, or a symbolic link lies on its path); "
                                  "the other folders are watched")
            return
        try:
            self._watches[folder.path] = self._observer.schedule(_Handler(self), folder.path, recursive=True)
        except OSError as exc:
            self._missing(folder, f"cannot watch it ({exc.strerror or exc}); the other folders are watched")
            return
        self._identity[folder.path] = identity
        folder.state, folder.message = "watching", ""
        self._set()

    def _missing(self, folder: FolderState, message: str) -> None:
        watch = self._watches.pop(folder.path, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError, RuntimeError):
                pass  # its emitter already stopped with the folder
        self._identity.pop(folder.path, None)
        folder.state, folder.message = "missing", message
        self._set()

    def _check_folders(self) -> None:
        """A watched folder deleted, unmounted or replaced (by a link too) is reported and dropped; one
        back is watched again."""
        for folder in self.state.folders:
            identity = _identity(folder.path)
            if folder.state == "watching" and identity != self._identity.get(folder.path):
                what = "replaced or unmounted" if identity else \
                    "replaced by a symbolic link" if os.path.lexists(folder.path) else "deleted"
                self._missing(folder, f"the folder was {what}: it is not watched now (the others are); "
                                      "its items stay until it is back or pruned")
            elif folder.state == "missing" and identity is not None:
                self._attach(folder)
                if folder.state == "watching":
                    self._queue(folder.path, "add")

    # ---------------------------------------------------------------- events

    def _relevant(self, path: str, directory: bool) -> bool:
        if any(under(path, i) for i in self.ignore):
            return False
        return directory or kind_of(path) is not None or archive_format(path) is not None

    def _queue(self, path: str, action: str) -> None:
        if path in self.roots and action == "remove":
            return  # a root itself going away is a folder state, not a deletion of its items
        with self._lock:
            self._pending[path] = (action, time.monotonic(), _stat(path) if action == "add" else None)
            self.state.last_event = time.time()
        self._set()

    def _ready(self, now: float) -> Changes:
        """The pending paths that have settled (removed from the queue)."""
        changes = Changes()
        with self._lock:
            unsettled = set()
            for path, (action, seen, snapshot) in list(self._pending.items()):
                if now - seen < self.debounce:
                    unsettled.add(path)
                    continue
                if action == "add":
                    current = _stat(path)
                    if current != snapshot:  # still being written (no event came, e.g. a network share)
                        self._pending[path] = (action, now, current)
                        unsettled.add(path)
                        continue
            for path, (action, seen, _) in list(self._pending.items()):
                if path in unsettled:
                    continue
                if action == "add" and any(under(other, path) for other in unsettled):
                    continue  # a folder with a file still being written inside: wait for it
                del self._pending[path]
                (changes.add if action == "add" else changes.remove).append(path)
        return changes


class _Handler:
    """watchdog's callbacks, turned into queued paths (runs on watchdog's thread)."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def dispatch(self, event: Any) -> None:
        kind, directory = event.event_type, event.is_directory
        src = os.fsdecode(event.src_path)
        queue, relevant = self.watcher._queue, self.watcher._relevant
        if kind == "moved":
            dest = os.fsdecode(event.dest_path)
            if relevant(src, directory):
                queue(src, "remove")
            if relevant(dest, directory):
                queue(dest, "add")
        elif kind == "deleted":
            if relevant(src, directory):
                queue(src, "remove")
        elif kind in ("created", "closed") or (kind == "modified" and not directory):
            if relevant(src, directory):
                queue(src, "add")


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a watched path with no symbolic link on it (``path``: absolute and resolved
    when it was first watched), else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return None if os.path.realpath(path) != path else (info.st_dev, info.st_ino)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)
