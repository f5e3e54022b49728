"""The index writer: the one place that turns extracted files into committed records and file states.

Whoever extracts the files (the local worker pool, Ray) feeds the writer the same events:

- ``pieces(source, pieces)``: pieces to embed; they are embedded in batches across files;
- ``embedded(source, records)``: records already embedded elsewhere (Ray's actors);
- ``complete(found, digest)``: the file has handed over all of its pieces (it is written at the
  next ``flush``, which pieces trigger every ``batch_items``);
- ``failed(source, reason, digest)``: the file failed (discovery, extraction, the model): it is
  recorded as failed, and whatever it had pending is dropped;
- ``unchanged(entry)``: a file touched but not changed: its state is refreshed.

Durability: a file's records go into the store in one commit, and only afterwards its state
(``done``) in another. A run killed in between leaves a file not marked done, which the next
run redoes; record ids are deterministic, so the upsert adds no duplicate.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import VlsearchError
from ..items import Item, listed, split_videos
from ..models.contract import EmbedderLike
from ..stores.base import FileEntry, Record, VectorStore
from .discover import Found
from .extractors import Piece
from .workers import ExtractResult

ProgressCallback = Callable[[int, int, int], None]  # (files done, files total, items embedded)
FIRST_BATCH = 8  # items of the first batch when the run's time is estimated: the estimate comes early


@dataclass
class IndexReport:
    """What an indexing run did: counts, failures (source, reason) and time."""

    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    retried: int = 0
    failed_before: int = 0
    items: int = 0
    pruned: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    no_ocr: list[tuple[str, str]] = field(default_factory=list)  # (item, why its OCR text is missing)
    not_read: list[tuple[str, str]] = field(default_factory=list)  # (source, why it was skipped: a missing program)
    seconds: float = 0.0

    def summary(self, show: Callable[[str], str] = str) -> str:
        """Counts on the first line, then a line per failure and per kind of skip; ``show`` writes each
        source, item and reason (the command line escapes their control characters with it)."""
        lines = [f"{self.seen} files: {self.new} new, {self.changed} changed, {self.retried} retried, "
                 f"{self.unchanged} unchanged, {self.skipped} skipped (unsupported), {len(self.failed)} failed; "
                 f"{self.items} items embedded" + (f"; {self.pruned} deleted files pruned" if self.pruned else "")
                 + f" in {self.seconds:.1f} s"]
        if self.failed_before:
            lines.append(f"  {self.failed_before} unchanged files failed before and were not retried "
                         "(vlsearch info lists them; retry_failed / --retry-failed tries again)")
        lines += [f"  failed: {show(source)}: {show(reason)}" for source, reason in self.failed]
        if self.not_read:
            reasons = sorted({reason for _, reason in self.not_read})
            lines += [f"  {sum(r == reason for _, r in self.not_read)} skipped: {show(reason)}" for reason in reasons]
        if self.no_ocr:
            lines.append(f"  {len(self.no_ocr)} items embedded without OCR text, e.g.:")
            lines += [f"    {show(item)}: {show(reason)}" for item, reason in self.no_ocr[:5]]
        return "\n".join(lines)


def pixel_bytes(item: Item) -> int:
    """The memory of an item's decoded pictures (PIL images; other sources count 0)."""
    pictures = [*listed(item.image), *(f for v in split_videos(item.video) if isinstance(v, list) for f in v)]
    return sum(p.width * p.height * len(p.getbands()) for p in pictures if isinstance(p, Image.Image))


def to_record(piece: Piece, vector: np.ndarray) -> Record:
    """The stored form of an embedded piece."""
    return Record.of(piece.source, piece.content_hash, piece.locator, text=piece.text, thumbnail=piece.thumbnail,
                     metadata=piece.metadata, vector=np.asarray(vector, np.float32))


def embed_pieces(embedder: EmbedderLike, pieces: Sequence[Piece], dim: int | None
                 ) -> tuple[list[Record], dict[str, str]]:
    """Embed pieces; a piece the model refuses fails its whole file, and the rest are embedded again.

    Returns the records of the pieces of files that did not fail, and ``{source: reason}``.
    """
    failed: dict[str, str] = {}
    while True:
        todo = [p for p in pieces if p.source not in failed]
        if not todo:
            return [], failed
        try:
            vectors = embedder.embed([p.item for p in todo], dim=dim, progress=False)
        except VlsearchError as exc:
            index = getattr(exc, "item", None)
            if index is None:
                raise
            bad = todo[index]
            failed[bad.source] = f"{bad.locator.label}: {getattr(exc, 'reason', exc)}"
            continue
        return [to_record(p, v) for p, v in zip(todo, vectors)], failed


class IndexWriter:
    """Embeds pieces in cross-file batches; writes whole files only, several per commit.

    Args:
        store: where records and file states go.
        embedder: the model for ``pieces`` events (not used for ``embedded`` ones); may be set after
            construction, before the first ``pieces``, so that a run with nothing to embed loads none.
        dim: Matryoshka dimension of the stored vectors (None: the model's).
        report: counts and failures are added here.
        batch_items: pieces gathered across files before each embedding call.
        batch_bytes: decoded pixels gathered before each embedding call (a full-budget page is
            ~5.5 MB); ``None``: count alone.
        previous: sources that already have records (their stale rows are deleted once the new
            version is written).
        progress: a progress bar (default: on a terminal).
        on_progress: called as ``on_progress(files_done, files_total, items)``.

    Example:
        >>> with IndexWriter(store, embedder, None, report) as writer:
        ...     writer.start(len(todo))
        ...     writer.consume(extract_all(todo, options))
    """

    def __init__(self, store: VectorStore, embedder: EmbedderLike | None, dim: int | None, report: IndexReport, *,
                 batch_items: int = 64, batch_bytes: int | None = 256 * 1024 * 1024, previous: Iterable[str] = (),
                 progress: bool | None = None, on_progress: ProgressCallback | None = None) -> None:
        self.store, self.embedder, self.dim, self.report = store, embedder, dim, report
        self.batch_items, self.batch_bytes, self.previous = batch_items, batch_bytes, set(previous)
        self.show = progress if progress is not None else sys.stderr.isatty()
        self.on_progress = on_progress
        self.pending: list[Piece] = []  # waiting for the embedder
        self.pending_bytes = 0
        self.records: dict[str, list[Record]] = {}  # embedded, by source, until the file is complete
        self.ready: dict[str, tuple[Found, str]] = {}  # complete files waiting to be written
        self.dead: set[str] = set()  # failed in this run: later events about them are ignored
        self.marks: list[FileEntry] = []  # file states waiting for the next commit
        self.quiet = progress is False
        self.files_done, self.total, self.started = 0, 0, time.perf_counter()
        self.expected: int | None = None  # items, when estimated: the bar counts items, the first batch is small
        self.on_cpu = False
        self._bar: Any = None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()

    def start(self, files: int, items: int | None = None, on_cpu: bool = False) -> None:
        """Announce how many files will be extracted (progress bar and callback) and, when estimated,
        about how many items they give: the bar then counts items, and the run's time is estimated
        after a small first batch (``estimate.announce``; ``on_cpu``: the model runs on the CPU)."""
        from tqdm.auto import tqdm

        self.total, self.started, self.expected, self.on_cpu = files, time.perf_counter(), items, on_cpu
        self._bar = tqdm(total=items or files, unit="item" if items else "file", disable=not self.show,
                         dynamic_ncols=True)
        if self.on_progress:
            self.on_progress(0, files, 0)

    def close(self) -> None:
        """Embed and write what is pending, then commit the remaining file states."""
        self.flush()
        self.store.mark_files(self.marks)
        self.marks = []
        if self._bar is not None:
            self._bar.close()

    # ---------------------------------------------------------------- events

    def consume(self, results: Iterable[ExtractResult]) -> None:
        """Feed the results of the local worker pool (``extract_all``), then flush."""
        for result in results:
            source = result.found.source
            if result.error:
                self.failed(source, result.error, result.content_hash, result.found)
                continue
            self.pieces(source, result.pieces)
            if result.last:
                self.complete(result.found, result.content_hash)
        self.flush()

    def pieces(self, source: str, pieces: Sequence[Piece]) -> None:
        if source in self.dead:
            return
        self.records.setdefault(source, [])
        self.pending += pieces
        self._note_ocr(pieces)
        self.pending_bytes += sum(pixel_bytes(p.item) for p in pieces)
        batch = min(self.batch_items, FIRST_BATCH) if self.expected and not self.report.items else self.batch_items
        if len(self.pending) >= batch or (self.batch_bytes is not None and self.pending_bytes >= self.batch_bytes):
            self.flush()

    def embedded(self, source: str, records: Sequence[Record]) -> None:
        if source not in self.dead:
            self.records.setdefault(source, []).extend(records)
            self.report.items += len(records)
            self._note_ocr(records)

    def complete(self, found: Found, digest: str) -> None:
        source = found.source
        if source not in self.dead:
            self.records.setdefault(source, [])
            self.ready[source] = (found, digest)

    def failed(self, source: str, reason: str, digest: str = "", found: Found | None = None) -> None:
        """Record a file as failed; its pending pieces and records are dropped. Its size and time are
        ``found``'s (objects, archive members), else the local file's now."""
        self.dead.add(source)
        self.records.pop(source, None)
        self.ready.pop(source, None)
        self.pending = [p for p in self.pending if p.source != source]
        self.pending_bytes = sum(pixel_bytes(p.item) for p in self.pending)
        self.report.failed.append((source, reason))
        if found is not None and not isinstance(found.path, Path):
            size, mtime = found.size, found.mtime
        else:
            try:
                stat = os.stat(source)
                size, mtime = stat.st_size, stat.st_mtime
            except OSError:
                size, mtime = 0, 0.0
        self.marks.append(FileEntry(source, digest, 0, "failed", reason, mtime, size))
        if self._bar is not None:
            self._advance(1)

    def _note_ocr(self, items: Sequence[Piece] | Sequence[Record]) -> None:
        """Report the items whose OCR failed (they are embedded all the same)."""
        self.report.no_ocr += [(f"{i.source} ({i.locator.label})", i.metadata["ocr_error"])
                               for i in items if "ocr_error" in i.metadata]

    def unchanged(self, entry: FileEntry) -> None:
        """A file whose content did not change: refresh its recorded size and time."""
        self.marks.append(entry)

    def flush(self) -> None:
        """Embed the pending pieces, then write the complete files."""
        if self.pending:
            assert self.embedder is not None, "pieces need an embedder"
            digests = {p.source: p.content_hash for p in self.pending}
            records, failures = embed_pieces(self.embedder, self.pending, self.dim)
            self.pending, self.pending_bytes = [], 0
            for source, reason in failures.items():
                self.failed(source, reason, digests[source])
            for record in records:
                self.records[record.source].append(record)
            first = not self.report.items
            self.report.items += len(records)
            if self.expected:
                self._count_items(len(records), first)
        self._write()

    def _count_items(self, items: int, first: bool) -> None:
        """The bar counts items (its total grows when the estimate was low); after the first batch,
        the run's time is estimated."""
        if self._bar is not None:
            self._bar.total = max(self._bar.total, self.report.items)
            self._bar.update(items)
        if first and not self.quiet:
            from .estimate import announce

            line = announce(self.report.items, self.expected, time.perf_counter() - self.started, self.on_cpu)
            if line:
                from tqdm.auto import tqdm

                tqdm.write(line, file=sys.stderr)

    # ---------------------------------------------------------------- writing

    def _write(self) -> None:
        """Records of the complete files in one commit, then their states in another."""
        done, self.ready = list(self.ready.values()), {}
        if not done:
            return
        records = {found.source: self.records.pop(found.source, []) for found, _ in done}
        self.store.add([r for rows in records.values() for r in rows])
        entries = []
        for found, digest in done:
            source = found.source
            if source in self.previous:  # rows of an older version of the file
                self.store.delete(sources=[source], keep_hash=digest)
            # size and time as hashed, so a later edit is seen as a change
            entries.append(FileEntry(source, digest, len(records[source]), "done", "", found.mtime, found.size))
        self.store.mark_files([*self.marks, *entries])
        self.marks = []
        self._advance(len(done))
        if self._bar is not None:
            rate = self.report.items / max(time.perf_counter() - self.started, 1e-9)
            done = f"{self.files_done}/{self.total} files" if self.expected else f"{self.report.items} items"
            self._bar.set_postfix_str(f"{done}, {rate:.1f} items/s", refresh=False)

    def _advance(self, files: int) -> None:
        self.files_done += files
        if self._bar is not None and not self.expected:
            self._bar.update(files)
        if self.on_progress:
            self.on_progress(self.files_done, self.total, self.report.items)
