"""Vector stores: the :class:`VectorStore` protocol and its backends (LanceDB embedded default, Milvus).

Example:
    >>> from vlsearch.stores import open_store
    >>> store = open_store("/tmp/vlsearch-index", dim=2048)  # doctest: +SKIP
"""

from __future__ import annotations

from vlsearch.stores.base import FileEntry, Hit, Record, VectorStore, make_record_id, open_store

__all__ = ["FileEntry", "Hit", "Record", "VectorStore", "make_record_id", "open_store"]
