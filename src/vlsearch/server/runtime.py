"""The loaded models, their request pool and their micro-batchers, shared by every endpoint.

``Models.embed``/``Models.rerank`` serve HTTP requests (async); ``BatchedEmbedder`` and
``BatchedReranker`` give ``Collection`` the library interface over the same batchers, so
search and ingestion share the one model worker with the API endpoints.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import VlsearchError, each_item, in_context
from ..items import Item
from ..models.contract import EmbedderBase, RerankerBase
from ..models.embedder import Embedder
from ..models.loading import embedder_name, reranker_name
from ..models.qwen3vl import Encoded
from ..models.reranker import Reranker
from .batcher import BatchObserver, MicroBatcher
from .config import ServerConfig, display_name


class Models:
    """Loads the embedder (and the reranker) once and serves them through micro-batchers.

    Args:
        config: server settings (models, device, media caps, batching).
        observer: metrics sink for the batchers.
        embedder, reranker: already loaded models to use instead (their own media limits apply).
    """

    def __init__(self, config: ServerConfig, observer: BatchObserver | None = None, *,
                 embedder: Embedder | None = None, reranker: Reranker | None = None) -> None:
        options: dict[str, Any] = {"device": config.device, "dtype": config.dtype, "limits": config.media_limits()}
        self.embedder = embedder or Embedder(embedder_name(config.model), adapter=config.adapter, **options)
        self.reranker: Reranker | None = None
        if not config.no_reranker:
            budget = replace(Reranker.default_budget, max_pixels=config.rerank_pixels or
                             Reranker.default_budget.max_pixels)
            self.reranker = reranker or Reranker(reranker_name(config.reranker), adapter=config.reranker_adapter,
                                                 budget=budget, **options)
        self.embedder_name = config.served_model_name or display_name(self.embedder.model_id)
        self.reranker_name = (config.served_reranker_name or display_name(self.reranker.model_id)
                              if self.reranker else None)
        workers = config.encode_workers or max(2, min(8, os.cpu_count() or 2))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlsearch-request")
        # ingestion decodes on its own threads, so a big job does not queue ahead of online requests
        self.background_pool = ThreadPoolExecutor(max_workers=max(1, workers // 2),
                                                  thread_name_prefix="vlsearch-ingest")
        wait = config.batch_wait_ms / 1000.0
        self.embed_batcher = MicroBatcher("embed", self._embed_rows, max_items=config.max_batch_items, wait_s=wait,
                                          max_queue_items=config.max_queue_items, observer=observer)
        self.rerank_batcher = MicroBatcher("rerank", self._score_rows, max_items=config.max_batch_items,
                                           wait_s=wait, max_queue_items=config.max_queue_items, observer=observer)

    @cached_property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    @property
    def adapter(self) -> str | None:
        """The embedder's adapter directory, if it has one (recorded by the collections it builds)."""
        info = getattr(self.embedder, "adapter", None)
        return str(info.path) if info is not None else None

    # ------------------------------------------------------------ model worker side

    def _embed_rows(self, encoded: list[Encoded]) -> np.ndarray:
        return self.embedder.embed_encoded(encoded)  # (n, D) float32 unit rows

    def _score_rows(self, encoded: list[Encoded]) -> list[float]:
        assert self.reranker is not None
        return self.reranker.score_encoded(encoded)

    # ------------------------------------------------------------ async (HTTP) side

    async def _encode_all(self, thunks: Sequence[Callable[[], Encoded]], label: Callable[[int], str]) -> list[Encoded]:
        """Run the encoders on the pool; the first failure (in input order) is raised, named."""
        futures = [asyncio.wrap_future(self.pool.submit(thunk)) for thunk in thunks]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, VlsearchError):
                raise in_context(label(i), result) from None
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, Encoded)]

    async def embed(self, items: Sequence[Item], instruction: str | None = None) -> tuple[np.ndarray, int]:
        """(n, D) float32 unit rows for the items, and the number of tokens they took."""
        with self.embed_batcher.reserve() as slot:
            encoded = await self._encode_all([_bind(self.embedder.encode_item, item, instruction) for item in items],
                                             lambda i: f"input {i}")
            future = slot.submit(encoded)
        rows = await asyncio.wrap_future(future)
        return np.asarray(rows, dtype=np.float32).reshape(len(items), -1), sum(len(e) for e in encoded)

    async def rerank(self, query: Item, documents: Sequence[Item],
                     instruction: str | None = None) -> tuple[list[float], int]:
        """One score per document, and the number of tokens of the pairs."""
        assert self.reranker is not None
        reranker = self.reranker
        with self.rerank_batcher.reserve() as slot:
            loop = asyncio.get_running_loop()
            thunks = await loop.run_in_executor(
                self.pool, lambda: reranker.encode_pairs(query, list(documents), instruction, eager=False))
            encoded = await self._encode_all(thunks, lambda i: f"document {i}")
            future = slot.submit(encoded)
        scores = await asyncio.wrap_future(future)
        return list(scores), sum(len(e) for e in encoded)

    def close(self) -> None:
        self.embed_batcher.close()
        self.rerank_batcher.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.background_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ sync side (Collection)

    def encode_sync(self, thunks: Sequence[Callable[[], Encoded]], background: bool = False) -> list[Encoded]:
        """Encode on a pool from a worker thread; errors carry the item index (``at_item``)."""
        pool = self.background_pool if background else self.pool
        futures: list[Future] = [pool.submit(thunk) for thunk in thunks]
        try:
            return each_item(futures, Future.result)
        finally:
            for future in futures:
                future.cancel()


def _bind(function: Callable[..., Encoded], *args: Any) -> Callable[[], Encoded]:
    return lambda: function(*args)


class BatchedEmbedder(EmbedderBase):
    """The embedder contract over the server's batcher, for the collections the server opens.

    ``background=True`` decodes on the ingestion threads instead of the request threads.
    """

    def __init__(self, models: Models, background: bool = False) -> None:
        self._models, self._background = models, background
        self.model_id = models.embedder.model_id
        self.dim = models.embedder.dim
        self.device = models.embedder.device

    @property
    def fingerprint(self) -> str:
        return self._models.fingerprint

    def _unit_vectors(self, items: list[Item], instruction: str | None, progress: bool | None) -> np.ndarray:
        encoder = self._models.embedder.encode_item
        with self._models.embed_batcher.reserve() as slot:
            encoded = self._models.encode_sync([_bind(encoder, item, instruction) for item in items],
                                               self._background)
            future = slot.submit(encoded)
        return np.asarray(future.result(), dtype=np.float32)


class BatchedReranker(RerankerBase):
    """The reranker contract over the server's batcher."""

    def __init__(self, models: Models) -> None:
        assert models.reranker is not None
        self._models = models
        self.model_id = models.reranker.model_id
        self.device = models.reranker.device

    def _scores(self, query: Item, documents: list[Item], instruction: str | None, **options: Any) -> list[float]:
        reranker = self._models.reranker
        assert reranker is not None
        with self._models.rerank_batcher.reserve() as slot:
            thunks = reranker.encode_pairs(query, documents, instruction, eager=False,
                                           fps=options.get("fps"), max_frames=options.get("max_frames"))
            encoded = self._models.encode_sync(thunks)
            future = slot.submit(encoded)
        return list(future.result())
