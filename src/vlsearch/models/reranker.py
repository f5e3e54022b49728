"""Reranker: Qwen3-VL-Reranker relevance scores for (query, document) pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ModelError, VlsearchError, each_item, in_context
from ..items import Item, ItemLike, as_items, check_text
from .base import Qwen3VLBase
from .contract import RerankerBase, check_instruction, loader_options
from .qwen3vl import Encoded, VisionBudget, VisionParts, encode_conversation, load_item

DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
SYSTEM_PROMPT = ('Judge whether the Document meets the requirements based on the Query and the Instruct '
                 'provided. Note that the answer can only be "yes" or "no".')


def sigmoid(x: float) -> float:
    """The logistic function, computed in double precision without overflow."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def lm_head_rows(path: Path, model: Any, token_ids: list[int]) -> Any:
    """Rows of the LM head for ``token_ids`` without loading the whole head.

    Tied checkpoints share the input embedding; otherwise the rows are sliced straight from the
    safetensors shard that holds ``lm_head.weight``.
    """
    import torch
    from safetensors import safe_open

    config = model.config
    tied = getattr(config, "tie_word_embeddings", False) or getattr(config.text_config, "tie_word_embeddings", False)
    if tied:
        return model.get_input_embeddings().weight[token_ids].detach().float().cpu()
    index = path / "model.safetensors.index.json"
    if index.exists():
        names = [json.loads(index.read_text())["weight_map"].get("lm_head.weight")]
    else:
        names = sorted(p.name for p in path.glob("*.safetensors"))
    for name in filter(None, names):
        with safe_open(path / name, framework="pt") as f:
            if "lm_head.weight" in f.keys():
                head = f.get_slice("lm_head.weight")
                return torch.stack([head[t:t + 1][0] for t in token_ids]).float()
    raise ModelError(f"{path}: no lm_head.weight in the checkpoint (is this a reranker?)")


class Reranker(Qwen3VLBase, RerankerBase):
    """Qwen3-VL-Reranker: sigmoid(logit(yes) - logit(no)) for each (query, document) pair.

    Args:
        model: hub id such as "Qwen/Qwen3-VL-Reranker-2B", or a local checkpoint directory.
        instruction: default task instruction.
        prompts, default_prompt_name: ``CrossEncoder``'s named instructions (``predict``, ``rank``).
        max_length: the most tokens of one pair (``max_seq_length``); ``CrossEncoder``'s other
            keywords are refused unless left at their defaults.
        **options: see ``Qwen3VLBase`` (device, dtype, budget, limits, batch_tokens ...).

    Example:
        >>> rr = Reranker("Qwen/Qwen3-VL-Reranker-2B")
        >>> rr.score({"text": "capital of France"}, [{"text": "Paris"}, {"text": "Rome"}])
        [0.97, 0.02]
    """

    default_budget = VisionBudget(max_length=10240)

    def __init__(self, model: str, *, instruction: str = DEFAULT_INSTRUCTION,
                 prompts: dict[str, str | None] | None = None, default_prompt_name: str | None = None,
                 max_length: int | None = None, **options: Any) -> None:
        self.instruction = check_instruction(instruction)
        self.sentence_transformers_options(prompts, default_prompt_name)
        super().__init__(model, **loader_options("Reranker", options))
        if max_length is not None:
            self.max_seq_length = max_length
        vocab = self.processor.tokenizer.get_vocab()
        missing = [t for t in ("yes", "no") if t not in vocab]
        if missing:
            raise ModelError(f"{self.path}: the tokenizer has no {missing} token(s)")
        yes, no = lm_head_rows(self.path, self.model, [vocab["yes"], vocab["no"]])
        self.score_weight = (yes - no).to(self.device)  # (D,) float32

    def encode_pair(self, query: VisionParts, document: Item, instruction: str,
                    fps: float | None, max_frames: int | None) -> Encoded:
        """Tokenise one (query, document) pair with the reranker's prompt."""
        user = VisionParts()
        user.parts.append({"type": "text", "text": "<Instruct>: " + instruction})
        user.parts.append({"type": "text", "text": "<Query>:"})
        user.extend(query)
        user.parts.append({"type": "text", "text": "\n<Document>:"})
        user.extend(load_item(document, self.budget, self.limits, fps, max_frames))
        return encode_conversation(self.processor, SYSTEM_PROMPT, user, self.budget.max_length)

    def _scores(self, query: Item, documents: list[Item], instruction: str | None, *, fps: float | None = None,
                max_frames: int | None = None, progress: bool | None = None) -> list[float]:
        """Pairs encoded ahead on the pool (the query's media loaded once), scored in batches.
        Options: ``fps``, ``max_frames`` for video files; ``progress`` bar (default: on a terminal
        for long calls)."""
        pairs = self.encode_pairs(query, documents, instruction, fps=fps, max_frames=max_frames, eager=False)
        return self._run(len(pairs), lambda i: pairs[i](), self._head, progress, "pair")

    def encode_pairs(self, query: ItemLike, documents: Iterable[ItemLike], instruction: str | None = None, *,
                     fps: float | None = None, max_frames: int | None = None, eager: bool = True) -> list[Any]:
        """Encode (query, document) pairs; the query's media are loaded once. With ``eager=False``
        the pairs are returned as thunks, encoded later (on the preprocessing threads)."""
        try:
            query_parts = load_item(Item.of(query), self.budget, self.limits, fps, max_frames)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        docs = as_items(documents)
        instruction = check_text(instruction or self.instruction, "instruction")

        def pair(i: int) -> Any:
            return lambda: self.encode_pair(query_parts, docs[i], instruction, fps, max_frames)

        thunks = [pair(i) for i in range(len(docs))]
        if not eager:
            return thunks
        return each_item(thunks, lambda thunk: thunk())

    def score_encoded(self, encoded: Sequence[Encoded]) -> list[float]:
        """Scores of pairs already encoded with ``encode_pairs``."""
        return self.run_encoded(encoded, self._head)

    def _head(self, hidden: Any) -> list[float]:
        # (h · (w_yes - w_no)) row by row (no GEMV), then a scalar sigmoid: vectorised
        # kernels round differently for a batch than for one value.
        return [sigmoid(x) for x in (hidden * self.score_weight).sum(dim=-1).tolist()]
