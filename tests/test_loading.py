"""Checkpoint loading (local, hub cache, offline), output formats (MRL, int8, binary)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vlsearch import Embedder, InputError, ModelError, Reranker
from vlsearch.models.contract import quantize, truncate_dim


def test_hub_id_loads_from_the_cache_offline(embedder_path, tmp_path):
    """A hub id resolves to the Hugging Face cache snapshot, with no network (HF_HUB_OFFLINE=1)."""
    repo = tmp_path / "hub" / "models--acme--tiny-vl-embedding"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(embedder_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = ("from vlsearch import Embedder; import numpy as np;"
              "e = Embedder('acme/tiny-vl-embedding'); v = e.embed(['hello']);"
              "print(e.path.name, v.shape[1], float(np.linalg.norm(v)))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, dim, norm = out.stdout.split()[-3:]
    assert name == commit and int(dim) == 64 and abs(float(norm) - 1) < 1e-6

    missing = subprocess.run([sys.executable, "-c", "from vlsearch import Embedder; Embedder('acme/absent')"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0
    assert "acme/absent: not in the Hugging Face cache" in missing.stderr


def test_local_directory_errors(tmp_path, embedder_path):
    with pytest.raises(ModelError, match="no such model directory"):
        Embedder(tmp_path / "nope")
    bin_only = tmp_path / "bin-only"
    shutil.copytree(embedder_path, bin_only)
    for f in bin_only.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(ModelError, match="no .safetensors weights"):
        Embedder(bin_only)


def test_sharded_untied_reranker_reads_head_rows_from_the_right_shard(tmp_path, reranker_path, reranker):
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    sharded = tmp_path / "sharded"
    shutil.copytree(reranker_path, sharded, ignore=shutil.ignore_patterns("*.safetensors"))
    model = Qwen3VLForConditionalGeneration.from_pretrained(reranker_path, dtype=torch.float32)
    model.save_pretrained(sharded, max_shard_size="200KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    again = Reranker(sharded)
    assert torch.equal(again.score_weight, reranker.score_weight)
    assert again.score("q", ["a", "b"]) == reranker.score("q", ["a", "b"])


def test_mrl_dimension_and_renormalisation(embedder):
    full = embedder.embed(["one", "two"])
    short = embedder.embed(["one", "two"], dim=16)
    assert short.shape == (2, 16)
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert np.allclose(short, expected, atol=1e-7)
    assert np.allclose(np.linalg.norm(short, axis=1), 1, atol=1e-6)
    with pytest.raises(InputError, match="dim must be between 1 and 64"):
        embedder.embed(["x"], dim=65)


def test_int8_and_binary_outputs(embedder):
    full = embedder.embed(["alpha", "beta", "gamma"])
    q8 = embedder.embed(["alpha", "beta", "gamma"], precision="int8")
    assert q8.dtype == np.int8 and q8.shape == full.shape
    assert (np.abs(q8).max(axis=1) == 127).all()
    cos8 = (q8 / np.linalg.norm(q8, axis=1, keepdims=True).astype(np.float32))
    assert np.abs(cos8 @ cos8.T - full @ full.T).max() < 0.02
    bits = embedder.embed(["alpha", "beta", "gamma"], precision="ubinary")
    assert bits.dtype == np.uint8 and bits.shape == (3, 8)
    assert np.array_equal(np.unpackbits(bits, axis=1).astype(bool), full > 0)
    both = embedder.embed(["alpha"], dim=24, precision="ubinary")
    assert both.shape == (1, 3)
    with pytest.raises(InputError, match="precision must be"):
        embedder.embed(["x"], precision="fp8")


def test_quantize_helpers_are_documented_formulas():
    v = np.array([[0.6, -0.8, 0.0]], np.float32)
    assert quantize(v, "int8").tolist() == [[95, -127, 0]]
    assert quantize(v, "ubinary").tolist() == [[0b10000000]]
    assert np.allclose(truncate_dim(v, 1), [[1.0]])


def test_empty_input_list(embedder):
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert embedder.embed([], dim=8, precision="ubinary").shape == (0, 1)


def test_dtype_option(embedder_path):
    e = Embedder(embedder_path, dtype="bfloat16")
    v = e.embed(["hello"])
    assert v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-3
    with pytest.raises(InputError, match="dtype must be"):
        Embedder(embedder_path, dtype="int4")
