"""The two training objectives, on the inference code's own encodings.

Inputs are encoded by the models' own methods (``Embedder.encode_item``, ``Reranker.encode_pairs``:
the official prompt formats), batched by ``collate`` and pooled by ``last_token``, as inference's
padded path does (``packed=False``; on a CPU bit for bit the packed path), so train and serve
cannot drift. Only the forward pass differs: it keeps gradients.

- **Embedder**: InfoNCE over the batch's queries against every document of the batch (each
  query's positive, the other queries' positives and everyone's mined negatives); a document
  that is also relevant to a query is masked out of that query's negatives. With ``matryoshka``
  dimensions the losses on the truncated, re-normalised vectors are summed.
- **Reranker**: binary cross-entropy on ``logit(yes) - logit(no) = (w_yes - w_no) · h_last``, one
  positive and the mined negatives per query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..eval.datasets import RetrievalTask
from ..items import Item
from ..models.embedder import Embedder
from ..models.qwen3vl import Encoded
from ..models.reranker import Reranker
from .data import positives
from .loop import EncodingCache, TrainOptions, add_lora, hidden_states


@dataclass
class Plan:
    """One step: queries, their sampled documents, and what the loss needs to know about them."""

    queries: list[str]
    documents: list[str]  # embedder: the batch's documents; reranker: one per pair
    target: list[int]  # embedder: each query's positive in ``documents``
    labels: list[float]  # reranker: 1 positive, 0 negative, one per pair
    pair_query: list[str]  # reranker: the query of each pair
    masked: list[tuple[int, int]]  # embedder: (query, document) pairs kept out of the negatives


class _Objective:
    """Examples (held-out ones apart), sampling, and encoding ahead for one model."""

    label = ""

    def __init__(self, model: Any, task: RetrievalTask, train: Sequence[str], val: Sequence[str],
                 negatives: Mapping[str, Sequence[str]], options: TrainOptions) -> None:
        self.base, self.task, self.options = model, task, options
        self.examples = {"train": list(train), "val": list(val)}
        self.negatives = negatives
        self.positives = {q: positives(task, q) for q in [*train, *val]}
        self.model = add_lora(model.model, options)
        self.batch_tokens = options.batch_tokens or model.batch_tokens
        self.cache = EncodingCache(self._encode, self._describe, model._pool)

    def count(self, split: str) -> int:
        return len(self.examples[split])

    def sample(self, split: str, indices: Sequence[int], rng: np.random.Generator) -> list[tuple[str, str, list[str]]]:
        """(query, positive, mined negatives) for each example."""
        out = []
        for i in indices:
            qid = self.examples[split][i]
            pool = list(self.negatives.get(qid, ()))
            k = min(self.options.negatives, len(pool))
            picked = [pool[j] for j in sorted(rng.choice(len(pool), k, replace=False))] if k else []
            out.append((qid, str(rng.choice(self.positives[qid])), picked))
        return out

    def prefetch(self, keys: Sequence[str]) -> None:
        self.cache.prefetch(keys)

    def _hidden(self, keys: Sequence[str]) -> Any:
        encoded = self.cache.get(keys)
        return hidden_states(self.model, encoded, self.base.pad_token_id, self.base.device, self.batch_tokens)

    def _describe(self, key: str) -> str:
        kind, _, rest = key.partition(":")
        if kind == "q":
            return f"{self.task.name}: query {rest!r}"
        if kind == "d":
            return f"{self.task.name}: document {rest!r}"
        qid, _, doc = rest.partition("\x1f")
        return f"{self.task.name}: query {qid!r}, document {doc!r}"

    def _encode(self, key: str) -> Encoded:
        raise NotImplementedError


class EmbedderObjective(_Objective):
    """InfoNCE with in-batch and mined negatives (see the module doc)."""

    label = "embedder"

    def __init__(self, embedder: Embedder, task: RetrievalTask, train: Sequence[str], val: Sequence[str],
                 negatives: Mapping[str, Sequence[str]], options: TrainOptions) -> None:
        dims = sorted({d or embedder.dim for d in options.matryoshka or [embedder.dim]})  # 0: the full dimension
        bad = [d for d in dims if not 1 <= d <= embedder.dim]
        if bad:
            raise InputError(f"matryoshka dimensions must be between 1 and {embedder.dim}, not {bad}")
        self.dims = dims
        super().__init__(embedder, task, train, val, negatives, options)

    def _encode(self, key: str) -> Encoded:
        kind, _, ident = key.partition(":")
        if kind == "q":
            return self.base.encode_item(Item.of(self.task.item("queries", ident)), self.task.query_instruction)
        return self.base.encode_item(Item.of(self.task.item("corpus", ident)), self.task.doc_instruction)

    def plan(self, split: str, indices: Sequence[int], rng: np.random.Generator) -> Plan:
        sampled = self.sample(split, indices, rng)
        docs = list(dict.fromkeys([p for _, p, _ in sampled] + [n for _, _, ns in sampled for n in ns]))
        where = {d: j for j, d in enumerate(docs)}
        target = [where[p] for _, p, _ in sampled]
        masked = [(i, j) for i, (q, _, _) in enumerate(sampled) for j, d in enumerate(docs)
                  if j != target[i] and d in self.positives[q]]
        return Plan([q for q, _, _ in sampled], docs, target, [], [], masked)

    def keys(self, plan: Plan) -> list[str]:
        return [f"q:{q}" for q in plan.queries] + [f"d:{d}" for d in plan.documents]

    def loss(self, plan: Plan) -> Any:
        import torch
        from torch.nn import functional as F

        hidden = self._hidden(self.keys(plan))
        n = len(plan.queries)
        queries, docs = hidden[:n], hidden[n:]
        target = torch.tensor(plan.target, device=hidden.device)
        mask = torch.zeros(n, len(plan.documents), dtype=torch.bool, device=hidden.device)
        for i, j in plan.masked:
            mask[i, j] = True
        total = hidden.new_zeros(())
        for dim in self.dims:
            q = F.normalize(queries[:, :dim], dim=-1)
            d = F.normalize(docs[:, :dim], dim=-1)
            logits = (q @ d.T / self.options.temperature).masked_fill(mask, float("-inf"))
            total = total + F.cross_entropy(logits, target)
        return total


class RerankerObjective(_Objective):
    """Binary cross-entropy on the yes/no logit difference (see the module doc)."""

    label = "reranker"

    def __init__(self, reranker: Reranker, task: RetrievalTask, train: Sequence[str], val: Sequence[str],
                 negatives: Mapping[str, Sequence[str]], options: TrainOptions) -> None:
        self.instruction = task.rerank_instruction or task.query_instruction
        super().__init__(reranker, task, train, val, negatives, options)

    def _encode(self, key: str) -> Encoded:
        qid, _, doc = key.partition(":")[2].partition("\x1f")
        query = {k: v for k, v in self.task.item("queries", qid).items() if k != "instruction"}
        return self.base.encode_pairs(query, [self.task.item("corpus", doc)], self.instruction)[0]

    def plan(self, split: str, indices: Sequence[int], rng: np.random.Generator) -> Plan:
        pairs = [(q, d, 1.0 if d == p else 0.0) for q, p, ns in self.sample(split, indices, rng) for d in [p, *ns]]
        return Plan([], [d for _, d, _ in pairs], [], [y for _, _, y in pairs], [q for q, _, _ in pairs], [])

    def keys(self, plan: Plan) -> list[str]:
        return [f"p:{q}\x1f{d}" for q, d in zip(plan.pair_query, plan.documents)]

    def loss(self, plan: Plan) -> Any:
        import torch
        from torch.nn import functional as F

        hidden = self._hidden(self.keys(plan))
        logits = hidden @ self.base.score_weight.to(hidden.device)  # (pairs,): logit(yes) - logit(no)
        labels = torch.tensor(plan.labels, device=hidden.device)
        return F.binary_cross_entropy_with_logits(logits, labels)
