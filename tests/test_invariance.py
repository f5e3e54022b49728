"""Batch invariance, bit for bit: a result never depends on what else is in its batch.

The guarantee (docs/DESIGN.md) holds by construction on any CPU and BLAS: no matrix product,
attention or norm ever mixes the rows of two inputs, and padding is never computed. These tests run in the
default process and again in subprocesses on the other CPU code paths that MKL and ATen can
take (``MKL_ENABLE_INSTRUCTIONS`` with ``ATEN_CPU_CAPABILITY``), which is where per-shape kernel
choices round differently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlsearch import Embedder, Reranker
from vlsearch.models.batching import collate, last_token
from vlsearch.items import as_items
from vlsearch.models.attention import rowwise_sdpa
from vlsearch.models.invariant import InvariantLinear
from vlsearch.models.layout import ROWS, RowLayout

CODE_PATHS = {  # name: (MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY, cpu flag needed)
    "avx2": ("AVX2", "avx2", "avx2"),
    "avx512": ("AVX512", "avx512", "avx512f"),
    "sse4_2": ("SSE4_2", "default", "sse4_2"),
}
CHILD = "VLSEARCH_TEST_CODE_PATH"


def mixed_pool(media) -> list[dict]:
    """Items of every kind and a wide range of lengths (the composition tests draw from it)."""
    return [
        {"text": "short"},
        {"text": "a much longer text " * 40},
        {"text": ["two", "texts"], "instruction": "Find documents"},
        {"text": "word " * 300},
        {"image": str(media["large"])},
        {"image": str(media["small"]), "text": "small picture"},
        {"image": [str(media["wide"]), str(media["tall"])]},
        {"image": str(media["jpeg"])},
        {"video": [str(media[f"frame{i}"]) for i in range(4)]},
        {"video": str(media["video"])},
    ]


def test_random_batch_compositions_embed_bit_for_bit(embedder_path, media):
    pool = mixed_pool(media)
    model = Embedder(embedder_path)
    alone = np.stack([model.embed([item])[0] for item in pool])
    rng = np.random.default_rng(0)
    for trial in range(6):
        picks = rng.integers(0, len(pool), int(rng.integers(1, 65)))
        model.batch_tokens = int(rng.choice([48, 300, 2048, 16384, 10**7]))  # tiny to unbounded
        model.max_batch_size = int(rng.choice([1, 3, 16, 64]))
        together = model.embed([pool[i] for i in picks])
        changed = [int(i) for row, i in enumerate(picks) if not np.array_equal(together[row], alone[i])]
        assert not changed, (f"trial {trial} (budget {model.batch_tokens}, size {model.max_batch_size}): "
                             f"items {changed} changed with their batch, max |d| "
                             f"{np.abs(together - alone[picks]).max():.3g}")


def test_random_batch_compositions_rerank_bit_for_bit(reranker_path, media):
    pool = mixed_pool(media)
    model = Reranker(reranker_path)
    alone = [model.score("query text", [doc])[0] for doc in pool]
    rng = np.random.default_rng(1)
    for _ in range(4):
        picks = rng.integers(0, len(pool), int(rng.integers(1, 40)))
        model.batch_tokens = int(rng.choice([64, 1024, 16384, 10**7]))
        model.max_batch_size = int(rng.choice([1, 5, 64]))
        assert model.score("query text", [pool[i] for i in picks]) == [alone[i] for i in picks]


def test_invariance_does_not_rest_on_the_blas(embedder_path, media, row_count_sensitive_blas):
    """Each product sees one input's rows, so a BLAS that rounds by shape cannot tell the batch;
    merged GEMMs (``batch_invariant=False``) can."""
    pool = mixed_pool(media)
    ours, merged = Embedder(embedder_path), Embedder(embedder_path, batch_invariant=False)
    assert np.array_equal(ours.embed(pool), np.stack([ours.embed([item])[0] for item in pool]))
    assert not np.array_equal(merged.embed(pool), np.stack([merged.embed([item])[0] for item in pool]))


def test_the_thread_count_changes_nothing(embedder_path, media, tmp_path):
    """A one-thread worker (a Ray actor) and a many-thread process give the same vectors; small
    images put only a few rows (5 to 11) through the vision tower's merger."""
    from vlsearch.testing import gradient_image

    pool = mixed_pool(media)
    for i, size in enumerate([(100, 80), (110, 80), (130, 100), (160, 90), (90, 200)]):
        gradient_image(*size, seed=i).save(tmp_path / f"small{i}.png")
        pool.append({"image": str(tmp_path / f"small{i}.png")})
    model = Embedder(embedder_path)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.embed(pool)
        torch.set_num_threads(max(2, threads))
        many = model.embed(pool)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, many)


def test_many_short_texts_bit_for_bit(embedder, reranker):
    """Many rows of nearly one length: where vectorised kernels and GEMM shapes vary the most."""
    docs = [f"document {i} " + "word " * (i % 7) for i in range(70)]
    assert np.array_equal(embedder.embed(docs), np.stack([embedder.embed([d])[0] for d in docs]))
    assert reranker.score("query", docs) == [reranker.score("query", [d])[0] for d in docs]


def test_padding_filled_with_garbage_changes_nothing(embedder, media):
    """Attention and the linear layers never read another row's tokens or a row's padding."""
    items = as_items(mixed_pool(media)[:6])
    encoded = [embedder.encode_item(item) for item in items]
    lengths = [len(e) for e in encoded]
    assert len(set(lengths)) > 1
    clean = collate(encoded, embedder.pad_token_id, embedder.device)
    dirty = with_garbage_padding(embedder, clean)
    assert torch.equal(padded_last_hidden(embedder, clean, lengths), padded_last_hidden(embedder, dirty, lengths))


def with_garbage_padding(embedder, batch: dict) -> dict:
    """A copy of a padded batch whose padding holds random ordinary (non-special) tokens."""
    dirty = {k: v.clone() for k, v in batch.items()}
    padding = batch["attention_mask"] == 0
    generator = torch.Generator().manual_seed(0)
    special = set(embedder.processor.tokenizer.all_special_ids)
    ordinary = torch.tensor([t for t in range(embedder.model.get_input_embeddings().num_embeddings) if t not in special])
    dirty["input_ids"][padding] = ordinary[torch.randint(0, len(ordinary), (int(padding.sum()),), generator=generator)]
    return dirty


def padded_last_hidden(embedder, batch: dict, lengths: list[int]):
    """The last real token's hidden state of each row of a padded batch (the padded layout)."""
    token = ROWS.set(RowLayout(lengths))
    try:
        with torch.inference_mode():
            out = embedder.model(**batch, use_cache=False).last_hidden_state
    finally:
        ROWS.reset(token)
    return last_token(out, batch["attention_mask"])


def test_rowwise_attention_ignores_other_rows_and_padding():
    class Causal(torch.nn.Module):
        is_causal = True

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 9, 8, generator=generator) for _ in range(3))
    lengths = [9, 4, 6]
    token = ROWS.set(RowLayout(lengths))
    try:
        out, _ = rowwise_sdpa(Causal(), q, k, v, None, scaling=8 ** -0.5, dropout=0.0)
        for tensor in (q, k, v):  # garbage in every padded position and in the other rows
            for row, n in enumerate(lengths):
                tensor[row, :, n:] = torch.randn(2, 9 - n, 8, generator=generator) * 1e6
        again, _ = rowwise_sdpa(Causal(), q, k, v, None, scaling=8 ** -0.5, dropout=0.0)
    finally:
        ROWS.reset(token)
    for row, n in enumerate(lengths):
        assert torch.equal(out[row, :n], again[row, :n])
        assert not out[row, n:].any()


@pytest.mark.parametrize("k,n", [(64, 128), (1536, 32), (1024, 4096)])
def test_sequence_linear_multiplies_each_row_alone(k, n):
    """A row's product never sees another row or its own padding: garbage there changes nothing,
    and the result equals the row run as a batch of one."""
    generator = torch.Generator().manual_seed(k)
    layer = torch.nn.Linear(k, n)
    layer.__class__ = InvariantLinear
    lengths = [7, 1, 12, 3]
    x = torch.randn(len(lengths), 12, k, generator=generator)
    token = ROWS.set(RowLayout(lengths))
    try:
        with torch.inference_mode():
            out = layer(x)
            for row, n_real in enumerate(lengths):
                x[row, n_real:] = torch.randn(12 - n_real, k, generator=generator) * 1e6
            again = layer(x)
    finally:
        ROWS.reset(token)
    for row, n_real in enumerate(lengths):
        assert torch.equal(out[row, :n_real], again[row, :n_real])
        assert not out[row, n_real:].any()
    for row, n_real in enumerate(lengths):
        token = ROWS.set(RowLayout([n_real]))
        try:
            with torch.inference_mode():
                assert torch.equal(layer(x[row:row + 1, :n_real])[0], out[row, :n_real])
        finally:
            ROWS.reset(token)


def test_plain_layers_stay_within_rounding(embedder_path, embedder, media):
    """``batch_invariant=False`` and plain masked SDPA: the same vectors up to float rounding."""
    items = mixed_pool(media)
    plain = Embedder(embedder_path, attn_implementation="sdpa", batch_invariant=False).embed(items)
    assert np.abs(plain - embedder.embed(items)).max() < 1e-5


def _cpu_flags() -> set[str]:
    try:
        return set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                        if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


def test_this_process_runs_the_requested_code_path():
    name = os.environ.get(CHILD)
    if not name:
        pytest.skip("only in a code-path subprocess")
    assert torch.backends.cpu.get_cpu_capability().lower() == CODE_PATHS[name][1]


@pytest.mark.parametrize("name", CODE_PATHS)
def test_invariance_on_every_cpu_code_path(name):
    if os.environ.get(CHILD):
        pytest.skip("already inside a code-path subprocess")
    mkl, aten, flag = CODE_PATHS[name]
    if flag not in _cpu_flags():
        pytest.skip(f"this CPU has no {flag}")
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": mkl, "ATEN_CPU_CAPABILITY": aten, CHILD: name}
    done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider",
                           "-k", "not every_cpu_code_path"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, f"{mkl}/{aten}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
