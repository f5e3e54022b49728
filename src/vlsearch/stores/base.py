"""The vector store interface: records, hits, per-file ingestion state, and the protocol.

Every backend (LanceDB embedded, Milvus) implements :class:`VectorStore`; the
pipeline code in ``collection.py`` only ever talks to this protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from vlsearch.errors import InputError, StoreError

Modality = Literal["text", "image", "pdf_page", "video"]
MODALITIES: tuple[str, ...] = ("text", "image", "pdf_page", "video")
FileStatus = Literal["done", "failed"]


def make_record_id(
    source: str,
    modality: str,
    page: int | None = None,
    start: float | None = None,
    end: float | None = None,
    chunk: int | None = None,
) -> str:
    """A stable id for the item at a locator inside a source (same inputs → same id).

    The content hash is deliberately not part of the id: re-ingesting a changed file
    replaces its records instead of adding new ones next to the old.

    Example:
        >>> make_record_id("docs/a.pdf", "pdf_page", page=3) == make_record_id("docs/a.pdf", "pdf_page", page=3)
        True
    """
    parts = [source, modality, _fmt(page), _fmt(start), _fmt(end), _fmt(chunk)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return repr(round(float(value), 3)) if isinstance(value, float) else str(int(value))


@dataclass
class Record:
    """One indexed item: a text chunk, an image, a PDF page or a video span, with its vector.

    Attributes:
        id: stable, deterministic key (see :func:`make_record_id`); adding it again replaces it.
        source: the file path or URL the item came from.
        content_hash: hash of the source's bytes when it was ingested.
        modality: "text", "image", "pdf_page" or "video".
        page: 1-based PDF page, else None.
        start, end: video span in seconds, else None.
        chunk: index of a text chunk within the source, else None.
        text: text content or the page's text layer ("" when none).
        thumbnail: small JPEG bytes for display, or None.
        metadata: any JSON-serialisable dict.
        vector: float32 array of shape (dim,); None in search hits.

    Example:
        >>> r = Record(id="x1", source="a.png", content_hash="ab12", modality="image",
        ...            vector=np.ones(4, dtype=np.float32))
        >>> r.page is None
        True
    """

    id: str
    source: str
    content_hash: str
    modality: str
    page: int | None = None
    start: float | None = None
    end: float | None = None
    chunk: int | None = None
    text: str = ""
    thumbnail: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None  # (dim,) float32


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
        if rec.modality not in MODALITIES:
            raise InputError(f"record {rec.id!r}: modality must be one of {MODALITIES}, got {rec.modality!r}")
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

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids (with vectors), in the order asked; missing ids are skipped."""
        ...

    def count(self) -> int:
        """Number of records."""
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


def open_store(uri: str, dim: int | None = None) -> VectorStore:
    """Open (or create lazily) the store at ``uri``.

    - a local directory (or ``file://`` URI): LanceDB, the embedded default;
    - a path ending in ``.db``: a Milvus Lite file;
    - ``milvus://host:19530[/collection]`` (``milvus+https://`` for TLS): a Milvus server, the
      collection defaulting to ``vlsearch``; ``user:password@`` in the URI or
      ``$VLSEARCH_MILVUS_TOKEN`` authenticates.

    The Milvus forms need ``pip install 'vlsearch[milvus]'``.

    Example:
        >>> store = open_store("/tmp/vlsearch-index", dim=2048)  # doctest: +SKIP
        >>> store = open_store("milvus://localhost:19530/papers")  # doctest: +SKIP
    """
    import os
    from urllib.parse import unquote, urlsplit

    from vlsearch.errors import MissingExtraError

    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("milvus", "milvus+http", "milvus+https") or (scheme in ("", "file") and uri.endswith(".db")):
        try:
            from vlsearch.stores.milvus import MilvusStore
        except ImportError as e:
            raise MissingExtraError("pymilvus", "milvus") from e
        if not scheme or scheme == "file":
            path = uri[len("file://"):] if scheme == "file" else uri
            return MilvusStore(os.path.expanduser(path), dim=dim)
        parts = urlsplit(uri)
        if not parts.hostname:
            raise InputError(f"{uri}: expected milvus://host:port[/collection]")
        token = (f"{unquote(parts.username or '')}:{unquote(parts.password or '')}" if parts.username
                 else os.environ.get("VLSEARCH_MILVUS_TOKEN"))
        http = "https" if scheme == "milvus+https" else "http"
        server = f"{http}://{parts.hostname}:{parts.port or 19530}"
        return MilvusStore(server, collection=parts.path.strip("/") or "vlsearch", dim=dim, token=token)
    if scheme not in ("", "file"):
        raise StoreError(f"{uri}: unsupported store URI scheme {scheme!r}; use a local directory, "
                         "a Milvus Lite .db file or milvus://host:port[/collection]")
    from vlsearch.stores.lancedb import LanceStore

    return LanceStore(uri[len("file://"):] if scheme == "file" else uri, dim=dim)
