"""The embedded default store: LanceDB tables in a local directory.

Layout of a store directory::

    records.lance/   one row per Record (vector = fixed_size_list<float32>[dim])
    files.lance/     one row per source: ingestion state (FileEntry)
    meta.json        collection metadata, replaced atomically
    index.json       private: how the ANN index was built and is searched (type, rows, partitions,
                     nprobes, refine_factor)

Every write is one committed LanceDB version, so a killed process leaves the last
committed version readable; re-adding the same records is an idempotent upsert.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import BTree, HnswSq, IvfRq, IvfSq

from vlsearch.errors import InputError, StoreError
from vlsearch.files import read_json, write_json
from vlsearch.locator import Locator
from vlsearch.stores.base import FileEntry, Hit, Record, check_lexical_query, check_vector, checked_batch
from vlsearch.stores.filters import parse

log = logging.getLogger("vlsearch.stores")
IndexType = Literal["IVF_SQ", "IVF_RQ", "IVF_HNSW_SQ"]  # IVF_PQ: 230 s to build 100k x 2048 here
RECORDS, FILES = "records", "files"
LEXICAL_COLUMNS = ("text", "source")  # each with a BM25 (native full-text) index
_SCALAR_COLUMNS = ("id", "source", "content_hash", "modality", "page", "start", "end",
                   "chunk", "text", "thumbnail", "metadata")
_IN_CHUNK = 1000  # ids per `IN (...)` predicate

FILES_SCHEMA = pa.schema([pa.field("source", pa.string(), nullable=False), ("content_hash", pa.string()),
                          ("items", pa.int64()), ("status", pa.string()), ("error", pa.string()),
                          ("mtime", pa.float64()), ("size", pa.int64())])


def records_schema(dim: int) -> pa.Schema:
    """The Arrow schema of the records table for vectors of length ``dim``.

    Example:
        >>> records_schema(4).field("vector").type
        FixedSizeListType(fixed_size_list<item: float>[4])
    """
    return pa.schema([
        pa.field("id", pa.string(), nullable=False), ("source", pa.string()), ("content_hash", pa.string()),
        ("modality", pa.string()), ("page", pa.int32()), ("start", pa.float64()), ("end", pa.float64()),
        ("chunk", pa.int32()), ("text", pa.string()), ("thumbnail", pa.binary()),
        ("metadata", pa.string()),  # a JSON object
        ("vector", pa.list_(pa.float32(), dim)),
    ])


class LanceStore:
    """A :class:`~vlsearch.stores.base.VectorStore` on LanceDB in a local directory.

    Args:
        path: the store directory (created if missing).
        dim: vector length; None reads it from an existing table or takes it from the
            first records added. A value that contradicts an existing table is refused.
        ann_threshold: below this many rows searches are exact (brute force).
        index_type: the ANN index ``optimize()`` builds (metric cosine).
        nprobes, refine_factor, ef: ANN search parameters; None picks tuned defaults.

    Example:
        >>> store = LanceStore("/tmp/idx", dim=4)  # doctest: +SKIP
        >>> store.add([Record.of("a.txt", "h", Locator("text"), vector=np.ones(4, np.float32))])  # doctest: +SKIP
        >>> store.search(np.ones(4, np.float32), k=1)[0].record.source  # doctest: +SKIP
        'a.txt'
    """

    def __init__(self, path: str | Path, dim: int | None = None, *, ann_threshold: int = 50_000,
                 index_type: IndexType = "IVF_SQ", nprobes: int | None = None,
                 refine_factor: int | None = None, ef: int | None = None) -> None:
        self.path = Path(path)
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise InputError(f"dim must be a positive int, got {dim!r}")
        if index_type not in ("IVF_SQ", "IVF_RQ", "IVF_HNSW_SQ"):
            raise InputError(f"unknown index_type {index_type!r}")
        self.ann_threshold = ann_threshold
        self.index_type: IndexType = index_type
        self.nprobes, self.refine_factor, self.ef = nprobes, refine_factor, ef
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # check for other processes' commits on every operation (a local stat, sub-ms)
            self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open store: {e}") from e
        self._records: lancedb.table.Table | None = None
        self._files: lancedb.table.Table | None = None
        self._fts_checked: lancedb.table.Table | None = None  # the table whose FTS indexes exist
        self.dim: int | None = dim
        self._sync()

    def _sync(self) -> None:
        """Open the tables that another handle or process created since we looked."""
        if self._records is not None and self._files is not None:
            return
        names = set(self._db.list_tables().tables)
        if self._files is None and FILES in names:
            self._files = self._db.open_table(FILES)
        if self._records is None and RECORDS in names:
            self._records = self._db.open_table(RECORDS)
            found = self._records.schema.field("vector").type.list_size
            if self.dim is not None and self.dim != found:
                raise StoreError(f"{self.path}: store holds {found}-d vectors, not {self.dim}-d")
            self.dim = found

    # ---------------------------------------------------------------- records
    def add(self, records: Sequence[Record]) -> None:
        """Upsert ``records`` by id in one committed write (later duplicates in the batch win):
        ``store.add([a, b]); store.add([a]); store.count()`` → 2."""
        if not records:
            return
        self._sync()
        batch, vectors, dim = checked_batch(records, self.dim)
        table = _to_arrow(batch, np.stack(vectors), dim)
        try:
            if self._records is None:
                self._records = self._db.create_table(RECORDS, schema=records_schema(dim), exist_ok=True)
                self.dim = self._records.schema.field("vector").type.list_size
                if self.dim != dim:
                    raise StoreError(f"{self.path}: store holds {self.dim}-d vectors, records have {dim}")
            (self._records.merge_insert("id").when_matched_update_all()
             .when_not_matched_insert_all().execute(table))
        except (OSError, RuntimeError, ValueError) as e:
            raise StoreError(f"{self.path}: add failed: {e}") from e

    def delete(self, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None,
               *, keep_hash: str | None = None) -> int:
        """Delete records whose id is in ``ids`` or whose source is in ``sources``; with
        ``keep_hash``, records of those sources whose content_hash equals it are kept:
        ``store.delete(sources=["a.pdf"], keep_hash="9f2c")`` → 2 (stale pages removed)."""
        self._sync()
        if self._records is None:
            return 0
        keep = f" AND (content_hash IS NULL OR content_hash != {_quote(keep_hash)})" if keep_hash is not None else ""
        preds = [*_in_predicates("id", ids or ()), *(p + keep for p in _in_predicates("source", sources or ()))]
        try:
            return sum(self._records.delete(p).num_deleted_rows for p in preds)
        except (OSError, RuntimeError, ValueError) as e:
            raise StoreError(f"{self.path}: delete failed: {e}") from e

    def search(self, vector: np.ndarray, k: int, where: str | None = None, exact: bool | None = None) -> list[Hit]:
        """The ``k`` nearest records by cosine similarity, best first.

        Exact (brute force) below ``ann_threshold`` rows, with no index, or when
        ``exact=True``; otherwise the ANN index. ``where`` is a filter over the scalar
        columns (``stores.filters``), applied before the vector search.

        Example:
            >>> store.search(q, k=5, where="modality = 'video' AND start >= 60")  # doctest: +SKIP
        """
        if not self._start_search(k):
            return []
        q = check_vector(vector, "query")
        if q.shape[0] != self.dim:
            raise InputError(f"query: vector has dim {q.shape[0]}, the store holds {self.dim}-d vectors")
        use_exact = exact if exact is not None else self._records.count_rows() < self.ann_threshold
        query = (self._records.search(q, vector_column_name="vector").distance_type("cosine")
                 .select([*_SCALAR_COLUMNS, "_distance"]).limit(k))
        if use_exact:
            query = query.bypass_vector_index()
        else:
            for name, value in self._search_params(k).items():
                query = getattr(query, name)(value) if value else query  # .nprobes(n), .refine_factor(r), .ef(e)
        if where:
            query = query.where(parse(where, capped=False).sql(), prefilter=True)
        try:
            result = query.to_arrow()
        except (OSError, RuntimeError, ValueError) as e:
            if where:  # a checked filter the engine still refused (a type it would not compare): no internals
                log.debug("filter %r failed: %s", where, e)
                raise InputError(f"invalid filter {where[:80]!r}: the store cannot apply it") from None
            raise StoreError(f"{self.path}: search failed: {e}") from e
        dist = result.column("_distance").to_numpy(zero_copy_only=False)
        return [Hit(_to_record(row), float(1.0 - d)) for row, d in zip(result.drop_columns(["_distance"]).to_pylist(), dist)]

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids, with vectors, in the order asked, missing ones skipped:
        ``[r.id for r in store.get(["b", "a", "zz"])]`` → ``['b', 'a']``."""
        self._sync()
        if self._records is None or not ids:
            return []
        found: dict[str, Record] = {}
        for pred in _in_predicates("id", dict.fromkeys(ids)):
            table = self._records.search().where(pred).limit(None).to_arrow()
            vecs = _vectors(table, self.dim or 0)
            for row, vec in zip(table.drop_columns(["vector"]).to_pylist(), vecs):
                rec = _to_record(row)
                rec.vector = vec
                found[rec.id] = rec
        return [found[i] for i in ids if i in found]

    def count(self, where: str | None = None) -> int:
        """Number of records (matching ``where``), e.g. ``store.count()`` → 1024."""
        self._sync()
        if self._records is None:
            return 0
        return self._records.count_rows(parse(where, capped=False).sql() if where else None)

    def lexical_search(self, query: str, k: int, where: str | None = None) -> list[Hit]:
        """BM25 over ``text`` and ``source`` with LanceDB's native full-text indexes; the query is
        matched as words (no query syntax). New rows not yet folded into the index are searched too."""
        query = check_lexical_query(query)
        if not self._start_search(k):
            return []
        self._ensure_fts()
        from lancedb.query import MultiMatchQuery

        search = (self._records.search(MultiMatchQuery(query, list(LEXICAL_COLUMNS)), query_type="fts")
                  .select([*_SCALAR_COLUMNS, "_score"]).limit(k))
        if where:
            search = search.where(parse(where, capped=False).sql(), prefilter=True)
        try:
            result = search.to_arrow()
        except (OSError, RuntimeError, ValueError) as e:
            log.debug("lexical search %r (filter %r) failed: %s", query, where, e)
            raise InputError(f"lexical search for {query[:80]!r} failed in the store") from None
        scores = result.column("_score").to_numpy(zero_copy_only=False)
        return [Hit(_to_record(row), float(s)) for row, s in zip(result.drop_columns(["_score"]).to_pylist(), scores)]

    def _start_search(self, k: int) -> bool:
        """Check ``k`` and open the tables; False when there is nothing to search yet."""
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive int, got {k!r}")
        self._sync()
        return self._records is not None

    def _ensure_fts(self) -> None:
        """Create the full-text indexes that are missing (collections older than lexical search),
        once per opened table: an index, once there, stays."""
        assert self._records is not None
        if self._fts_checked is self._records:
            return
        indexed = {tuple(ix.columns) for ix in self._records.list_indices() if ix.index_type == "FTS"}
        for column in LEXICAL_COLUMNS:
            if (column,) not in indexed:
                try:
                    self._records.create_fts_index(column, replace=False)
                except (OSError, RuntimeError, ValueError) as e:  # another process made it meanwhile
                    if not any(ix.columns == [column] for ix in self._records.list_indices()):
                        raise StoreError(f"{self.path}: building the full-text index on {column} failed: {e}") from e
        self._fts_checked = self._records

    # ------------------------------------------------------------------ files
    def files(self) -> dict[str, FileEntry]:
        """Ingestion state of every source, keyed by source: ``store.files()["a.pdf"].status``."""
        self._sync()
        if self._files is None:
            return {}
        return {row["source"]: FileEntry(**row) for row in self._files.to_arrow().to_pylist()}

    def mark_files(self, entries: Sequence[FileEntry]) -> None:
        """Upsert the state of each ``entry.source`` in one commit (the last entry of a source wins):
        ``store.mark_files([FileEntry("a.pdf", "ab12", 3, "done")])``."""
        latest = {e.source: e for e in entries}
        if not latest:
            return
        for entry in latest.values():
            if entry.status not in ("done", "failed"):
                raise InputError(f"file {entry.source!r}: status must be 'done' or 'failed', got {entry.status!r}")
        rows = pa.Table.from_pylist([{**e.__dict__, "items": int(e.items), "mtime": float(e.mtime),
                                      "size": int(e.size)} for e in latest.values()], schema=FILES_SCHEMA)
        self._sync()
        if self._files is None:
            self._files = self._db.create_table(FILES, schema=FILES_SCHEMA, exist_ok=True)
        self._files.merge_insert("source").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def forget_files(self, sources: Sequence[str]) -> int:
        """Drop the ingestion state of ``sources``, e.g. ``store.forget_files(["a.pdf"])`` → 1 removed."""
        self._sync()
        if self._files is None:
            return 0
        return sum(self._files.delete(p).num_deleted_rows for p in _in_predicates("source", sources))

    # ------------------------------------------------------------------- meta
    def read_meta(self) -> dict[str, Any]:
        """Collection metadata written by :meth:`write_meta`, or {}: ``store.read_meta()["model"]``."""
        return read_json(self.path / "meta.json")

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace the collection metadata atomically (temp file, fsync, rename):
        ``store.write_meta({"model": "Qwen/Qwen3-VL-Embedding-2B", "dim": 2048})``."""
        if not isinstance(meta, dict):
            raise InputError(f"meta must be a dict, got {type(meta).__name__}")
        if "dim" in meta and self.dim is not None and meta["dim"] != self.dim:
            raise StoreError(f"{self.path}: meta says dim={meta['dim']} but the store holds {self.dim}-d vectors")
        write_json(self.path / "meta.json", meta)

    # ------------------------------------------------------------------ index
    def optimize(self) -> None:
        """Compact storage; build the ANN index once ``ann_threshold`` rows exist, retrain
        it when the table has doubled since, otherwise fold new rows into it: ``store.optimize()``."""
        self._sync()
        if self._files is not None:
            self._files.optimize()
        if self._records is None:
            return
        n = self._records.count_rows()
        built = read_json(self.path / "index.json")
        has_index = any(ix.columns == ["vector"] for ix in self._records.list_indices())
        # compaction first (and new rows folded into existing indices, the full-text ones too):
        # an index built before a compaction gets remapped, and searching it measured 2x slower
        self._ensure_fts()
        self._records.optimize()
        if n >= self.ann_threshold and (not has_index or n >= 2 * int(built.get("rows", 0))
                                        or built.get("type") != self.index_type):
            self._build_index(n)

    def _build_index(self, n: int) -> None:
        assert self._records is not None and self.dim is not None
        kind = self.index_type
        if kind == "IVF_HNSW_SQ":
            parts = max(1, math.ceil(n / 1_000_000))
            config: Any = HnswSq(distance_type="cosine", num_partitions=parts)
        else:
            parts = max(1, round(math.sqrt(n)))  # ~316 rows/partition at 100k, 1000 at 1M
            config = (IvfSq if kind == "IVF_SQ" else IvfRq)(distance_type="cosine", num_partitions=parts)
        try:
            self._records.create_index("vector", config=config, replace=True)
            for column in ("id", "source"):
                self._records.create_index(column, config=BTree(), replace=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise StoreError(f"{self.path}: building the {kind} index failed: {e}") from e
        nprobes = parts if kind == "IVF_HNSW_SQ" else max(10, math.ceil(0.01 * parts))
        write_json(self.path / "index.json", {"type": kind, "rows": n, "partitions": parts, "nprobes": nprobes,
                                              "refine_factor": 5})

    def _search_params(self, k: int) -> dict[str, int]:
        """ANN parameters: explicit ones, else those recorded when the index was built (index.json),
        tuned in bench/bench_store.py: at 1M x 2048, 1% of the partitions and refining 5x the
        hits from the full vectors gave recall@10 1.000 against exact search; 0.4% of them already
        did, the rest is margin for data less clustered than the benchmark's."""
        built = read_json(self.path / "index.json")
        parts = int(built.get("partitions", 1))
        refine = self.refine_factor if self.refine_factor is not None else int(built.get("refine_factor", 5))
        nprobes = self.nprobes or int(built.get("nprobes") or max(10, math.ceil(0.01 * parts)))
        if self.index_type == "IVF_HNSW_SQ":
            return {"nprobes": nprobes, "refine_factor": refine, "ef": max(self.ef or 100, k * max(refine, 1))}
        return {"nprobes": nprobes, "refine_factor": refine}


def open_uri(uri: str, dim: int | None = None) -> LanceStore:
    """The registry's entry point (``stores.open_store``): a directory or a ``file://`` URI."""
    return LanceStore(uri[len("file://"):] if uri.lower().startswith("file://") else uri, dim=dim)


# ---------------------------------------------------------------- helpers
def _to_arrow(batch: list[Record], vectors: np.ndarray, dim: int) -> pa.Table:
    cols: dict[str, list[Any]] = {c: [] for c in _SCALAR_COLUMNS}
    for rec in batch:
        try:
            meta = json.dumps(rec.metadata or {}, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"record {rec.id!r}: metadata is not JSON-serialisable: {e}") from e
        for c in _SCALAR_COLUMNS:
            cols[c].append(meta if c == "metadata" else getattr(rec, c))
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    arrays = {c: cols[c] for c in _SCALAR_COLUMNS}
    arrays["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    try:
        return pa.Table.from_pydict(arrays, schema=records_schema(dim))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise InputError(f"records do not fit the schema: {e}") from e


def _vectors(table: pa.Table, dim: int) -> np.ndarray:
    col = table.column("vector").combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=True)


def _to_record(row: dict[str, Any]) -> Record:
    return Record(id=row["id"], source=row["source"], content_hash=row.get("content_hash"),
                  locator=Locator(row["modality"], row.get("page"), row.get("start"), row.get("end"), row.get("chunk")),
                  text=row.get("text") or "", thumbnail=row.get("thumbnail"),
                  metadata=json.loads(row["metadata"]) if row.get("metadata") else {})


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _in_predicates(column: str, values: Sequence[str] | dict[str, None]) -> Iterator[str]:
    items = list(values)
    for i in range(0, len(items), _IN_CHUNK):
        yield f"{column} IN ({', '.join(_quote(v) for v in items[i:i + _IN_CHUNK])})"
