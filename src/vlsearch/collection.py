"""Collection: ingest files into a vector store and search them in two stages.

A collection is a directory (``$VLSEARCH_HOME/collections/<name>`` by default) holding a
store and its metadata: the embedding model (with a fingerprint of its weights), the
dimension and the query instruction. Ingestion is incremental and durable: a file's
records are written in one store commit and only then is the file marked done, so a
killed run leaves no partial file behind and re-running completes it without
duplicates (record ids are deterministic).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import InputError, MediaError, StoreError, VlsearchError
from .ingest import ExtractOptions, discover, extract_all
from .ingest.discover import Found, content_hash
from .ingest.extractors import Piece, piece_item
from .items import Item
from .models.embedder import Embedder
from .models.remote import RemoteEmbedder, RemoteReranker, is_remote
from .models.reranker import Reranker
from .stores import FileEntry, Record, VectorStore, open_store
from .stores.base import make_record_id
from .files import read_json, write_json

DEFAULT_EMBEDDER = "Qwen/Qwen3-VL-Embedding-2B"
DEFAULT_RERANKER = "Qwen/Qwen3-VL-Reranker-2B"
QUERY_INSTRUCTION = "Retrieve images, document pages, video clips or text passages relevant to the user's query."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def vlsearch_home() -> Path:
    """``$VLSEARCH_HOME``, by default ``~/.vlsearch``."""
    return Path(os.environ.get("VLSEARCH_HOME") or "~/.vlsearch").expanduser()


def collection_path(name: str) -> Path:
    """Where the collection ``name`` lives: a plain name goes under the home, a path is used as is."""
    if os.sep in name or name.startswith("."):
        return Path(name).expanduser().resolve()
    if not _NAME.match(name):
        raise InputError(f"invalid collection name {name!r}: use letters, digits, '.', '_' and '-'")
    return vlsearch_home() / "collections" / name


def list_collections() -> list[str]:
    """Names of the collections under the home directory."""
    root = vlsearch_home() / "collections"
    return sorted(p.name for p in root.iterdir() if collection_exists(p)) if root.is_dir() else []


def collection_exists(path: Path) -> bool:
    """A collection exists once its metadata is written (its first ``add`` loaded a model);
    one in an external store (Milvus) records that store in ``collection.json`` just before."""
    return (path / "store" / "meta.json").is_file() or (path / "collection.json").is_file()


def _store_uri(path: Path, store: str | None) -> str:
    """The collection's store: the one recorded in ``collection.json``, else ``store``, else the
    local LanceDB directory; a ``store`` that contradicts the recorded one is refused."""
    local = str(path / "store")
    if store is not None and "://" not in store:
        store = str(Path(store).expanduser().resolve())
    recorded = read_json(path / "collection.json").get("store") or (local if collection_exists(path) else None)
    if store is not None and recorded is not None and store != recorded:
        raise StoreError(f"collection {path.name!r} lives in {recorded}; it cannot be opened with store {store} "
                         "(index into a new collection instead)")
    return recorded or store or local


@dataclass
class Result:
    """One search result.

    ``score`` is the reranker's relevance in [0, 1] when reranked, else the cosine similarity.
    """

    rank: int
    id: str
    score: float
    vector_score: float
    rerank_score: float | None
    source: str
    modality: str
    page: int | None
    start: float | None
    end: float | None
    text: str
    thumbnail: bytes | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self, thumbnail: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["thumbnail"] = None
        if thumbnail and self.thumbnail:
            import base64

            out["thumbnail"] = "data:image/jpeg;base64," + base64.b64encode(self.thumbnail).decode()
        return out


@dataclass
class IndexReport:
    """What an ``add`` did: counts, failures (source, reason) and time."""

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
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.seen} files: {self.new} new, {self.changed} changed, {self.retried} retried, "
                 f"{self.unchanged} unchanged, {self.skipped} skipped (unsupported), {len(self.failed)} failed; "
                 f"{self.items} items embedded" + (f"; {self.pruned} deleted files pruned" if self.pruned else "")
                 + f" in {self.seconds:.1f} s"]
        if self.failed_before:
            lines.append(f"  {self.failed_before} unchanged files failed before and were not retried "
                         "(vlsearch info lists them; retry_failed / --retry-failed tries again)")
        lines += [f"  failed: {source}: {reason}" for source, reason in self.failed]
        return "\n".join(lines)


class Collection:
    """A searchable set of files.

    Args:
        name: a collection name (under ``$VLSEARCH_HOME``) or a directory path.
        model: embedding model: hub id, directory, or the URL of a model server (vlsearch's, or
            OpenAI-compatible; key from ``$VLSEARCH_API_KEY``); default: the one the collection was
            built with, else ``$VLSEARCH_EMBEDDER``, else Qwen3-VL-Embedding-2B.
        reranker: reranking model (the same forms; a server URL speaks Cohere/Jina rerank);
            default ``$VLSEARCH_RERANKER``, else Qwen3-VL-Reranker-2B.
        dim: Matryoshka dimension of the stored vectors (default: the model's full size).
        instruction: the query instruction recorded with the collection.
        create: False refuses to open a collection that does not exist.
        model_options: keyword options for ``Embedder``/``Reranker`` (device, dtype ...).
        store: where the records live when not in the collection directory's LanceDB: a Milvus Lite
            ``.db`` file or ``milvus://host:19530[/collection]``; recorded at the first ``add``, so
            later opens need not repeat it (a different one is refused).
        loaded_embedder, loaded_reranker: models already loaded (shared, e.g. by the server), used
            instead of loading ``model``/``reranker``; the embedder is still checked against the
            collection's fingerprint and dimension.

    Example:
        >>> c = Collection("papers")
        >>> c.add(["~/papers"]).summary()
        >>> c.search("attention heatmap of a transformer", top_k=5)
    """

    def __init__(self, name: str, *, model: str | None = None, reranker: str | None = None,
                 dim: int | None = None, instruction: str | None = None, create: bool = True,
                 model_options: dict[str, Any] | None = None, loaded_embedder: Embedder | None = None,
                 loaded_reranker: Reranker | None = None, store: str | None = None) -> None:
        self.name = name
        self.path = collection_path(name)
        if not create and not collection_exists(self.path):
            raise StoreError(f"no collection {name!r} (looked in {self.path})")
        self.store_uri = _store_uri(self.path, store)
        self.store: VectorStore = open_store(self.store_uri)
        self.meta = self.store.read_meta()
        recorded = self.meta.get("model")
        if dim is not None and self.meta.get("dim") not in (None, dim):
            raise StoreError(f"collection {name!r} holds {self.meta['dim']}-d vectors; it cannot take dim={dim}")
        self.model_name = model or recorded or os.environ.get("VLSEARCH_EMBEDDER") or DEFAULT_EMBEDDER
        self.reranker_name = reranker or os.environ.get("VLSEARCH_RERANKER") or DEFAULT_RERANKER
        self.dim = dim or self.meta.get("dim")
        self.instruction = instruction or self.meta.get("instruction") or QUERY_INSTRUCTION
        self.model_options = model_options or {}
        self._embedder: Embedder | None = None
        self._reranker: Reranker | None = loaded_reranker
        self._given_embedder = loaded_embedder
        self._marks: list[FileEntry] = []  # file states waiting for the next commit

    # ---------------------------------------------------------------- models

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded once, checked against the collection's record."""
        if self._embedder is None:
            embedder = self._given_embedder or _load(self.model_name, Embedder, RemoteEmbedder, self.model_options)
            known = self.meta.get("fingerprint")
            if known and known != embedder.fingerprint:
                raise StoreError(
                    f"collection {self.name!r} was built with {self.meta.get('model')} (weights {known}); "
                    f"{self.model_name} has other weights ({embedder.fingerprint}). Use the same model, "
                    "or index into a new collection")
            if self.dim is not None and not 1 <= self.dim <= embedder.dim:
                raise InputError(f"dim must be between 1 and {embedder.dim}, not {self.dim}")
            self._embedder = embedder
        return self._embedder

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            self._reranker = _load(self.reranker_name, Reranker, RemoteReranker, self.model_options)
        return self._reranker

    def _record_meta(self, layout: dict[str, Any]) -> None:
        if self.meta.get("fingerprint"):
            return
        embedder = self.embedder
        self.dim = self.dim or embedder.dim
        self.meta = {"model": self.model_name, "fingerprint": embedder.fingerprint, "dim": self.dim,
                     "instruction": self.instruction, "layout": layout,
                     "created": datetime.now(timezone.utc).isoformat(), "vlsearch": __version__}
        if self.store_uri != str(self.path / "store"):
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.path / "collection.json", {"store": self.store_uri})
        self.store.write_meta(self.meta)

    def extract_options(self, options: ExtractOptions | None = None) -> ExtractOptions:
        """The collection's extraction options: ``options`` if given (checked against the layout the
        collection was built with), else the recorded layout, else the defaults."""
        recorded = self.meta.get("layout")
        if options is None:
            return ExtractOptions(**recorded) if recorded else ExtractOptions()
        if recorded and recorded != _layout(options):
            changed = {k: v for k, v in _layout(options).items() if recorded.get(k) != v}
            raise InputError(f"collection {self.name!r} was built with {({k: recorded.get(k) for k in changed})}; "
                             f"it cannot take {changed} (the items would not line up); use a new collection")
        return options

    # ---------------------------------------------------------------- ingestion

    def add(self, paths: Sequence[str | os.PathLike], *, include: Sequence[str] = (), exclude: Sequence[str] = (),
            prune: bool = False, workers: int = 2, options: ExtractOptions | None = None,
            progress: bool | None = None, batch_items: int = 64, retry_failed: bool = False,
            follow_symlinks: bool = True, on_progress: Callable[[int, int, int], None] | None = None,
            engine: str = "local", ray_address: str | None = None) -> IndexReport:
        """Index new and changed files under ``paths``; failures are recorded, never fatal.

        Args:
            paths: files or directories (searched recursively).
            include, exclude: glob patterns on the path relative to each root.
            prune: drop the records of files under ``paths`` that no longer exist.
            workers: decoding processes (PDF rendering, video decoding); 0 decodes in-process.
            options: how files are cut (pages, video segments, text chunks).
            progress: progress bar; by default only on a terminal.
            batch_items: pieces gathered across files before each embedding call.
            retry_failed: try again files that failed before and have not changed since.
            follow_symlinks: False skips symbolic links met inside directories (the given paths
                themselves are always followed).
            on_progress: called as ``on_progress(files_done, files_total, items)`` as files complete.
            engine: "local" (worker processes and this process's model) or "ray": decoding and
                embedding on a Ray cluster (``pip install 'vlsearch[ray]'``; see ``ray_ingest``).
            ray_address: the Ray cluster to join (default: a running ``ray.init``, else a local one).
        """
        if engine not in ("local", "ray"):
            raise InputError(f"engine must be 'local' or 'ray', not {engine!r}")
        started = time.perf_counter()
        report = IndexReport()
        options = self.extract_options(options)
        self._record_meta(_layout(options))
        known = self.store.files()
        roots = [str(Path(p).expanduser().resolve()) for p in paths]
        todo: list[tuple[Found, str]] = []
        present: set[str] = set()
        for found in discover([Path(p).expanduser() for p in paths], include, exclude, follow_symlinks):
            report.seen += 1
            source = str(found.path)
            present.add(source)
            if found.error:
                self._fail(report, source, found.error)
            elif found.kind is None:
                report.skipped += 1
            else:
                entry = known.get(source)
                same_stat = entry is not None and (entry.size, entry.mtime) == (found.size, found.mtime)
                if same_stat and entry.status == "done":
                    report.unchanged += 1
                    continue
                if same_stat and entry.status == "failed" and not retry_failed:
                    report.failed_before += 1
                    continue
                try:
                    digest = content_hash(found.path)
                except VlsearchError as exc:
                    self._fail(report, source, str(exc))
                    continue
                if entry and entry.status == "done" and entry.content_hash == digest:  # touched, not changed
                    self._marks.append(FileEntry(source, digest, entry.items, "done", "", found.mtime, found.size))
                    report.unchanged += 1
                    continue
                if entry is None:
                    report.new += 1
                elif entry.status == "done":
                    report.changed += 1
                else:
                    report.retried += 1
                todo.append((found, digest))
        if todo:
            previous = {str(f.path) for f, _ in todo if str(f.path) in known}
            ingest = _Ingest(self, report, progress, batch_items, previous, on_progress)
            if engine == "ray":
                self._add_on_ray(ingest, todo, options, ray_address)
            else:
                ingest.run(extract_all(todo, options, workers=workers), len(todo))
        self._write_marks()
        if prune:
            gone = [s for s in known if s not in present and any(_under(s, r) for r in roots)]
            if gone:
                self.store.delete(sources=gone)
                self.store.forget_files(gone)
                report.pruned = len(gone)
        self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _add_on_ray(ingest: _Ingest, todo: list[tuple[Found, str]], options: ExtractOptions,
                    address: str | None) -> None:
        """The extract + embed stage on a Ray cluster (a local one is started and stopped here)."""
        from .ray_ingest import connect, ray_extract_embed

        started = connect(address)
        try:
            ray_extract_embed(ingest, todo, options)
        finally:
            if started:
                import ray

                ray.shutdown()

    def _fail(self, report: IndexReport, source: str, reason: str, digest: str = "") -> None:
        report.failed.append((source, reason))
        try:
            stat = os.stat(source)
            size, mtime = stat.st_size, stat.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        self._marks.append(FileEntry(source, digest, 0, "failed", reason, mtime, size))

    def _write_marks(self, entries: Sequence[FileEntry] = ()) -> None:
        """File states are written in one commit, after the records they describe."""
        entries, self._marks = [*self._marks, *entries], []
        self.store.mark_files(entries)

    # ---------------------------------------------------------------- search

    def search(self, query: str | None = None, *, image: Any = None, top_k: int = 10, candidates: int = 50,
               rerank: bool = True, where: str | None = None, instruction: str | None = None,
               like: str | None = None) -> list[Result]:
        """Two-stage search: nearest neighbours by vector, then the reranker on the candidates.

        Args:
            query: query text; ``image`` adds (or is) an image query.
            top_k: results returned.
            candidates: neighbours fetched from the store and reranked.
            rerank: False returns the vector ranking.
            where: SQL filter on the records (``modality = 'pdf_page' AND page <= 3``,
                ``text LIKE '%invoice%'``, ``source LIKE '%/reports/%'``).
            instruction: query instruction (default: the collection's).
            like: the id of an item in the collection: find items like it.
        """
        if top_k < 1 or candidates < 1:
            raise InputError("top_k and candidates must be >= 1")
        if not self.meta.get("fingerprint"):
            raise StoreError(f"collection {self.name!r} is empty: index some files first")
        if like is not None:
            found = self.store.get([like])
            if not found:
                raise InputError(f"no item with id {like!r} in collection {self.name!r}")
            vector, query_item = found[0].vector, self._item_of(found[0])[0]
        else:
            if not query and image is None:
                raise InputError("give a query text, an image, or an item id (like)")
            query_item = Item(text=query or None, image=image, instruction=instruction or self.instruction)
            vector = self.embedder.embed([query_item], dim=self.dim)[0]
        depth = max(candidates, top_k) if rerank else top_k
        hits = self.store.search(np.asarray(vector, np.float32), k=depth + (like is not None), where=where)
        hits = [h for h in hits if h.record.id != like][:depth]
        results = [Result(0, h.record.id, h.score, h.score, None, h.record.source, h.record.modality, h.record.page,
                          h.record.start, h.record.end, h.record.text, h.record.thumbnail, h.record.metadata)
                   for h in hits]
        if rerank and results:
            self._rerank(query_item, results, hits, instruction)
        for rank, result in enumerate(results[:top_k], 1):
            result.rank = rank
        return results[:top_k]

    def _rerank(self, query: Item, results: list[Result], hits: list[Any], instruction: str | None) -> None:
        entries, checked = self.store.files(), {}  # one look-up per search, one check per source
        docs, notes = zip(*(self._item_of(h.record, entries, checked) for h in hits))
        query = Item(text=query.text, image=query.image, video=query.video, fps=query.fps)
        scores = self.reranker.score(query, list(docs), instruction=instruction)
        for result, score, note in zip(results, scores, notes):
            result.rerank_score = result.score = score
            result.note = note
        results.sort(key=lambda r: (-r.score, -r.vector_score))

    def _item_of(self, record: Record, entries: dict[str, FileEntry] | None = None,
                 checked: dict[str, str] | None = None) -> tuple[Item, str]:
        """The model input of a stored record, rebuilt from its source; the thumbnail (and a note
        saying so) when the source is gone or has changed since indexing."""
        if record.modality == "text":
            return Item(text=record.text), ""
        checked = {} if checked is None else checked
        if record.source not in checked:
            checked[record.source] = self._source_changed(record, (entries or {}).get(record.source))
        reason = checked[record.source]
        if not reason:
            try:
                return piece_item(record.source, record.modality, record.page, record.start, record.end,
                                  self.extract_options()), ""
            except VlsearchError as exc:
                reason = str(exc)
        if not record.thumbnail:
            raise MediaError(f"{record.source}: cannot rebuild item {record.id} for reranking ({reason})")
        return Item(image=record.thumbnail, text=record.text or None), f"reranked on the thumbnail: {reason}"

    @staticmethod
    def _source_changed(record: Record, entry: FileEntry | None) -> str:
        """Empty when the source still holds what was indexed, else why not. Size and time as
        recorded settle it without reading the file; otherwise the content hash does."""
        try:
            stat = os.stat(record.source)
            if entry is not None and entry.content_hash == record.content_hash and \
                    (stat.st_size, stat.st_mtime) == (entry.size, entry.mtime):
                return ""
            if content_hash(record.source) == record.content_hash:
                return ""
        except OSError:
            pass
        except VlsearchError as exc:
            return str(exc)
        return "source changed or missing since indexing"

    # ---------------------------------------------------------------- management

    def delete(self, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None) -> int:
        """Remove items by id, or every item of the given source files; returns how many."""
        resolved = [str(Path(s).expanduser().resolve()) for s in sources or ()]
        removed = self.store.delete(ids=ids, sources=resolved or None)
        if resolved:
            self.store.forget_files(resolved)
        return removed

    def info(self) -> dict[str, Any]:
        """Model, dimension, instruction, counts by status, failures."""
        files = self.store.files()
        failed = {s: e.error for s, e in files.items() if e.status == "failed"}
        return {"name": self.name, "path": str(self.path), **self.meta, "items": self.store.count(),
                "files": sum(e.status == "done" for e in files.values()), "failed": failed}

    @staticmethod
    def remove(name: str) -> None:
        """Delete a collection and everything in it."""
        path = collection_path(name)
        if not (path / "store").is_dir() and not (path / "collection.json").is_file():
            raise StoreError(f"no collection {name!r} (looked in {path})")
        external = read_json(path / "collection.json").get("store")
        if external:
            drop = getattr(open_store(external), "drop", None)
            if drop is not None:
                drop()
        shutil.rmtree(path)


LAYOUT_FIELDS = ("max_pixels", "min_pixels", "segment_seconds", "video_fps", "video_max_frames", "video_max_pixels",
                 "chunk_chars", "chunk_overlap")


def _layout(options: ExtractOptions) -> dict[str, Any]:
    """The extraction options that decide what an item is (pages, segments, chunks)."""
    return {name: getattr(options, name) for name in LAYOUT_FIELDS}


def _load(name: str, local: type, remote: type, options: dict[str, Any]) -> Any:
    """A local model, or a remote one when ``name`` is a server URL (``$VLSEARCH_API_KEY`` as its key)."""
    if is_remote(name):
        return remote(name, api_key=os.environ.get("VLSEARCH_API_KEY"))
    return local(name, **options)


def _under(source: str, root: str) -> bool:
    return source == root or source.startswith(root.rstrip(os.sep) + os.sep)


class _Ingest:
    """Embeds streamed pieces in cross-file batches; writes only whole files, several per commit."""

    def __init__(self, collection: Collection, report: IndexReport, progress: bool | None, batch_items: int,
                 previous: set[str], on_progress: Callable[[int, int, int], None] | None = None):
        self.c, self.report, self.batch_items, self.previous = collection, report, batch_items, previous
        self.on_progress, self.files_done = on_progress, 0
        self.show = progress if progress is not None else sys.stderr.isatty()
        self.pending: list[Piece] = []  # waiting for the embedder
        self.records: dict[str, list[Record]] = {}  # embedded, by source, until the file is complete
        self.complete: dict[str, Any] = {}  # source -> its last ExtractResult: all parts extracted
        self.dead: set[str] = set()

    def run(self, results: Iterable[Any], files: int) -> None:
        from tqdm.auto import tqdm

        with tqdm(total=files, unit="file", disable=not self.show, dynamic_ncols=True) as bar:
            self.bar, self.started = bar, time.perf_counter()
            if self.on_progress:
                self.on_progress(0, files, 0)
            for result in results:
                source = str(result.found.path)
                if result.error:
                    self._drop(source, result.content_hash, result.error)
                else:
                    self.records.setdefault(source, [])
                    self.pending += result.pieces
                if result.last and not result.error:
                    self.complete[source] = result
                if len(self.pending) >= self.batch_items:
                    self._embed()
            self._embed()

    def _embed(self) -> None:
        while self.pending:
            pieces = [p for p in self.pending if p.source not in self.dead]
            try:
                vectors = self.c.embedder.embed([p.item for p in pieces], dim=self.c.dim, progress=False)
            except VlsearchError as exc:
                index = getattr(exc, "item", None)
                if index is None:
                    raise
                bad = pieces[index]
                self._drop(bad.source, bad.content_hash, f"{_locator(bad)}: {exc.reason}")
                continue
            for piece, vector in zip(pieces, vectors):
                self.records[piece.source].append(_record(piece, vector))
            self.report.items += len(pieces)
            self.pending = []
        self._write()

    def _write(self) -> None:
        """Records of the complete files in one commit, then their states in another: a kill in
        between leaves files not marked done, which the next run redoes (upserts, no duplicates)."""
        store, done = self.c.store, list(self.complete.items())
        self.complete = {}
        if not done:
            return
        records = {source: self.records.pop(source, []) for source, _ in done}
        store.add([r for rows in records.values() for r in rows])
        entries = []
        for source, result in done:
            if source in self.previous:  # rows of an older version of the file
                store.delete(sources=[source], keep_hash=result.content_hash)
            found = result.found  # size and time as hashed, so a later edit is seen as a change
            entries.append(FileEntry(source, result.content_hash, len(records[source]), "done", "", found.mtime,
                                     found.size))
        self.c._write_marks(entries)
        self._advance(len(done))
        rate = self.report.items / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.report.items} items, {rate:.1f} items/s", refresh=False)

    def _drop(self, source: str, digest: str, reason: str) -> None:
        self.dead.add(source)
        self.records.pop(source, None)
        self.complete.pop(source, None)
        self.pending = [p for p in self.pending if p.source != source]
        self.c._fail(self.report, source, reason, digest)
        self._advance(1)

    def _advance(self, files: int) -> None:
        self.bar.update(files)
        self.files_done += files
        if self.on_progress:
            self.on_progress(self.files_done, self.bar.total, self.report.items)


def _record(piece: Piece, vector: np.ndarray) -> Record:
    return Record(id=make_record_id(piece.source, piece.modality, piece.page, piece.start, piece.end, piece.chunk),
                  source=piece.source, content_hash=piece.content_hash, modality=piece.modality, page=piece.page,
                  start=piece.start, end=piece.end, chunk=piece.chunk, text=piece.text, thumbnail=piece.thumbnail,
                  metadata=piece.metadata, vector=np.asarray(vector, np.float32))


def _locator(piece: Piece) -> str:
    if piece.page is not None:
        return f"page {piece.page}"
    if piece.start is not None:
        return f"{piece.start:.1f}-{piece.end:.1f} s"
    return f"chunk {piece.chunk}" if piece.chunk is not None else "item"
