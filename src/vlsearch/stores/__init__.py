"""Vector stores: the :class:`VectorStore` protocol and a registry of backends, one module each.

``open_store(uri)`` picks the backend by the URI's scheme (a scheme-less path by its suffix) and
calls that module's ``open_uri(uri, dim)``. A new backend is one module plus one line in
``BACKENDS``.

Example:
    >>> from vlsearch.stores import open_store
    >>> store = open_store("/tmp/vlsearch-index", dim=2048)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os

from vlsearch.errors import InputError, MissingExtraError, StoreError
from vlsearch.stores.base import FileEntry, Hit, Record, VectorStore

__all__ = ["BACKENDS", "FileEntry", "Hit", "Record", "VectorStore", "open_store", "backend_of"]

#: scheme (or, for a plain path, its suffix) -> (backend module, pip extra that brings it)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "file": ("vlsearch.stores.lancedb", None),  # a local directory: LanceDB, the embedded default
    ".db": ("vlsearch.stores.milvus", "milvus"),  # a local .db file: Milvus Lite
    "milvus": ("vlsearch.stores.milvus", "milvus"),
    "milvus+http": ("vlsearch.stores.milvus", "milvus"),
    "milvus+https": ("vlsearch.stores.milvus", "milvus"),
}


def backend_of(uri: str) -> str:
    """The ``BACKENDS`` key for ``uri``: its scheme, or for a plain path ``.db`` or ``file``."""
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme != "file":
            return scheme
        uri = uri[len("file://"):]
    return ".db" if os.path.splitext(uri)[1].lower() == ".db" else "file"


def open_store(uri: str, dim: int | None = None) -> VectorStore:
    """Open (or create lazily) the store at ``uri``.

    - a local directory (or ``file://`` URI): LanceDB, the embedded default;
    - a path ending in ``.db``: a Milvus Lite file;
    - ``milvus://host:19530[/collection]`` (``milvus+https://`` for TLS): a Milvus server, the
      collection defaulting to ``vlsearch``; ``user:password@`` in the URI or
      ``$VLSEARCH_MILVUS_TOKEN`` authenticates.

    Example:
        >>> store = open_store("milvus://localhost:19530/papers")  # doctest: +SKIP
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InputError("a store URI must be a non-empty string")
    key = backend_of(uri)
    if key not in BACKENDS:
        raise StoreError(f"{uri}: unsupported store URI scheme {key!r}; use a local directory, "
                         "a Milvus Lite .db file or milvus://host:port[/collection]")
    module_name, extra = BACKENDS[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or isinstance(exc, MissingExtraError):
            raise
        raise MissingExtraError(exc.name or module_name, extra) from exc
    return module.open_uri(uri, dim)
