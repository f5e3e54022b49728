"""The vector store interface: records, hits, per-file ingestion state, and the protocol.

Every backend (one module each: ``lancedb``, ``milvus``) implements :class:`VectorStore`; the
pipeline only ever talks to this protocol. This module imports no backend; ``stores/__init__``
opens one by URI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from vlsearch.errors import InputError, StoreError
from vlsearch.items import check_text
from vlsearch.locator import Located, Locator

FileStatus = Literal["done", "failed"]


@dataclass
class Record(Located):
    """One indexed item: a text chunk, an image, a PDF page or a video span, with its vector.

    Attributes:
        id: stable, deterministic key (``locator.record_id(source)``); adding it again replaces it.
        source: the file path or URL the item came from.
        content_hash: hash of the source's bytes when it was ingested.
        locator: modality and position in the source (``modality``, ``page``, ``start``, ``end``
            and ``chunk`` read through to it).
        text: text content or the page's text layer ("" when none).
        thumbnail: small JPEG bytes for display, or None.
        metadata: any JSON-serialisable dict.
        vector: float32 array of shape (dim,); None in search hits.

    Example:
        >>> r = Record.of("a.png", "ab12", Locator("image"), vector=np.ones(4, dtype=np.float32))
        >>> r.page is None and r.id == Locator("image").record_id("a.png")
        True
    """

    id: str
    source: str
    content_hash: str | None
    locator: Locator
    text: str = ""
    thumbnail: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None  # (dim,) float32

    @classmethod
    def of(cls, source: str, content_hash: str | None, locator: Locator, **fields: Any) -> Record:
        """A record whose id derives from its source and locator."""
        return cls(locator.record_id(source), source, content_hash, locator, **fields)


@dataclass
class Hit:
    """A search result: the record (its vector may be None) and its cosine similarity.

    Example:
        >>> h = Hit(Record(id="x", source="s", content_hash="h", modality="text"), 0.83)
        >>> h.score > 0.5
        True
    """

    record: Record
    score: float  # cosine similarity, higher is better


@dataclass
class FileEntry:
    """Per-source ingestion state: what was indexed from a file, and whether it worked.

    Example:
        >>> FileEntry(source="a.pdf", content_hash="ab", items=12, status="done").error
        ''
    """

    source: str
    content_hash: str
    items: int
    status: FileStatus
    error: str = ""
    mtime: float = 0.0
    size: int = 0


MAX_LEXICAL_QUERY = 2000  # characters of a lexical query


def check_lexical_query(query: Any) -> str:
    """A lexical query as the stores take it: words, not empty, not huge; InputError otherwise."""
    if not isinstance(query, str) or not any(c.isalnum() for c in query):
        raise InputError("a lexical search needs a query with at least one word")
    if len(query) > MAX_LEXICAL_QUERY:
        raise InputError(f"the query has {len(query)} characters, over the limit of {MAX_LEXICAL_QUERY} "
                         "for lexical search")
    return check_text(query, "the query")


def check_vector(vector: Any, name: str) -> np.ndarray:
    """``vector`` as a finite, non-zero float32 array of shape (dim,); InputError naming ``name`` else."""
    try:
        vec = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: vector is not numeric: {e}") from e
    if vec.ndim != 1 or vec.shape[0] == 0:
        raise InputError(f"{name}: vector must have shape (dim,), got {vec.shape}")
    if not np.isfinite(vec).all():
        raise InputError(f"{name}: vector has non-finite values (NaN or inf)")
    if not np.any(vec):
        raise InputError(f"{name}: vector is all zeros (cosine is undefined)")
    return vec


def checked_batch(records: Sequence[Record], dim: int | None) -> tuple[list[Record], list[np.ndarray], int]:
    """Records to write, de-duplicated by id (the last wins), with checked vectors of one length.

    ``dim`` is the store's (None for a new store: the first vector's). Every backend's ``add``
    starts here, so all refuse the same bad records with the same messages.
    """
    batch = list({rec.id: rec for rec in records}.values())
    vectors = []
    for rec in batch:
        if not isinstance(rec.id, str) or not rec.id:
            raise InputError(f"record id must be a non-empty str, got {rec.id!r}")
        if not isinstance(rec.locator, Locator):
            raise InputError(f"record {rec.id!r}: locator must be a Locator, not {type(rec.locator).__name__}")
        if rec.vector is None:
            raise InputError(f"record {rec.id!r}: vector is None")
        vec = check_vector(rec.vector, f"record {rec.id!r}")
        dim = dim or vec.shape[0]
        if vec.shape[0] != dim:
            raise StoreError(f"record {rec.id!r}: vector has dim {vec.shape[0]}, the store holds {dim}-d vectors")
        vectors.append(vec)
    return batch, vectors, int(dim or 0)


@runtime_checkable
class VectorStore(Protocol):
    """What every vector store backend offers.

    Example:
        >>> store = open_store("/tmp/idx")  # doctest: +SKIP
        >>> store.add(records)  # doctest: +SKIP
        >>> hits = store.search(query_vec, k=10, where="modality = 'pdf_page' AND page <= 3")  # doctest: +SKIP
    """

    dim: int | None  # None until the first vectors arrive

    def add(self, records: Sequence[Record]) -> None:
        """Upsert by id: a record whose id exists replaces it, never duplicates it."""
        ...

    def delete(self, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None,
               *, keep_hash: str | None = None) -> int:
        """Remove records by id and/or by source (keeping a source's rows whose content_hash
        is ``keep_hash``); returns how many rows were removed."""
        ...

    def search(
        self, vector: np.ndarray, k: int, where: str | None = None, exact: bool | None = None
    ) -> list[Hit]:
        """The k records nearest to ``vector`` by cosine, best first, filtered by ``where``."""
        ...

    def lexical_search(self, query: str, k: int, where: str | None = None) -> list[Hit]:
        """The k records that best match ``query``'s words by BM25 over their text and source
        path, best first (``Hit.score``: the store's own BM25 score), filtered by ``where``."""
        ...

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids (with vectors), in the order asked; missing ids are skipped."""
        ...

    def count(self, where: str | None = None) -> int:
        """Number of records (matching ``where``)."""
        ...

    def files(self) -> dict[str, FileEntry]:
        """Ingestion state of every source, keyed by source."""
        ...

    def mark_files(self, entries: Sequence[FileEntry]) -> None:
        """Record (upsert by source) the ingestion state of these sources, in one commit."""
        ...

    def forget_files(self, sources: Sequence[str]) -> int:
        """Drop the ingestion state of these sources; returns how many were removed."""
        ...

    def read_meta(self) -> dict[str, Any]:
        """Collection metadata (model id, dim, instruction, ...); {} when none was written."""
        ...

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace the collection metadata, durably."""
        ...

    def optimize(self) -> None:
        """Build or refresh the ANN index and compact storage when useful."""
        ...
