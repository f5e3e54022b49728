"""The model contract: what every embedder and reranker offers, and the code they all share.

``EmbedderLike`` and ``RerankerLike`` are what the pipeline (collections, ingestion, eval, the
server) depends on. ``EmbedderBase`` and ``RerankerBase`` implement everything that does not
depend on where a model runs: item parsing, the empty case, Matryoshka truncation,
quantisation and ranking. A backend (the local Qwen3-VL models, a model server over HTTP, the
server's micro-batcher) implements one method: ``_unit_vectors`` or ``_scores``.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputError, VlsearchError, in_context
from ..items import Item, ItemLike, as_items

Precision = Literal["float32", "int8", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "ubinary")


def truncate_dim(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka: keep the first ``dim`` components and re-normalise (float32)."""
    if dim is None or dim == vectors.shape[1]:
        return vectors
    if not 1 <= dim <= vectors.shape[1]:
        raise InputError(f"dim must be between 1 and {vectors.shape[1]}, not {dim}")
    cut = vectors[:, :dim]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def quantize(vectors: np.ndarray, precision: Precision) -> np.ndarray:
    """Quantise L2-normalised float32 rows.

    - ``float32``: unchanged.
    - ``int8``: each row scaled by ``127 / max|row|`` and rounded, so the cosine between int8
      rows approximates the float cosine (the per-row scale does not change cosine ranking).
    - ``ubinary``: sign bits (component > 0) packed big-endian into uint8, ``ceil(d / 8)``
      bytes per row; compare with Hamming distance.
    """
    if precision == "float32":
        return vectors
    if precision == "int8":
        scale = 127.0 / np.maximum(np.abs(vectors).max(axis=1, keepdims=True), 1e-12)
        return np.clip(np.rint(vectors * scale), -127, 127).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(vectors > 0, axis=1)
    raise InputError(f"precision must be float32, int8 or ubinary, not {precision!r}")


def ranking(scores: Sequence[float], top_k: int | None = None) -> list[tuple[int, float]]:
    """(index, score) pairs, best first (ties keep input order), at most ``top_k`` of them."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in order[: top_k if top_k is not None else len(order)]]


@runtime_checkable
class EmbedderLike(Protocol):
    """An embedding model: unit vectors for any mix of text, images and video."""

    model_id: str

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, items: Iterable[ItemLike] | ItemLike, *, instruction: str | None = None,
              dim: int | None = None, precision: Precision = "float32",
              progress: bool | None = None) -> np.ndarray: ...


@runtime_checkable
class RerankerLike(Protocol):
    """A reranking model: one relevance in [0, 1] per (query, document) pair."""

    model_id: str

    def score(self, query: ItemLike, documents: Iterable[ItemLike], instruction: str | None = None,
              **options: Any) -> list[float]: ...

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None,
             instruction: str | None = None, **options: Any) -> list[tuple[int, float]]: ...


class EmbedderBase:
    """``embed`` for every backend; a backend implements ``_unit_vectors`` (and ``dim``)."""

    model_id: str
    dim: int

    def embed(self, items: Iterable[ItemLike] | ItemLike, *, instruction: str | None = None,
              dim: int | None = None, precision: Precision = "float32",
              progress: bool | None = None) -> np.ndarray:
        """Embed items: (n, dim) float32 rows of unit length; int8 (n, dim) or uint8 (n, dim/8)
        when quantised.

        Args:
            items: dicts with the official keys (text, image, video, instruction, fps,
                max_frames), ``Item`` objects or strings.
            instruction: instruction for items that have none (else the model's default).
            dim: Matryoshka dimension: the first ``dim`` components, re-normalised.
            precision: "float32", "int8" or "ubinary" (see ``quantize``).
            progress: progress bar; by default only on a terminal for long calls.

        Raises:
            InputError, MediaError: naming the index of the first bad item; nothing is returned.
        """
        items = as_items(items)
        if precision not in PRECISIONS:
            raise InputError(f"precision must be float32, int8 or ubinary, not {precision!r}")
        if not items:
            return quantize(np.zeros((0, dim or self.dim), np.float32), precision)
        if dim is not None and not 1 <= dim <= self.dim:
            raise InputError(f"dim must be between 1 and {self.dim}, not {dim}")
        rows = self._unit_vectors(items, instruction, progress)
        return quantize(truncate_dim(np.asarray(rows, np.float32).reshape(len(items), -1), dim), precision)

    def _unit_vectors(self, items: list[Item], instruction: str | None, progress: bool | None) -> np.ndarray:
        """(n, D) float32 unit rows for the items, in order."""
        raise NotImplementedError


class RerankerBase:
    """``score`` and ``rank`` for every backend; a backend implements ``_scores``."""

    model_id: str

    def score(self, query: ItemLike, documents: Iterable[ItemLike], instruction: str | None = None,
              **options: Any) -> list[float]:
        """Relevance of each document to the query, in [0, 1], one score per document.

        Args:
            query: a dict, ``Item`` or string (text, images, video).
            documents: dicts, ``Item`` objects or strings.
            instruction: task instruction; the model's default when omitted.
            **options: backend options (local: ``fps``, ``max_frames``, ``progress``).

        Raises:
            InputError, MediaError: "query: ..." or "item i: ..." for document i.
        """
        try:
            query_item = Item.of(query)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        docs = as_items(documents)
        if not docs:
            return []
        return list(self._scores(query_item, docs, instruction, **options))

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None,
             instruction: str | None = None, **options: Any) -> list[tuple[int, float]]:
        """(index, score) pairs, best first, at most ``top_k`` of them.

        Example:
            >>> reranker.rank("capital of France", ["Rome", "Paris"], top_k=1)
            [(1, 0.97)]
        """
        return ranking(self.score(query, documents, instruction, **options), top_k)

    def _scores(self, query: Item, documents: list[Item], instruction: str | None, **options: Any) -> list[float]:
        """One score per document, in order (documents is not empty)."""
        raise NotImplementedError
