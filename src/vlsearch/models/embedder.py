"""Embedder: Qwen3-VL-Embedding vectors for any mix of text, images and video."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..items import Item
from .base import Qwen3VLBase
from .contract import EmbedderBase, Precision, check_instruction, loader_options, quantize, truncate_dim
from .qwen3vl import Encoded, encode_conversation, load_item, normalise_instruction

DEFAULT_INSTRUCTION = "Represent the user's input."



class Embedder(Qwen3VLBase, EmbedderBase):
    """Qwen3-VL-Embedding: one L2-normalised vector per item, equal to the official model's.

    Args:
        model: hub id such as "Qwen/Qwen3-VL-Embedding-2B", or a local checkpoint directory.
        instruction: default instruction for items without one.
        prompts, default_prompt_name, similarity_fn_name, truncate_dim: ``SentenceTransformer``'s
            (for ``encode`` and ``similarity``); its other keywords are refused unless left at their
            defaults.
        **options: see ``Qwen3VLBase`` (device, dtype, budget, limits, batch_tokens ...).

    Example:
        >>> emb = Embedder("Qwen/Qwen3-VL-Embedding-2B")
        >>> emb.embed([{"text": "a dog"}, {"image": "dog.jpg"}]).shape
        (2, 2048)
    """

    def __init__(self, model: str, *, instruction: str = DEFAULT_INSTRUCTION,
                 prompts: dict[str, str | None] | None = None, default_prompt_name: str | None = None,
                 similarity_fn_name: str | None = None, truncate_dim: int | None = None, **options: Any) -> None:
        self.instruction = check_instruction(instruction)
        self.sentence_transformers_options(prompts, default_prompt_name, similarity_fn_name, truncate_dim)
        super().__init__(model, **loader_options("Embedder", options))

    @property
    def dim(self) -> int:
        """Full embedding dimension (2048 for the 2B model, 4096 for the 8B)."""
        return self.hidden_size

    def encode_item(self, item: Item, instruction: str | None = None) -> Encoded:
        """Tokenise one item with its pixels (the embedder's prompt). ``encode`` is sentence-transformers'
        call (vectors), in ``EmbedderBase``."""
        system = normalise_instruction(item.instruction or instruction) or self.instruction
        parts = load_item(item, self.budget, self.limits)
        return encode_conversation(self.processor, system, parts, self.budget.max_length)

    def _unit_vectors(self, items: list[Item], instruction: str | None, progress: bool | None) -> np.ndarray:
        """Length-sorted batches, preprocessing ahead of the model on the pool."""
        return np.stack(self._run(len(items), lambda i: self.encode_item(items[i], instruction), _unit_rows,
                                  progress, "item"))

    def patch_scores(self, item: Item, query: Any) -> np.ndarray:
        """How much each part of an image resembles ``query`` (a unit vector, or a Matryoshka prefix of
        one): the cosine of the query with the last layer's state at each image token, one forward of
        the item. A (rows, cols) grid: one cell per merged patch (2x2 patches of 16 px of the image as
        the model resized it), tiling the image. An approximation: the model was trained to pool the
        last token only.

        Raises:
            InputError: the item is not one image.
        """
        import torch

        encoded = self.encode_item(item)
        grids = encoded.image_grid_thw
        if grids is None or len(grids) != 1 or encoded.video_grid_thw is not None:
            raise InputError("patch scores need an item with one image")
        states, _ = self._last_layer([encoded])
        image = (encoded.mm_token_type_ids == 1).to(states.device)
        vector = torch.as_tensor(np.asarray(query, np.float32), device=states.device)
        cells = torch.nn.functional.normalize(states[0][image].float()[:, : vector.shape[0]], dim=-1) @ vector
        merge = int(self.processor.image_processor.merge_size)
        _, height, width = (int(v) for v in grids[0])
        return cells.cpu().numpy().reshape(height // merge, width // merge)

    def embed_encoded(self, encoded: Sequence[Encoded], *, dim: int | None = None,
                      precision: Precision = "float32") -> np.ndarray:
        """Vectors of inputs already encoded with ``encode_item`` (lets a server validate and decode
        each request on its own, then batch many requests together)."""
        if not encoded:
            return quantize(np.zeros((0, dim or self.dim), np.float32), precision)
        rows = self.run_encoded(encoded, _unit_rows)
        return quantize(truncate_dim(np.stack(rows).astype(np.float32), dim), precision)


def _unit_rows(hidden: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(hidden, dim=-1).cpu().numpy()
