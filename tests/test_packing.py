"""Packed execution: one row without padding gives what padded rows give, bit for bit on CPU.

The padded path (``packed=False``) is the reference: its invariance and fidelity are pinned by
test_invariance.py and test_fidelity.py. Every packed variant here is compared with it on the
same loaded weights, with batch invariance on and off, on mixed text, image and video batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_invariance import mixed_pool, padded_last_hidden, with_garbage_padding
from vlsearch import Embedder, Reranker
from vlsearch.items import as_items
from vlsearch.models import attention
from vlsearch.models.batching import collate, plan_packed
from vlsearch.models.feed import Ahead
from vlsearch.models.invariant import InvariantLinear, fixed_order_sum, make_batch_invariant
from vlsearch.models.layout import ROWS, PackedLayout, RowLayout


def both_layouts(model, run):
    """``run(model)`` packed and padded (the model's layout restored afterwards)."""
    packed = model.packed
    try:
        model.packed = True
        a = run(model)
        model.packed = False
        b = run(model)
    finally:
        model.packed = packed
    return a, b


@pytest.mark.parametrize("invariant", [True, False])
def test_packed_embeddings_equal_padded_bit_for_bit(embedder_path, media, invariant):
    model = Embedder(embedder_path, batch_invariant=invariant)
    items = mixed_pool(media)
    for budget in (300, 2048, 10**7):  # several small batches to one batch of everything
        model.batch_tokens = budget
        packed, padded = both_layouts(model, lambda m: m.embed(items))
        assert np.array_equal(packed, padded), f"budget {budget}: max |d| {np.abs(packed - padded).max():.3g}"


@pytest.mark.parametrize("invariant", [True, False])
def test_packed_scores_equal_padded_bit_for_bit(reranker_path, media, invariant):
    model = Reranker(reranker_path, batch_invariant=invariant, batch_tokens=10**7)
    docs = mixed_pool(media)
    packed, padded = both_layouts(model, lambda m: m.score({"text": "query", "image": str(media["small"])}, docs))
    assert packed == padded


def test_packed_row_equals_padded_rows_with_garbage_in_the_padding(embedder, media):
    """What was padding is not computed at all now; the packed row's hidden states equal the padded
    batch's even when that padding holds random tokens."""
    encoded = [embedder.encode_item(item) for item in as_items(mixed_pool(media)[:7])]
    lengths = [len(e) for e in encoded]
    dirty = with_garbage_padding(embedder, collate(encoded, embedder.pad_token_id, embedder.device))
    padded = padded_last_hidden(embedder, dirty, lengths).float()
    assert embedder.packed
    assert torch.equal(embedder._hidden(encoded), padded)


def test_packed_invariance_does_not_rest_on_the_blas(embedder_path, media, row_count_sensitive_blas):
    """Under a BLAS that rounds by row count, one packed batch equals each item alone and the padded
    path; one GEMM per packed batch (``batch_invariant=False``) does not."""
    pool = mixed_pool(media)
    model = Embedder(embedder_path)
    together = model.embed(pool)
    assert np.array_equal(together, np.stack([model.embed([item])[0] for item in pool]))
    model.packed = False
    assert np.array_equal(together, model.embed(pool))
    model.packed, model.batch_invariant = True, False
    assert not np.array_equal(model.embed(pool), np.stack([model.embed([item])[0] for item in pool]))


def test_switching_invariance_on_a_loaded_model_is_the_same_as_loading_it(embedder_path, media):
    items = mixed_pool(media)
    model = Embedder(embedder_path)
    plain = Embedder(embedder_path, batch_invariant=False)
    ours = model.embed(items)
    model.batch_invariant = False
    assert np.array_equal(model.embed(items), plain.embed(items))
    assert not any(isinstance(m, InvariantLinear) for m in model.model.modules())
    model.batch_invariant = True
    assert np.array_equal(model.embed(items), ours)


def test_token_counts_show_what_padding_costs(embedder_path, media):
    model = Embedder(embedder_path, batch_tokens=10**7)
    items = mixed_pool(media)
    model.embed(items)
    assert model.token_counts.efficiency == 1.0 and model.token_counts.real > 0
    real = model.token_counts.real
    model.token_counts.reset()
    model.packed = False
    model.embed(items)
    assert model.token_counts.real == real
    assert model.token_counts.computed == len(items) * max(len(model.encode_item(i)) for i in as_items(items))


def test_plan_packed_counts_real_tokens():
    lengths = [5, 100, 7, 90, 300, 50, 50]
    batches = plan_packed(lengths, max_tokens=200, max_items=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 200
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


# ---------------------------------------------------------------- attention on a packed row

class Causal(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 2


def qkv(lengths, heads=4, kv_heads=2, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    return (torch.randn(1, heads, total, dim, generator=generator),
            torch.randn(1, kv_heads, total, dim, generator=generator),
            torch.randn(1, kv_heads, total, dim, generator=generator))


def run_packed(layout, q, k, v):
    token = ROWS.set(layout)
    try:
        out, _ = attention.rowwise_sdpa(Causal(), q, k, v, None, scaling=8 ** -0.5, dropout=0.0)
    finally:
        ROWS.reset(token)
    return out


def test_packed_rowwise_attention_equals_the_padded_loop():
    lengths = [9, 4, 6]
    q, k, v = qkv(lengths)
    packed = run_packed(PackedLayout(lengths, "rowwise"), q, k, v)
    layout = PackedLayout(lengths)
    for (s, e), n in zip(layout.spans(), lengths):  # each sequence as a padded batch of one
        alone = run_packed(RowLayout([n]), q[:, :, s:e], k[:, :, s:e], v[:, :, s:e])
        assert torch.equal(packed[0, s:e], alone[0])


@pytest.mark.parametrize("backend", ["rowwise", "sdpa_mask", "flash_varlen"])
def test_packed_attention_never_reads_another_sequence(backend, monkeypatch):
    """Garbage in the other sequences changes nothing; the backends agree with the loop to rounding.
    (flash_varlen runs a stand-in for the kernel here, one SDPA per cu_seqlens span: what is
    checked is what vlsearch hands it.)"""
    if backend == "flash_varlen":
        monkeypatch.setattr(attention, "flash_varlen_function", lambda: stand_in_varlen)
    lengths = [9, 4, 6, 1]
    q, k, v = qkv(lengths)
    layout = PackedLayout(lengths, backend)
    out = run_packed(layout, q, k, v)
    reference = run_packed(PackedLayout(lengths, "rowwise"), q, k, v)
    assert torch.allclose(out, reference, atol=1e-6)
    generator = torch.Generator().manual_seed(1)
    for keep, (s, e) in enumerate(layout.spans()):
        dirty = [t.clone() for t in (q, k, v)]
        for other, (s2, e2) in enumerate(layout.spans()):
            if other != keep:
                for t in dirty:
                    t[:, :, s2:e2] = torch.randn(t[:, :, s2:e2].shape, generator=generator) * 1e6
        assert torch.equal(run_packed(layout, *dirty)[0, s:e], out[0, s:e])


def stand_in_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p, softmax_scale, causal):
    """flash_attn_varlen_func's contract: (total, H, D) and (total, Hkv, D) inputs, int32 cu_seqlens."""
    assert q.dim() == 3 and cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k) and causal and dropout_p == 0
    assert max_q == max_k == int((cu_q[1:] - cu_q[:-1]).max())
    groups = q.shape[1] // k.shape[1]
    k, v = (x.repeat_interleave(groups, dim=1) for x in (k, v))
    parts = [torch.nn.functional.scaled_dot_product_attention(
        q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True,
        scale=softmax_scale).transpose(0, 1) for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist())]
    return torch.cat(parts)


def test_a_failing_backend_is_reported_once_and_replaced(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setitem(attention._BACKEND_FUNCTIONS, "sdpa_mask", broken)
    monkeypatch.setattr(attention, "_broken", set())
    lengths = [5, 3]
    q, k, v = qkv(lengths)
    with pytest.warns(RuntimeWarning, match="sdpa_mask failed"):
        out = run_packed(PackedLayout(lengths, "sdpa_mask"), q, k, v)
    assert torch.equal(out, run_packed(PackedLayout(lengths, "rowwise"), q, k, v))


def test_out_of_memory_in_a_backend_reaches_the_back_off(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setitem(attention._BACKEND_FUNCTIONS, "sdpa_mask", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_packed(PackedLayout([4, 4], "sdpa_mask"), *qkv([4, 4]))


def test_backend_choice():
    assert attention.resolve_backend("auto", "cpu", torch.float32) == "rowwise"
    assert attention.resolve_backend("sdpa_mask", "cpu", torch.float32) == "sdpa_mask"
    with pytest.raises(ValueError, match="CUDA"):
        attention.resolve_backend("sdpa_jagged", "cpu", torch.float32)
    with pytest.raises(ValueError, match="one of"):
        attention.resolve_backend("fast", "cpu", torch.float32)


def test_gqa_heads_follow_repeat_kv():
    from transformers.integrations.sdpa_attention import repeat_kv

    k = torch.randn(1, 2, 5, 8)
    assert torch.equal(attention._heads(k, 3), repeat_kv(k, 3)[0].transpose(0, 1))


# ---------------------------------------------------------------- linear layers and norms

def test_packed_linear_multiplies_each_sequence_alone():
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 96)
    layer.__class__ = InvariantLinear
    lengths = [7, 1, 12, 3]
    layout = PackedLayout(lengths)
    x = torch.randn(1, layout.total, 64, generator=generator)
    token = ROWS.set(layout)
    try:
        with torch.inference_mode():
            out = layer(x)
    finally:
        ROWS.reset(token)
    for (s, e), n in zip(layout.spans(), lengths):
        token = ROWS.set(RowLayout([n]))
        try:
            with torch.inference_mode():
                assert torch.equal(layer(x[:, s:e]), out[:, s:e])
        finally:
            ROWS.reset(token)


@pytest.mark.parametrize("width", [2048, 128, 7, 1])
def test_fixed_order_sum_does_not_depend_on_the_rows(width):
    generator = torch.Generator().manual_seed(width)
    x = torch.randn(37, width, generator=generator)
    whole = fixed_order_sum(x)
    assert whole.shape == (37, 1)
    for i in (0, 5, 36):
        assert torch.equal(fixed_order_sum(x[i:i + 1]), whole[i:i + 1])
        assert torch.equal(fixed_order_sum(x[i:i + 1].expand(64, width).contiguous())[0], whole[i])
    assert torch.allclose(whole, x.double().sum(-1, keepdim=True).float(), rtol=1e-5, atol=1e-5)


def test_fixed_order_norms_stay_batch_invariant_and_close(embedder_path, media):
    """The GPU's norms (a fixed pairwise order) run here on the CPU: still invariant, and within
    rounding of the default norms."""
    items = mixed_pool(media)
    model = Embedder(embedder_path)
    default = model.embed(items)
    make_batch_invariant(model.model, fixed_order_norms=True)
    fixed = model.embed(items)
    assert any(getattr(m, "fixed_order", False) for m in model.model.modules())
    assert np.array_equal(fixed, np.stack([model.embed([item])[0] for item in items]))
    assert np.abs(fixed - default).max() < 1e-5


def test_nothing_is_prepared_ahead_on_a_cpu(embedder, media):
    encoded = [embedder.encode_item(item) for item in as_items(mixed_pool(media)[:3])]
    with Ahead(embedder._prepare, "cpu") as ahead:
        ahead.submit(encoded)
        assert Ahead.take(encoded) is None
