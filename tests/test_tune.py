"""``vlsearch tune`` on tiny checkpoints: data checks, a run end to end (training, report, merge),
resume from a checkpoint (also after a real SIGKILL), and the gain on a task the base model cannot do."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tune_data import colour_task
from vlsearch.cli import main
from vlsearch.errors import InputError
from vlsearch.tune import TrainOptions, TuneOptions, from_pairs, from_task, tune
from vlsearch.tune.data import checked, split
from vlsearch.tune.loop import read_log

pytest.importorskip("peft")

FAST = ["--batch-size", "4", "--negatives", "1", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """The whole colour task: 8 colours x 4 images, 64 queries."""
    root = tmp_path_factory.mktemp("colours")
    colour_task(root)
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A small colour task for quick runs: 4 colours x 2 images, 20 queries."""
    root = tmp_path_factory.mktemp("small")
    colour_task(root, colours=4, images_per_colour=2, templates=5)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, small, embedder_path, reranker_path):
    """A short run of the CLI with everything on: both models, evaluation, merge, progress bars."""
    out = tmp_path_factory.mktemp("tuned") / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["tune", str(small), "-o", str(out), "--model", str(embedder_path), "--reranker",
                     str(reranker_path), "--max-steps", "4", "--save-every", "2", *FAST, "--eval", "--rerank-top", "5",
                     "--merge", "--progress"])
    return {"out": out, "code": code, "stderr": err.getvalue()}


def _beir(root: Path, queries: dict[str, str], qrels: list[str], docs: tuple[str, ...] = ("d1", "d2", "d3")) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": f"document {d}"}) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return root


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("case, expected", [
    ("unknown_query", r"judge 6 queries that are not in the queries: 'x0', 'x1', 'x2', 'x3', 'x4' \.\.\. \(6 in all\)"),
    ("unknown_doc", r"name 2 documents that are not in the corpus: 'nope', 'zzz'"),
    ("no_positive", r"1 judged queries have no positive document \(grade >= 1\): 'q2'"),
    ("empty_query", r"1 queries are empty \(no text, image or video\): 'q3'"),
])
def test_bad_judgments_are_refused_listing_the_first_few(tmp_path, case, expected):
    queries = {"q1": "first", "q2": "second", "q3": "  "}
    qrels = ["q1\td1\t1", "q2\td2\t1"]
    if case == "unknown_query":
        qrels += [f"x{i}\td1\t1" for i in range(6)]
    elif case == "unknown_doc":
        qrels += ["q1\tzzz\t1", "q2\tnope\t1"]
    elif case == "no_positive":
        qrels = ["q1\td1\t1", "q2\td2\t0"]
    elif case == "empty_query":
        qrels += ["q3\td3\t1"]
    if case != "empty_query":
        queries.pop("q3")
    data = from_task(_beir(tmp_path / "task", queries, qrels))
    with pytest.raises(InputError, match=expected):
        checked(data)


def test_bad_judgments_through_the_cli(tmp_path, capsys, embedder_path):
    task = _beir(tmp_path / "task", {"q1": "a", "q2": "b"}, ["q1\td1\t1", "q2\tmissing\t1"])
    code = main(["tune", str(task), "-o", str(tmp_path / "out"), "--model", str(embedder_path), "--only", "embedder"])
    assert code == 2
    assert "'missing'" in capsys.readouterr().err


def test_not_enough_queries_for_a_validation_split(tmp_path):
    task = from_task(_beir(tmp_path / "task", {"q1": "a", "q2": "b"}, ["q1\td1\t1", "q2\td2\t1"])).task
    with pytest.raises(InputError, match=r"2 queries with positives are not enough for a validation split of 20%: "
                                         r"1 held out would leave 1 to train on \(at least 2 needed\)"):
        split(task, 0.2)
    assert split(task, 0.0) == (["q1", "q2"], [])


def test_pairs_in_python(tmp_path, embedder_path):
    """Pairs become a task (equal documents merged); a short embedder run trains on them."""
    pairs = [(f"query {i}", {"text": f"answer {i % 3}"}) for i in range(6)]
    data = from_pairs(pairs)
    assert len(data.task.corpus) == 3 and data.task.qrels["q4"] == {"d1": 1}
    result = tune(data, TuneOptions(tmp_path / "out", model=str(embedder_path), stages=("embedder",), val_fraction=0,
                                    train=TrainOptions(max_steps=2, batch_size=3, negatives=1), quiet=True))
    assert (result.adapters["embedder"] / "adapter_model.safetensors").is_file()
    assert [e["step"] for e in read_log(tmp_path / "out" / "checkpoints" / "embedder" / "log.jsonl")
            if "loss" in e] == [1, 2]


def test_training_on_a_collection(tmp_path, monkeypatch, small, embedder_path, capsys):
    """Qrels name a collection's items by source path (relative to the qrels file) or record id;
    negatives come from its index; the held-out evaluation ranks against the pool of each query's
    nearest items."""
    from vlsearch.collection import Collection
    from vlsearch.locator import Locator
    from vlsearch.tune import from_collection

    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    Collection("pics", model=str(embedder_path)).add([small / "images"], workers=0)
    queries = [json.loads(line)["_id"] for line in (small / "queries.jsonl").read_text().splitlines()]
    red0 = Locator("image").record_id(str((small / "images" / "red-0.png").resolve()))
    # relative to the qrels file, absolute, and one record id
    relative = os.path.relpath(small / "images", tmp_path)
    lines = [f"{q}\t{relative if i % 2 else small / 'images'}/{q.rsplit('-', 1)[0]}-1.png\t1"
             for i, q in enumerate(queries)] + [f"{queries[0]}\t{red0}\t1"]
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("\n".join(lines) + "\n")
    data = from_collection(Collection("pics", create=False), small / "queries.jsonl", qrels)
    assert len(data.task.corpus) == 5 and red0 in data.task.corpus  # 4 colours' "-1" images and red-0
    assert all(len(d) == 32 for docs in data.task.qrels.values() for d in docs)  # record ids
    (tmp_path / "bad.tsv").write_text("red-0\timages/nope.png\t1\nred-1\tdeadbeef\t1\n")
    with pytest.raises(InputError, match=r"2 judged documents are not in collection 'pics': 'deadbeef', "
                                         r"'images/nope.png'"):
        from_collection(Collection("pics", create=False), small / "queries.jsonl", tmp_path / "bad.tsv")
    code = main(["tune", "-c", "pics", "--queries", str(small / "queries.jsonl"), "--qrels", str(qrels), "-o",
                 str(tmp_path / "out"), "--only", "embedder", "--max-steps", "2", *FAST, "--eval", "--quiet"])
    assert code == 0, capsys.readouterr().err
    after = json.loads((tmp_path / "out" / "eval-after" / "results.json").read_text())
    task = next(iter(after["tasks"].values()))
    assert task["queries"] == 4 and task["documents"] == 8  # the pool: every image is among the top 100
    assert set(task["runs"]) == {"d64-float32"}


# ---------------------------------------------------------------- a run end to end

def test_cli_run_writes_adapters_report_and_merged_checkpoints(run, embedder_path, reranker_path):
    out = run["out"]
    assert run["code"] == 0, run["stderr"]
    for stage, base in (("embedder", embedder_path), ("reranker", reranker_path)):
        meta = json.loads((out / f"{stage}-adapter" / "vlsearch-adapter.json").read_text())
        assert meta["role"] == stage and meta["base_model"] == str(base) and meta["steps"] == 4
        assert meta["training"]["rank"] == 32 and meta["training"]["alpha"] == 32
        log = read_log(out / "checkpoints" / stage / "log.jsonl")
        assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]
        assert [e["step"] for e in log if "val_loss" in e] == [2, 4]
        assert all(e["lr"] > 0 for e in log if "lr" in e)
        assert sorted(p.name for p in (out / "checkpoints" / stage).glob("step-*")) == ["step-0000002", "step-0000004"]
        assert (out / f"{stage}-merged" / "config.json").is_file()
    # the progress bar shows the loss and the learning rate
    assert "tune embedder" in run["stderr"] and "loss=" in run["stderr"] and "lr=" in run["stderr"]
    report = (out / "report.md").read_text()
    for row in ("| d64-float32 | ndcg@10 |", "| d64-float32 | recall@10 |", "| d64-float32 | recall@100 |",
                "| d64-float32+rerank | ndcg@10 |"):
        assert row in report
    before = json.loads((out / "eval-before" / "results.json").read_text())
    after = json.loads((out / "eval-after" / "results.json").read_text())
    assert before["adapter"] is None and after["adapter"] == str(out / "embedder-adapter")
    assert after["reranker_adapter"] == str(out / "reranker-adapter")
    held_out = json.loads((out / "state.json").read_text())["settings"]["split"]["val"]
    task = next(iter(after["tasks"].values()))
    assert set(task["runs"]) == {"d64-float32", "d64-float32+rerank"}
    assert task["queries"] == len(held_out) == 4 and task["documents"] == 8
    trained = json.loads((out / "state.json").read_text())["settings"]["split"]["train"]
    assert not set(trained) & set(held_out) and len(trained) == 16


def test_a_finished_run_is_not_trained_again_and_other_settings_are_refused(run, small, embedder_path,
                                                                         reranker_path, capsys):
    out = run["out"]
    stamp = (out / "embedder-adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    args = ["tune", str(small), "-o", str(out), "--model", str(embedder_path), "--reranker", str(reranker_path),
            "--max-steps", "4", "--save-every", "2", *FAST, "--eval", "--rerank-top", "5"]
    assert main(args) == 0
    assert "trained already" in capsys.readouterr().err
    assert (out / "embedder-adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert main([*args[:-2], "--rerank-top", "5", "--lr", "5e-4"]) == 2
    assert "holds a tuning run with other settings" in capsys.readouterr().err


def test_resume_continues_from_the_last_checkpoint(tmp_path, small, embedder_path):
    """A run that lost everything after its step-2 checkpoint resumes there and ends with the adapter
    of a run that was never interrupted (same batches, optimiser state and RNG)."""
    args = ["tune", str(small), "--model", str(embedder_path), "--only", "embedder", "--max-steps", "4",
            "--save-every", "2", *FAST, "--quiet"]
    assert main([*args, "-o", str(tmp_path / "whole")]) == 0
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    # what a kill right after the step-2 checkpoint leaves: no step-4 checkpoint, no adapter, stage not done
    shutil.rmtree(cut / "checkpoints" / "embedder" / "step-0000004")
    shutil.rmtree(cut / "embedder-adapter")
    state = json.loads((cut / "state.json").read_text())
    state["done"] = {}
    (cut / "state.json").write_text(json.dumps(state))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main([*args[:-1], "-o", str(cut)]) == 0
    assert "resuming from the checkpoint of step 2 of 4" in err.getvalue()
    log = read_log(cut / "checkpoints" / "embedder" / "log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]
    whole = load_file(str(tmp_path / "whole" / "embedder-adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(cut / "embedder-adapter" / "adapter_model.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all((whole[k] == resumed[k]).all() for k in whole)


def test_loss_falls_in_a_few_steps(tmp_path, small, embedder_path):
    result = tune(from_task(small), TuneOptions(
        tmp_path / "out", model=str(embedder_path), stages=("embedder",), quiet=True,
        train=TrainOptions(max_steps=12, batch_size=8, negatives=1, lr=2e-3, warmup=0.0)))
    losses = [e["loss"] for e in result.training["embedder"].history if "loss" in e]
    assert len(losses) == 12
    assert sum(losses[-4:]) / 4 < 0.75 * sum(losses[:4]) / 4, losses


def test_matryoshka_sums_the_loss_over_dimensions(small, embedder_path):
    """The loss with dimensions (16, full) is the loss at 16 plus the loss at 64, on the same batch."""
    import numpy as np
    import torch

    from vlsearch import Embedder
    from vlsearch.tune.objectives import EmbedderObjective

    data, _ = checked(from_task(small))
    train_q, val_q = split(data.task, 0.2)
    negatives = {q: [d for d in data.task.corpus if not d.startswith(data.task.queries[q]["text"].split()[-1])][:5]
                 for q in train_q}
    losses = {}
    for dims in ((16, 0), (16,), (64,)):
        objective = EmbedderObjective(Embedder(embedder_path, batch_invariant=False), data.task, train_q, val_q,
                                      negatives, TrainOptions(matryoshka=dims, negatives=2))
        plan = objective.plan("train", list(range(6)), np.random.default_rng(3))
        with torch.no_grad():
            losses[dims] = objective.loss(plan).item()
    assert losses[(16, 0)] == pytest.approx(losses[(16,)] + losses[(64,)], rel=1e-5)
    assert losses[(16,)] != pytest.approx(losses[(64,)], rel=1e-3)


# ---------------------------------------------------------------- slow: a real kill, a real gain

@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, colours, embedder_path):
    """Kill -9 a training process after a checkpoint; the same command continues from it."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vlsearch", "tune", str(colours), "-o", str(out), "--model", str(embedder_path),
               "--only", "embedder", "--max-steps", "40", "--save-every", "5", *FAST, "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = out / "checkpoints" / "embedder"
    deadline = time.monotonic() + 240
    while not any(folder.glob("step-0000010")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not (out / "embedder-adapter").exists()
    killed_at = max(int(p.name[5:]) for p in folder.glob("step-*"))
    assert 10 <= killed_at < 40
    finished = subprocess.run([c for c in command if c != "--quiet"], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming from the checkpoint of step {killed_at} of 40" in finished.stderr
    log = read_log(folder / "log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 41))
    assert (out / "embedder-adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_tuning_raises_held_out_recall(tmp_path, colours, embedder_path, reranker_path):
    """Colour names against images of the colour: the base model is near chance on the held-out
    queries; after LoRA the training loss has collapsed and held-out Recall@10 rises clearly."""
    from vlsearch.tune.report import metrics_of

    result = tune(from_task(colours), TuneOptions(
        tmp_path / "out", model=str(embedder_path), reranker=str(reranker_path), evaluate=True, rerank_top=10,
        quiet=True, train=TrainOptions(max_steps=80, batch_size=8, negatives=1, lr=2e-3, save_every=40),
        reranker_train=TrainOptions(max_steps=40, batch_size=8, negatives=1, lr=2e-3, save_every=40)))
    losses = [e["loss"] for e in result.training["embedder"].history if "loss" in e]
    assert sum(losses[-5:]) / 5 < 0.2 * sum(losses[:5]) / 5
    before, after = metrics_of(result.before)["d64-float32"], metrics_of(result.after)["d64-float32"]
    assert after["recall@10"] >= before["recall@10"] + 0.25, (before, after)
    assert after["ndcg@10"] >= before["ndcg@10"] + 0.2, (before, after)
    reranker_losses = [e["loss"] for e in result.training["reranker"].history if "loss" in e]
    assert sum(reranker_losses[-5:]) < sum(reranker_losses[:5])
