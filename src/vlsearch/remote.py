"""Remote models with the local interfaces: ``Embedder`` and ``Reranker`` over HTTP.

Example:
    >>> from vlsearch.remote import Embedder, Reranker
    >>> Embedder("http://127.0.0.1:8000").embed(["hello"]).shape
    (1, 2048)
"""

from __future__ import annotations

from .models.loading import is_remote
from .models.remote import RemoteEmbedder, RemoteReranker

Embedder = RemoteEmbedder
Reranker = RemoteReranker

__all__ = ["Embedder", "Reranker", "RemoteEmbedder", "RemoteReranker", "is_remote"]
