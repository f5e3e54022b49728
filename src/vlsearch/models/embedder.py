"""Embedder: Qwen3-VL-Embedding vectors for any mix of text, images and video."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from ..errors import InputError, each_item
from ..items import Item, ItemLike
from .base import Qwen3VLBase
from .qwen3vl import Encoded, encode_conversation, load_item, normalise_instruction

DEFAULT_INSTRUCTION = "Represent the user's input."
Precision = Literal["float32", "int8", "ubinary"]


def as_items(items: Iterable[ItemLike] | ItemLike) -> list[Item]:
    """A list of ``Item`` from a list of dicts/Items/strings (or one of them); errors name the index."""
    if isinstance(items, (str, Mapping, Item)):
        items = [items]
    return each_item(items, Item.of)


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


class Embedder(Qwen3VLBase):
    """Qwen3-VL-Embedding: one L2-normalised vector per item, equal to the official model's.

    Args:
        model: hub id such as "Qwen/Qwen3-VL-Embedding-2B", or a local checkpoint directory.
        instruction: default instruction for items without one.
        **options: see ``Qwen3VLBase`` (device, dtype, budget, limits, batch_tokens ...).

    Example:
        >>> emb = Embedder("Qwen/Qwen3-VL-Embedding-2B")
        >>> emb.embed([{"text": "a dog"}, {"image": "dog.jpg"}]).shape
        (2, 2048)
    """

    def __init__(self, model: str, *, instruction: str = DEFAULT_INSTRUCTION, **options: Any) -> None:
        super().__init__(model, **options)
        self.instruction = instruction

    @property
    def dim(self) -> int:
        """Full embedding dimension (2048 for the 2B model, 4096 for the 8B)."""
        return self.hidden_size

    def encode(self, item: Item, instruction: str | None = None) -> Encoded:
        """Tokenise one item with its pixels (the embedder's prompt)."""
        system = normalise_instruction(item.instruction or instruction) or self.instruction
        parts = load_item(item, self.budget, self.limits)
        return encode_conversation(self.processor, system, parts, self.budget.max_length)

    def embed(
        self,
        items: Iterable[ItemLike] | ItemLike,
        *,
        instruction: str | None = None,
        dim: int | None = None,
        precision: Precision = "float32",
        progress: bool | None = None,
    ) -> np.ndarray:
        """Embed items, in length-sorted batches, preprocessing ahead of the model.

        Args:
            items: dicts with the official keys (text, image, video, instruction, fps,
                max_frames), ``Item`` objects or strings.
            instruction: instruction for items that have none (else the embedder's default).
            dim: Matryoshka dimension: the first ``dim`` components, re-normalised.
            precision: "float32", "int8" or "ubinary" (see ``quantize``).
            progress: progress bar; by default only on a terminal for long calls.

        Returns:
            (n, dim) float32 rows of unit length; int8 (n, dim) or uint8 (n, dim/8) when quantised.

        Raises:
            InputError, MediaError: naming the index of the first bad item; nothing is returned.
        """
        items = as_items(items)
        if dim is not None and not 1 <= dim <= self.dim:
            raise InputError(f"dim must be between 1 and {self.dim}, not {dim}")
        quantize(np.zeros((0, 8), np.float32), precision)  # validate before any work
        if not items:
            return quantize(np.zeros((0, dim or self.dim), np.float32), precision)

        rows = self._run(len(items), lambda i: self.encode(items[i], instruction), _unit_rows, progress, "item")
        return quantize(truncate_dim(np.stack(rows).astype(np.float32), dim), precision)

    def embed_encoded(self, encoded: Sequence[Encoded], *, dim: int | None = None,
                      precision: Precision = "float32") -> np.ndarray:
        """Vectors of inputs already encoded with ``encode`` (lets a server validate and decode
        each request on its own, then batch many requests together)."""
        if not encoded:
            return quantize(np.zeros((0, dim or self.dim), np.float32), precision)
        rows = self.run_encoded(encoded, _unit_rows)
        return quantize(truncate_dim(np.stack(rows).astype(np.float32), dim), precision)


def _unit_rows(hidden: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(hidden, dim=-1).cpu().numpy()
