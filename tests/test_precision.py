"""Reduced-precision modes (``dtype``): their default, their fidelity to float32, batch invariance and memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlsearch.errors import InputError
from vlsearch.models.embedder import Embedder
from vlsearch.models.int8 import Int8Linear
from vlsearch.models.precision import DTYPE_ENV, dtype_name, fast_bf16_cpu
from vlsearch.models.reranker import Reranker
from vlsearch.testing import fidelity, retrieval_items

ITEMS = retrieval_items(queries=6, documents=30)

# measured on the tiny checkpoint: bfloat16 0.9997 / 1.0 / 0.018, int8 0.996 / 0.97 / 0.14 (bench/README.md
# has the full-size figures); the bounds leave a margin
BOUNDS = {"bfloat16": {"min_cosine": 0.999, "top10_overlap": 0.9, "rerank": 0.04},
          "int8": {"min_cosine": 0.99, "top10_overlap": 0.9, "rerank": 0.25}}


@pytest.fixture(scope="module")
def float32_results(embedder, reranker):
    assert embedder.dtype == torch.float32
    return embedder.embed(ITEMS), reranker.score(ITEMS[0], ITEMS[6:20])


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_fidelity_against_float32(dtype, embedder_path, reranker_path, float32_results):
    vectors, scores = float32_results
    model = Embedder(embedder_path, dtype=dtype)
    reduced = model.embed(ITEMS)
    measured = fidelity(vectors, reduced, queries=6)
    delta = np.abs(np.subtract(Reranker(reranker_path, dtype=dtype).score(ITEMS[0], ITEMS[6:20]), scores)).max()
    bounds = BOUNDS[dtype]
    assert measured["min_cosine"] >= bounds["min_cosine"] and measured["top10_overlap"] >= bounds["top10_overlap"]
    assert delta <= bounds["rerank"]
    assert not np.array_equal(reduced, vectors)  # it did compute in another precision
    # batch invariance holds in the reduced precisions too: alone equals in a batch, bit for bit
    alone = np.stack([model.embed([item])[0] for item in ITEMS[:8]])
    assert np.array_equal(alone, reduced[:8])


def test_int8_layers_and_memory(embedder_path, embedder):
    model = Embedder(embedder_path, dtype="int8")
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, Int8Linear) for m in linears)
    model.batch_invariant = False  # int8 layers stay per input (their activation scale is per call)
    assert all(isinstance(m, Int8Linear) for m in model.model.modules() if isinstance(m, torch.nn.Linear))

    def linear_bytes(m: Embedder) -> int:
        total = 0
        for layer in m.model.modules():
            if isinstance(layer, Int8Linear):
                total += torch.ops.quantized.linear_unpack(layer.packed)[0].numel()  # one byte a weight
            elif isinstance(layer, torch.nn.Linear):
                total += layer.weight.numel() * layer.weight.element_size()
        return total

    assert linear_bytes(model) * 4 == linear_bytes(embedder)
    assert not any(p.dtype == torch.bfloat16 for p in model.model.parameters())  # the rest is float32


def test_auto_dtype(monkeypatch):
    monkeypatch.delenv(DTYPE_ENV, raising=False)
    assert dtype_name("auto", "cpu") == ("bfloat16" if fast_bf16_cpu() else "float32")
    assert dtype_name(None, "cuda") == "bfloat16"
    monkeypatch.setenv(DTYPE_ENV, "int8")
    assert dtype_name("auto", "cpu") == "int8"
    assert dtype_name(torch.float16, "cpu") == "float16" and dtype_name("float32", "cpu") == "float32"
    with pytest.raises(InputError, match="int8 runs on the CPU only"):
        dtype_name("int8", "cuda")
    with pytest.raises(InputError, match="dtype must be one of"):
        dtype_name("int4", "cpu")
