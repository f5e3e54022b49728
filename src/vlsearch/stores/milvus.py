"""The cluster store: Milvus collections through pymilvus' ``MilvusClient``.

The same code talks to a Milvus server (``http://host:19530``) and to Milvus Lite (a
local ``.db`` file), which is what the tests run against. One vlsearch store is three
Milvus collections:

    <name>          one row per Record: id VARCHAR primary key, the scalar fields
                    (page/chunk INT64, start/end DOUBLE, all nullable: None stays None),
                    metadata as a JSON string (VARCHAR, filterable with LIKE like LanceDB's),
                    thumbnail as base64 (VARCHAR), vector FLOAT_VECTOR(dim), AUTOINDEX, COSINE;
                    ``lexical`` (source path and text, analysed) feeds a BM25 function into the
                    ``sparse`` field (SPARSE_INVERTED_INDEX, BM25) for lexical search
    <name>_files    one row per source: FileEntry
    <name>_meta     one row: the collection metadata as a JSON string

Milvus needs a vector field in every collection, so the last two carry a constant
2-d placeholder vector. ``text`` longer than 65,535 UTF-8 bytes (Milvus' VARCHAR
limit) is stored cut at that length; the vector is computed from the full text
before it gets here. Filters are parsed by ``stores.filters`` and rendered as Milvus
expressions.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

try:
    from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException
except ImportError as e:  # pragma: no cover - exercised only without the extra
    from vlsearch.errors import MissingExtraError

    raise MissingExtraError("pymilvus", "milvus") from e

from vlsearch.errors import InputError, StoreError
from vlsearch.locator import Locator
from vlsearch.stores.base import FileEntry, Hit, Record, check_lexical_query, check_vector, checked_batch
from vlsearch.stores.filters import parse

VARCHAR_MAX = 65_535  # bytes
MAX_K = 16_384  # Milvus' top-k limit
_CHUNK = 1000  # ids per `in [...]` expression or request
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_SCALARS = ("id", "source", "content_hash", "modality", "page", "start", "end", "chunk", "text", "thumbnail",
            "metadata")
_PLACEHOLDER = [0.0, 0.0]


class _QuietLite(logging.Filter):
    """Drop pymilvus' warning that Milvus Lite has no server-side iterator timestamp (harmless)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_QuietLite())


class MilvusStore:
    """A :class:`~vlsearch.stores.base.VectorStore` on Milvus (server or Milvus Lite file).

    Args:
        uri: ``http(s)://host:19530`` for a server, or a local path ending in ``.db`` (Milvus Lite).
        collection: Milvus collection name (letters, digits, ``_``); ``<name>_files`` and
            ``<name>_meta`` hold ingestion state and metadata.
        dim: vector length; None reads it from an existing collection or takes it from the
            first records added. A value that contradicts an existing collection is refused.
        token: ``user:password`` or an API key for a server.

    Example:
        >>> store = MilvusStore("/tmp/idx.db", dim=4)  # doctest: +SKIP
        >>> store.add([Record.of("a.txt", "h", Locator("text"), vector=np.ones(4, np.float32))])  # doctest: +SKIP
        >>> store.search(np.ones(4, np.float32), k=1)[0].record.source  # doctest: +SKIP
        'a.txt'
    """

    def __init__(self, uri: str, collection: str = "vlsearch", dim: int | None = None,
                 token: str | None = None) -> None:
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise InputError(f"dim must be a positive int, got {dim!r}")
        if not _NAME.match(collection):
            raise InputError(f"invalid Milvus collection name {collection!r}: use letters, digits and '_'")
        self.uri, self.collection = uri, collection
        self._files, self._meta = f"{collection}_files", f"{collection}_meta"
        self.where = f"{uri} (collection {collection})"
        try:
            self._client = MilvusClient(uri=uri, token=token or "", timeout=30)
        except MilvusException as e:
            raise StoreError(f"{uri}: cannot connect to Milvus: {e.message}") from e
        except Exception as e:  # Milvus Lite start-up raises assorted errors
            raise StoreError(f"{uri}: cannot open Milvus: {e}") from e
        self.dim: int | None = dim
        self._has_records = self._lexical = False
        self._sync()

    def close(self) -> None:
        """Close the connection (a Milvus Lite file can then be opened by another process)."""
        self._client.close()

    def drop(self) -> None:
        """Drop the store's three Milvus collections (used when a collection is removed)."""
        for name in (self.collection, self._files, self._meta):
            self._call("drop", self._client.drop_collection, name)
        self._has_records = False

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            raise StoreError(f"{self.where}: {what} failed: {e.message}") from e

    def _exists(self, name: str) -> bool:
        return bool(self._call("listing collections", self._client.has_collection, name))

    def _sync(self) -> None:
        """Notice a records collection that another handle or process created."""
        if self._has_records or not self._exists(self.collection):
            return
        fields = self._call("describe", self._client.describe_collection, self.collection)["fields"]
        found = next((int(f["params"]["dim"]) for f in fields if f["name"] == "vector"), None)
        if found is None:
            raise StoreError(f"{self.where}: not a vlsearch collection (no 'vector' field)")
        if self.dim is not None and self.dim != found:
            raise StoreError(f"{self.where}: store holds {found}-d vectors, not {self.dim}-d")
        self.dim, self._has_records = found, True
        self._lexical = any(f["name"] == "sparse" for f in fields)

    def _create(self, name: str, fields: list[tuple[str, Any, dict[str, Any]]], dim: int, metric: str,
                lexical: bool = False) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        for field, dtype, params in fields:
            schema.add_field(field, dtype, **params)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX" if metric == "COSINE" else "FLAT", metric_type=metric)
        if lexical:  # BM25 over the analysed ``lexical`` field, computed by Milvus at insert time
            schema.add_field("lexical", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                         input_field_names=["lexical"], output_field_names=["sparse"]))
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        # index and load apart: create_collection(index_params=...) waits on an AllocTimestamp
        # call that Milvus Lite does not implement (it logs a traceback)
        self._call(f"creating {name}", self._client.create_collection, name, schema=schema,
                   consistency_level="Strong")
        self._call(f"indexing {name}", self._client.create_index, name, index, sync=False)
        self._call(f"loading {name}", self._client.load_collection, name)

    def _ensure_side(self, name: str, fields: list[tuple[str, Any, dict[str, Any]]]) -> None:
        if not self._exists(name):
            self._create(name, fields, len(_PLACEHOLDER), "L2")

    # ---------------------------------------------------------------- records
    def add(self, records: Sequence[Record]) -> None:
        """Upsert ``records`` by id (later duplicates in the batch win):
        ``store.add([a, b]); store.add([a]); store.count()`` → 2."""
        if not records:
            return
        self._sync()
        batch, vectors, dim = checked_batch(records, self.dim)
        if not self._has_records:
            self._create(self.collection, _record_fields(), dim, "COSINE", lexical=True)
            self.dim, self._has_records, self._lexical = dim, True, True
        rows = [_to_row(rec, vec, self._lexical) for rec, vec in zip(batch, vectors)]
        for i in range(0, len(rows), _CHUNK):
            self._call("add", self._client.upsert, self.collection, rows[i:i + _CHUNK])

    def delete(self, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None,
               *, keep_hash: str | None = None) -> int:
        """Delete records whose id is in ``ids`` or whose source is in ``sources`` (keeping rows
        of those sources whose content_hash is ``keep_hash``); returns how many were removed."""
        self._sync()
        if not self._has_records:
            return 0
        keep = f' and (content_hash is null or content_hash != {_string(keep_hash)})' if keep_hash is not None else ""
        exprs = [*_in_exprs("id", ids or ()), *(e + keep for e in _in_exprs("source", sources or ()))]
        doomed: dict[str, None] = {}
        for expr in exprs:
            for row in self._iterate(self.collection, expr, ["id"]):
                doomed[row["id"]] = None
        found = list(doomed)
        for i in range(0, len(found), _CHUNK):
            self._call("delete", self._client.delete, self.collection, ids=found[i:i + _CHUNK])
        return len(found)

    def _start_search(self, k: int, where: str | None) -> str | None:
        """Check ``k``, render the filter for Milvus and sync; None when there is nothing to search yet."""
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InputError(f"k must be an int between 1 and {MAX_K}, got {k!r}")
        expr = parse(where, capped=False).milvus() if where else ""
        self._sync()
        return expr if self._has_records else None

    def search(self, vector: np.ndarray, k: int, where: str | None = None, exact: bool | None = None) -> list[Hit]:
        """The ``k`` nearest records by cosine similarity, best first, filtered by ``where``
        (``stores.filters``, rendered for Milvus). ``exact=True`` asks the index
        for a wide search (Milvus Lite searches exactly at any size)."""
        expr = self._start_search(k, where)
        if expr is None:
            return []
        q = check_vector(vector, "query")
        if q.shape[0] != self.dim:
            raise InputError(f"query: vector has dim {q.shape[0]}, the store holds {self.dim}-d vectors")
        params: dict[str, Any] = {"metric_type": "COSINE"}
        if exact:
            params["params"] = {"ef": max(k, 512)}
        try:
            result = self._client.search(self.collection, [q.tolist()], limit=k, filter=expr,
                                         output_fields=list(_SCALARS), search_params=params)
        except MilvusException as e:
            if where:  # a checked filter the engine still refused: no internals
                raise InputError(f"invalid filter {where[:80]!r}: the store cannot apply it") from None
            raise StoreError(f"{self.where}: search failed: {e.message}") from e
        return [Hit(_to_record(hit["entity"]), float(hit["distance"])) for hit in result[0]]

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids, with vectors, in the order asked, missing ones skipped."""
        self._sync()
        if not self._has_records or not ids:
            return []
        found: dict[str, Record] = {}
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), _CHUNK):
            rows = self._call("get", self._client.query, self.collection, ids=unique[i:i + _CHUNK],
                              output_fields=[*_SCALARS, "vector"])
            for row in rows:
                found[row["id"]] = _to_record(row, with_vector=True)
        return [found[i] for i in ids if i in found]

    def count(self, where: str | None = None) -> int:
        """Number of records (matching ``where``), e.g. ``store.count()`` → 1024."""
        self._sync()
        if not self._has_records:
            return 0
        expr = parse(where, capped=False).milvus() if where else ""
        rows = self._call("count", self._client.query, self.collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def lexical_search(self, query: str, k: int, where: str | None = None) -> list[Hit]:
        """BM25 over the source path and text (Milvus' BM25 function); collections created before
        lexical search have no such field and say so."""
        query = check_lexical_query(query)
        expr = self._start_search(k, where)
        if expr is None:
            return []
        if not self._lexical:
            raise StoreError(f"{self.where}: this Milvus collection was created before lexical search and has no "
                             "BM25 field; index into a new collection to search it by words (dense search works)")
        try:
            result = self._client.search(self.collection, [query], anns_field="sparse", limit=k, filter=expr,
                                         output_fields=list(_SCALARS), search_params={"metric_type": "BM25"})
        except MilvusException as e:
            raise InputError(f"lexical search for {query[:80]!r} failed in the store") from e
        # Milvus reports BM25 as the distance (Milvus Lite negates it to sort ascending): the score is its size
        return [Hit(_to_record(hit["entity"]), abs(float(hit["distance"]))) for hit in result[0]]

    def _iterate(self, name: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """All rows matching ``expr`` (past Milvus' 16,384-row query window)."""
        try:
            it = self._client.query_iterator(name, batch_size=1000, filter=expr, output_fields=fields)
            while batch := it.next():
                yield from batch
            it.close()
        except MilvusException as e:
            raise StoreError(f"{self.where}: query on {name} failed: {e.message}") from e

    # ------------------------------------------------------------------ files
    def files(self) -> dict[str, FileEntry]:
        """Ingestion state of every source, keyed by source: ``store.files()["a.pdf"].status``."""
        if not self._exists(self._files):
            return {}
        names = ["source", "content_hash", "items", "status", "error", "mtime", "size"]
        return {row["source"]: FileEntry(**{n: row[n] for n in names}) for row in self._iterate(self._files, "", names)}

    def mark_files(self, entries: Sequence[FileEntry]) -> None:
        """Upsert the state of each ``entry.source`` (the last entry of a source wins)."""
        latest = {e.source: e for e in entries}
        if not latest:
            return
        for entry in latest.values():
            if entry.status not in ("done", "failed"):
                raise InputError(f"file {entry.source!r}: status must be 'done' or 'failed', got {entry.status!r}")
        rows = [{"source": e.source, "content_hash": e.content_hash, "items": int(e.items), "status": e.status,
                 "error": _cut(e.error), "mtime": float(e.mtime), "size": int(e.size), "vector": _PLACEHOLDER}
                for e in latest.values()]
        self._ensure_side(self._files, _file_fields())
        for i in range(0, len(rows), _CHUNK):
            self._call("mark_files", self._client.upsert, self._files, rows[i:i + _CHUNK])

    def forget_files(self, sources: Sequence[str]) -> int:
        """Drop the ingestion state of ``sources``; returns how many were removed."""
        if not sources or not self._exists(self._files):
            return 0
        known = [row["source"] for e in _in_exprs("source", sources) for row in self._iterate(self._files, e, ["source"])]
        for i in range(0, len(known), _CHUNK):
            self._call("forget_files", self._client.delete, self._files, ids=known[i:i + _CHUNK])
        return len(known)

    # ------------------------------------------------------------------- meta
    def read_meta(self) -> dict[str, Any]:
        """Collection metadata written by :meth:`write_meta`, or {}."""
        if not self._exists(self._meta):
            return {}
        rows = self._call("read_meta", self._client.query, self._meta, ids=["meta"], output_fields=["value"])
        if not rows:
            return {}
        data = json.loads(rows[0]["value"])
        if not isinstance(data, dict):
            raise StoreError(f"{self.where}: metadata is not a JSON object")
        return data

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace the collection metadata (one upserted row)."""
        if not isinstance(meta, dict):
            raise InputError(f"meta must be a dict, got {type(meta).__name__}")
        self._sync()
        if "dim" in meta and self.dim is not None and meta["dim"] != self.dim:
            raise StoreError(f"{self.where}: meta says dim={meta['dim']} but the store holds {self.dim}-d vectors")
        try:
            text = json.dumps(meta, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"meta is not JSON-serialisable: {e}") from e
        if len(text.encode()) > VARCHAR_MAX:
            raise InputError(f"meta is too large for Milvus ({len(text.encode())} bytes > {VARCHAR_MAX})")
        self._ensure_side(self._meta, [("key", DataType.VARCHAR, {"is_primary": True, "max_length": 16}),
                                       ("value", DataType.VARCHAR, {"max_length": VARCHAR_MAX})])
        self._call("write_meta", self._client.upsert, self._meta,
                   [{"key": "meta", "value": text, "vector": _PLACEHOLDER}])

    # ------------------------------------------------------------------ index
    def optimize(self) -> None:
        """Flush (seal) new rows so the server indexes them; the AUTOINDEX is built by Milvus."""
        for name in (self.collection, self._files, self._meta):
            if self._exists(name):
                self._call("flush", self._client.flush, name)


def open_uri(uri: str, dim: int | None = None) -> MilvusStore:
    """The registry's entry point (``stores.open_store``): a Milvus Lite ``.db`` path or
    ``milvus[+http|+https]://[user:password@]host[:port][/collection]``."""
    if "://" not in uri or uri.lower().startswith("file://"):
        return MilvusStore(os.path.expanduser(uri.split("://", 1)[-1]), dim=dim)
    parts = urlsplit(uri)
    if not parts.hostname:
        raise InputError(f"{uri}: expected milvus://host:port[/collection]")
    token = (f"{unquote(parts.username or '')}:{unquote(parts.password or '')}" if parts.username
             else os.environ.get("VLSEARCH_MILVUS_TOKEN"))
    http = "https" if parts.scheme.lower() == "milvus+https" else "http"
    return MilvusStore(f"{http}://{parts.hostname}:{parts.port or 19530}",
                       collection=parts.path.strip("/") or "vlsearch", dim=dim, token=token)


# ---------------------------------------------------------------- schema and rows
def _record_fields() -> list[tuple[str, Any, dict[str, Any]]]:
    text = {"max_length": VARCHAR_MAX}
    return [("id", DataType.VARCHAR, {"is_primary": True, "max_length": 512}),
            ("source", DataType.VARCHAR, text), ("content_hash", DataType.VARCHAR, {**text, "nullable": True}),
            ("modality", DataType.VARCHAR, {"max_length": 32}),
            ("page", DataType.INT64, {"nullable": True}), ("start", DataType.DOUBLE, {"nullable": True}),
            ("end", DataType.DOUBLE, {"nullable": True}), ("chunk", DataType.INT64, {"nullable": True}),
            ("text", DataType.VARCHAR, text), ("thumbnail", DataType.VARCHAR, {**text, "nullable": True}),
            ("metadata", DataType.VARCHAR, text)]


def _file_fields() -> list[tuple[str, Any, dict[str, Any]]]:
    text = {"max_length": VARCHAR_MAX}
    return [("source", DataType.VARCHAR, {"is_primary": True, "max_length": VARCHAR_MAX}),
            ("content_hash", DataType.VARCHAR, text), ("items", DataType.INT64, {}),
            ("status", DataType.VARCHAR, {"max_length": 16}), ("error", DataType.VARCHAR, text),
            ("mtime", DataType.DOUBLE, {}), ("size", DataType.INT64, {})]


def _cut(text: str | None) -> str:
    """``text`` cut to Milvus' VARCHAR limit in UTF-8 bytes, on a character boundary."""
    raw = (text or "").encode("utf-8")
    return text or "" if len(raw) <= VARCHAR_MAX else raw[:VARCHAR_MAX].decode("utf-8", errors="ignore")


def _to_row(rec: Record, vec: np.ndarray, lexical: bool) -> dict[str, Any]:
    text, size = _cut(rec.text), len((rec.text or "").encode("utf-8"))
    metadata = rec.metadata or {}
    if size > VARCHAR_MAX:  # said, not silent: the stored text is a prefix of the indexed text
        metadata = {**metadata, "text_truncated_from_bytes": size}
    try:
        meta = json.dumps(metadata, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"record {rec.id!r}: metadata is not JSON-serialisable: {e}") from e
    thumb = base64.b64encode(rec.thumbnail).decode("ascii") if rec.thumbnail else None
    for name, value in (("metadata", meta), ("thumbnail", thumb or ""), ("source", rec.source), ("id", rec.id)):
        if len(value.encode("utf-8")) > (512 if name == "id" else VARCHAR_MAX):
            raise InputError(f"record {rec.id[:80]!r}: {name} is too long for Milvus")
    return {"id": rec.id, "source": rec.source, "content_hash": rec.content_hash, "modality": rec.modality,
            "page": None if rec.page is None else int(rec.page),
            "start": None if rec.start is None else float(rec.start),
            "end": None if rec.end is None else float(rec.end),
            "chunk": None if rec.chunk is None else int(rec.chunk),
            "text": text, "thumbnail": thumb, "metadata": meta, "vector": vec.tolist(),
            **({"lexical": _cut(f"{rec.source}\n{rec.text or ''}")} if lexical else {})}


def _to_record(row: dict[str, Any], with_vector: bool = False) -> Record:
    thumb = row.get("thumbnail")
    return Record(id=row["id"], source=row["source"], content_hash=row.get("content_hash"),
                  locator=Locator(row["modality"], row.get("page"), row.get("start"), row.get("end"), row.get("chunk")),
                  text=row.get("text") or "", thumbnail=base64.b64decode(thumb) if thumb else None,
                  metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
                  vector=np.asarray(row["vector"], dtype=np.float32) if with_vector else None)


def _string(value: str) -> str:
    """A Milvus string literal."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in_exprs(field: str, values: Sequence[str]) -> Iterator[str]:
    items = list(dict.fromkeys(values))
    for i in range(0, len(items), _CHUNK):
        yield f"{field} in [{', '.join(_string(v) for v in items[i:i + _CHUNK])}]"
