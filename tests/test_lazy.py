"""Work only when there is work: a re-run with nothing to embed plans first and loads no model (nor torch);
``info``, ``collections``, ``rm`` and a lexical search without reranking import no torch, a dense one
loads no reranker; a watched file saved again or copied back embeds nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vlsearch.cli import main
from vlsearch.collection import Collection
from vlsearch.testing import build_checkpoint, gradient_image

#: runs vlsearch commands in one process, then prints each exit status and whether torch was imported
COMMANDS = """
import json, sys
from vlsearch.cli import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


@pytest.fixture()
def env(tmp_path, monkeypatch, embedder_path):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLSEARCH_EMBEDDER", str(embedder_path))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"note{i}.txt").write_text(f"note {i} about glaciers and penguins " * 5)
    gradient_image(96, 64, seed=1).save(corpus / "pic.png")
    return corpus


def commands(*argvs: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", COMMANDS, json.dumps(argvs)], capture_output=True, text=True,
                          env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def test_a_noop_rerun_imports_no_torch_and_still_refuses_another_model(env, tmp_path):
    assert main(["index", str(env), "-c", "lazy", "--quiet", "--workers", "0"]) == 0
    for path in env.iterdir():  # touched: size and time differ, content does not
        os.utime(path, (time.time() + 5, time.time() + 5))
    other = build_checkpoint(tmp_path / "other", seed=3)
    out = commands(["index", str(env), "-c", "lazy"], ["index", str(env), "-c", "lazy"], ["info", "lazy"],
                   ["collections"], ["index", str(env), "-c", "lazy", "--model", str(other)],
                   ["search", "penguins", "-c", "lazy", "--no-rerank", "--mode", "lexical"], ["rm", "lazy"])
    assert out["codes"] == [0, 0, 0, 0, 1, 0, 0], out["stderr"]
    assert not out["torch"], "a run with nothing to embed imported torch"
    assert "0 items embedded" in out["stderr"] and "4 unchanged" in out["stderr"]
    assert "has other weights" in out["stderr"]  # read from the checkpoint's files, not from a loaded model


def test_a_rerun_with_work_embeds_as_a_fresh_run(env, tmp_path, embedder_path):
    first = Collection("again", model=str(embedder_path))
    first.add([env], workers=0)
    (env / "note1.txt").write_text("a changed note about deserts")
    again = Collection("again", model=str(embedder_path))
    report = again.add([env], workers=0)
    assert (report.changed, report.unchanged) == (1, 3) and report.items == 1 and again._embedder is not None
    clean = Collection("clean", model=str(embedder_path))
    clean.add([env], workers=0)
    rows, fresh = _vectors(again), _vectors(clean)
    assert rows.keys() == fresh.keys() and len(rows) == 4
    for key, vector in fresh.items():
        np.testing.assert_allclose(rows[key], vector, atol=1e-6)


def _vectors(collection: Collection) -> dict[str, np.ndarray]:
    hits = collection.store.search(np.ones(collection.dim, np.float32), k=100)
    return {r.id: r.vector for r in collection.records([h.record.id for h in hits])}


def test_search_without_rerank_loads_no_reranker(env, tmp_path, embedder_path):
    c = Collection("plain", model=str(embedder_path), reranker=str(tmp_path / "no-such-reranker"))
    c.add([env], workers=0)
    assert c.search("penguins", rerank=False, top_k=2) and c._reranker is None


def test_a_watched_file_saved_again_or_copied_back_loads_nothing(env, tmp_path, embedder_path):
    pytest.importorskip("watchdog")
    from test_watch import wait_for
    from vlsearch.watch import Watcher, apply_changes

    Collection("watched", model=str(embedder_path)).add([env], workers=0)
    c = Collection("watched", model=str(embedder_path))  # a new process's view: no model loaded
    reports = []
    watcher = Watcher([env], lambda changes: reports.append(apply_changes(c, changes, workers=0)) or reports[-1],
                      debounce=0.3, poll=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: reports, what="the first pass")
        shutil.copy(env / "note0.txt", tmp_path / "copy.txt")
        (env / "note2.txt").write_bytes((env / "note2.txt").read_bytes())  # saved again, unchanged
        shutil.copy(tmp_path / "copy.txt", env / "note0.txt")  # copied back: new time, same content
        wait_for(lambda: sum(r.unchanged for r in reports[1:]) >= 2, what="the two events")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sum(r.items for r in reports) == 0 and c._embedder is None, [r.summary() for r in reports]

