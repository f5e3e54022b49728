"""The vlsearch HTTP server: OpenAI-compatible embeddings, Cohere/Jina-compatible rerank, collections.

``ServerConfig`` needs no extra; ``create_app`` needs ``pip install 'vlsearch[server]'``
(a ``MissingExtraError`` with that line otherwise).

Example:
    >>> from vlsearch.server import ServerConfig, create_app
    >>> app = create_app(ServerConfig(model="Qwen/Qwen3-VL-Embedding-2B"))
"""

from __future__ import annotations

from typing import Any

from .config import ServerConfig, is_loopback

__all__ = ["ServerConfig", "create_app", "is_loopback"]


def __getattr__(name: str) -> Any:
    """``create_app`` imports FastAPI on first use."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'vlsearch.server' has no attribute {name!r}")
