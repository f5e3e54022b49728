"""vlsearch: multimodal retrieval with Qwen3-VL-Embedding and Qwen3-VL-Reranker."""

from __future__ import annotations

from .errors import (CollectionNotFound, FetchError, InputError, MediaError, MissingExtraError, ModelError, Overloaded,
                     StoreError, VlsearchError)
from .items import Item
from .media.fetch import FetchPolicy
from .media.images import MediaLimits
from .models.embedder import Embedder
from .models.qwen3vl import VisionBudget
from .models.reranker import Reranker
from .version import __version__

__all__ = [
    "Embedder", "Reranker", "Collection", "Result", "Item", "VisionBudget", "MediaLimits", "FetchPolicy",
    "VlsearchError", "InputError", "MediaError", "FetchError", "ModelError", "StoreError", "CollectionNotFound",
    "Overloaded", "MissingExtraError", "__version__",
]


def __getattr__(name: str):
    """``Collection`` and ``Result`` load on first use (they pull in the vector store)."""
    if name in ("Collection", "Result"):
        from . import collection

        return getattr(collection, name)
    raise AttributeError(f"module 'vlsearch' has no attribute {name!r}")
