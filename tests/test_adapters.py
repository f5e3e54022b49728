"""Adapters as part of a model: load, round trip, merge, batch invariance, fingerprints and refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tune_data import colour_task
from vlsearch import Embedder, Reranker
from vlsearch.cli import build_parser, main
from vlsearch.collection import Collection
from vlsearch.errors import InputError, ModelError, StoreError
from vlsearch.models.adapters import merge_checkpoint
from vlsearch.models.loading import load_embedder
from vlsearch.testing import gradient_image
from vlsearch.tune import TrainOptions, TuneOptions, from_task, tune

pytest.importorskip("peft")

ITEMS = ["a red picture", "something much longer about a blue photo that is mostly blue",
         {"image": gradient_image(64, 48, seed=1)}, {"image": gradient_image(200, 120, seed=2), "text": "caption"}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, embedder_path, reranker_path):
    """Adapters from a few real training steps (large enough a learning rate to move the vectors)."""
    root = tmp_path_factory.mktemp("adapters")
    colour_task(root / "task", colours=4, images_per_colour=2, templates=4)
    result = tune(from_task(root / "task"), TuneOptions(
        root / "out", model=str(embedder_path), reranker=str(reranker_path), quiet=True, val_fraction=0,
        train=TrainOptions(max_steps=3, batch_size=4, negatives=1, lr=5e-3, warmup=0.0)))
    return result.adapters


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_adapter_changes_the_vectors_and_round_trips_exactly(trained, embedder_path, tmp_path):
    base = Embedder(embedder_path).embed(ITEMS)
    adapted = Embedder(embedder_path, adapter=trained["embedder"]).embed(ITEMS)
    assert _cos(base, adapted).max() < 0.999  # the adapter does something
    copy = shutil.copytree(trained["embedder"], tmp_path / "copy")
    again = Embedder(embedder_path, adapter=copy).embed(ITEMS)
    assert np.array_equal(adapted, again)


def test_saved_adapter_equals_the_trained_model(tmp_path, embedder_path):
    """The vectors of the model in training (LoRA layers beside the weights) and of the saved
    adapter loaded back (merged into the weights) agree to float32 rounding."""
    import torch

    from vlsearch.tune.loop import add_lora

    live = Embedder(embedder_path, batch_invariant=False)
    peft_model = add_lora(live.model, TrainOptions(rank=8, alpha=16))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)  # as if trained: B starts at zero
    peft_model.eval()
    expected = live.embed(ITEMS)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    loaded = Embedder(embedder_path, adapter=tmp_path / "adapter").embed(ITEMS)
    assert _cos(expected, Embedder(embedder_path).embed(ITEMS)).max() < 0.999
    assert np.abs(expected - loaded).max() < 1e-5


def test_inference_with_an_adapter_is_batch_invariant(trained, embedder_path, reranker_path, row_count_sensitive_blas):
    """Bit for bit, also under a BLAS that rounds each call by its row count (``test_invariance``)."""
    embedder = Embedder(embedder_path, adapter=trained["embedder"])
    together = embedder.embed(ITEMS)
    alone = np.concatenate([embedder.embed([item]) for item in ITEMS])
    assert np.array_equal(together, alone)
    reranker = Reranker(reranker_path, adapter=trained["reranker"])
    scores = reranker.score("a red picture", ITEMS)
    assert scores == [reranker.score("a red picture", [item])[0] for item in ITEMS]
    assert scores != Reranker(reranker_path).score("a red picture", ITEMS)


def test_merged_checkpoint_equals_base_plus_adapter(trained, embedder_path, reranker_path, tmp_path):
    merged = merge_checkpoint(embedder_path, trained["embedder"], tmp_path / "embedder-merged")
    with_adapter = Embedder(embedder_path, adapter=trained["embedder"])
    from_merged = load_embedder(str(merged))  # loads like any checkpoint
    assert _cos(with_adapter.embed(ITEMS), from_merged.embed(ITEMS)).min() >= 0.9999
    assert from_merged.fingerprint == with_adapter.fingerprint != Embedder(embedder_path).fingerprint
    merged_rr = merge_checkpoint(reranker_path, trained["reranker"], tmp_path / "reranker-merged")
    a = Reranker(reranker_path, adapter=trained["reranker"]).score("a red picture", ITEMS)
    b = Reranker(merged_rr).score("a red picture", ITEMS)
    assert np.abs(np.array(a) - np.array(b)).max() <= 1e-4


def test_cli_merge_writes_a_checkpoint_from_the_recorded_base(trained, embedder_path, tmp_path):
    assert main(["tune", "--merge", "--adapter", str(trained["embedder"]), "-o", str(tmp_path / "m"), "--quiet"]) == 0
    assert Embedder(tmp_path / "m").fingerprint == Embedder(embedder_path, adapter=trained["embedder"]).fingerprint


def test_an_adapter_for_another_base_model_is_refused(trained, embedder_path, reranker_path, tmp_path):
    with pytest.raises(ModelError) as info:
        Reranker(reranker_path, adapter=trained["embedder"])
    message = str(info.value)
    assert f"was trained on {embedder_path}" in message and f"{reranker_path} has other weights" in message
    with pytest.raises(ModelError, match="was trained on"):
        merge_checkpoint(reranker_path, trained["embedder"], tmp_path / "x")
    with pytest.raises(ModelError, match="not an adapter directory"):
        Embedder(embedder_path, adapter=tmp_path)
    with pytest.raises(InputError, match="not to a model server"):
        load_embedder("http://127.0.0.1:9/", adapter=str(trained["embedder"]))


def test_collections_check_the_adapter(home, trained, embedder_path, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        gradient_image(80, 60, seed=i).save(images / f"{i}.png")
    base = Collection("base", model=str(embedder_path))
    base.add([images], workers=0)
    # built without the adapter: a query model with it is refused, with the re-index hint
    with pytest.raises(StoreError, match=r"built with .* \(weights .*\); .* with adapter .* has other weights .*"
                                         r"index into a new collection"):
        Collection("base", model=str(embedder_path), adapter=trained["embedder"]).search("red", rerank=False)
    code = main(["search", "red", "-c", "base", "--model", str(embedder_path), "--adapter", str(trained["embedder"]),
                 "--no-rerank"])
    assert code == 1 and "has other weights" in capsys.readouterr().err
    # built with it: recorded, used by later opens, and a merged checkpoint is the same model
    assert main(["index", str(images), "-c", "tuned", "--model", str(embedder_path), "--adapter",
                 str(trained["embedder"]), "--workers", "0", "--quiet"]) == 0
    tuned = Collection("tuned")
    assert tuned.meta["adapter"] == str(Path(trained["embedder"]).resolve())
    assert len(tuned.search("red", rerank=False, top_k=2)) == 2
    merged = merge_checkpoint(embedder_path, trained["embedder"], tmp_path / "merged")
    assert len(Collection("tuned", model=str(merged)).search("red", rerank=False, top_k=2)) == 2
    with pytest.raises(StoreError, match="has other weights"):
        Collection("base", model=str(merged)).search("red", rerank=False)


def test_server_and_eval_take_adapters(trained, embedder_path):
    from vlsearch.server.config import ServerConfig
    from vlsearch.server.runtime import Models

    models = Models(ServerConfig(model=str(embedder_path), adapter=str(trained["embedder"]), no_reranker=True))
    try:
        assert models.fingerprint == Embedder(embedder_path, adapter=trained["embedder"]).fingerprint
        assert models.adapter == str(trained["embedder"])
    finally:
        models.close()
    args = build_parser().parse_args(["serve", "--adapter", "a", "--reranker-adapter", "b"])
    assert (args.adapter, args.reranker_adapter) == ("a", "b")
    args = build_parser().parse_args(["eval", "x", "--adapter", "a", "--reranker-adapter", "b"])
    assert (args.adapter, args.reranker_adapter) == ("a", "b")
