"""Token-budget batches, out-of-memory back-off and the encoded entry points (invariance: test_invariance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlsearch import Embedder, Reranker
from vlsearch.errors import ModelError
from vlsearch.models.batching import plan_batches, run_with_backoff
from vlsearch.items import as_items


def mixed_items(media) -> list[dict]:
    return [
        {"text": "short"},
        {"text": "a much longer text " * 40},
        {"image": str(media["large"])},
        {"image": str(media["small"]), "text": "small picture"},
        {"video": [str(media[f"frame{i}"]) for i in range(4)]},
        {"video": str(media["video"])},
        {"text": ["two", "texts"], "instruction": "Find documents"},
        {"image": [str(media["wide"]), str(media["tall"])]},
    ]


def test_plan_batches_sorts_and_respects_budget():
    lengths = [5, 100, 7, 90, 300, 50]
    batches = plan_batches(lengths, max_tokens=200, max_items=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 200
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    assert all(len(b) <= 2 for b in plan_batches(lengths, max_tokens=10_000, max_items=2))


def test_rank_orders_scores(reranker, media):
    docs = mixed_items(media)
    scores = reranker.score("query text", docs)
    ranked = reranker.rank("query text", docs, top_k=3)
    assert len(ranked) == 3
    assert [s for _, s in ranked] == sorted(scores, reverse=True)[:3]
    assert all(scores[i] == s for i, s in ranked)


def test_out_of_memory_batches_are_split_and_retried():
    calls: list[list[int]] = []

    def forward(rows):
        calls.append(list(rows))
        if len(rows) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [r * 10 for r in rows]

    done: dict[int, int] = {}
    run_with_backoff(list(range(7)), forward, lambda rows, values: done.update(zip(rows, values)))
    assert done == {r: r * 10 for r in range(7)}
    assert calls == [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2], [0], [1, 2], [3, 4, 5, 6], [3, 4], [5, 6]]


def test_out_of_memory_on_a_single_item_is_a_model_error():
    def forward(rows):
        raise RuntimeError("CUDA out of memory.")

    with pytest.raises(ModelError, match="item 4: out of memory"):
        run_with_backoff([4], forward, lambda *a: None)


def test_other_errors_are_not_swallowed():
    def forward(rows):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_with_backoff([0, 1], forward, lambda *a: None)


def test_many_items_use_several_batches(embedder_path, media):
    tight = Embedder(embedder_path, batch_tokens=256, max_batch_size=4)
    items = [{"text": f"item number {i} " * (1 + i % 5)} for i in range(30)]
    seen: list[int] = []
    original = tight._hidden
    tight._hidden = lambda encoded: (seen.append(len(encoded)), original(encoded))[1]
    vectors = tight.embed(items)
    assert vectors.shape == (30, tight.dim)
    assert len(seen) >= 8 and max(seen) <= 4
    assert np.array_equal(vectors, Embedder(embedder_path).embed(items))


def test_reranker_loads_head_from_untied_and_tied_checkpoints(reranker_path, embedder_path, media):
    for path in (reranker_path, embedder_path):  # the embedder fixture is tied, the reranker not
        scores = Reranker(path).score("q", ["doc one", "doc two"])
        assert len(scores) == 2 and all(0 < s < 1 for s in scores)


def test_encoded_entry_points_equal_the_plain_calls(embedder, reranker, media):
    """What a server uses: encode each request apart, then run many together."""
    items = mixed_items(media)
    encoded = [embedder.encode_item(item) for item in as_items(items)]
    assert np.array_equal(embedder.embed_encoded(encoded, dim=16), embedder.embed(items, dim=16))
    pairs = reranker.encode_pairs("query text", items)
    assert reranker.score_encoded(pairs) == reranker.score("query text", items)
