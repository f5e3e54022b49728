"""vlsearch: multimodal retrieval with Qwen3-VL-Embedding and Qwen3-VL-Reranker."""

from __future__ import annotations

import os

# MKL's conditional numerical reproducibility, strict: a GEMM rounds the same whatever the thread count. Without
# it MKL's AVX2 kernels on Intel CPUs split even 64-row products by thread (the invariance tests saw 1e-6
# differences between one and two threads). MKL reads it at its first call, so it is set before any model loads;
# a value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

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
