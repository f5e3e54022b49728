"""LanceStore-only behaviour: durability under SIGKILL, ANN index and recall, on-disk layout.

The backend-independent contract (upsert, delete, filters, files, meta ...) is in
test_store_contract.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from vlsearch.locator import Locator
from vlsearch.stores import Record, VectorStore, open_store
from vlsearch.stores.lancedb import LanceStore

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_protocol_and_open_store(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "a"), dim=DIM)
    assert isinstance(s, LanceStore) and isinstance(s, VectorStore) and s.dim == DIM
    assert isinstance(open_store(f"file://{tmp_path / 'b'}"), LanceStore)


def test_meta_is_replaced_atomically(tmp_path: Path) -> None:
    store = LanceStore(tmp_path / "idx")
    store.write_meta({"model": "m", "dim": DIM})
    store.write_meta({"model": "m2", "dim": DIM})
    assert (store.path / "meta.json").is_file() and LanceStore(store.path).read_meta()["model"] == "m2"
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from vlsearch.locator import Locator
    from vlsearch.stores import Record, open_store
    store = open_store(sys.argv[1], dim=32)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    recs = [Record(id=f"r{i}", source=f"s{i % 7}", content_hash="h", locator=Locator("text"), vector=v)
            for i, v in enumerate(vecs)]
    print("ready", flush=True)
    while True:  # upsert overlapping batches forever, until killed
        for s in range(0, 2000, 150):
            store.add(recs[s:s + 300])
""")


def test_sigkill_mid_write_leaves_a_readable_store(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (path / "records.lance").exists():
            time.sleep(0.05)
        time.sleep(1.5)  # let it commit a few versions and be in the middle of another
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    store = LanceStore(path)
    assert store._records is not None and store._records.version >= 3  # killed while committing batches
    n = store.count()
    assert 0 < n <= 2000
    ids = [f"r{i}" for i in range(2000)]
    got = store.get(ids)
    assert len(got) == n and len({r.id for r in got}) == n  # no duplicate ids
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    store.add([Record(id=f"r{i}", source=f"s{i % 7}", content_hash="h", locator=Locator("text"), vector=v)
               for i, v in enumerate(vecs)])
    assert store.count() == 2000
    assert len(store.search(vecs[5], 5)) == 5 and store.search(vecs[5], 1)[0].record.id == "r5"


def test_ann_recall_after_optimize(tmp_path: Path) -> None:
    dim, n = 64, 20_000
    rng = np.random.default_rng(0)
    centroids = unit(rng, 200, dim)
    data = centroids[rng.integers(0, 200, n)] + 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    store = LanceStore(tmp_path / "ann", ann_threshold=10_000)
    store.add([Record(id=str(i), source="s", content_hash="h", locator=Locator("image"), vector=v) for i, v in enumerate(data)])
    store.optimize()
    assert any(ix.columns == ["vector"] for ix in store._records.list_indices())  # type: ignore[union-attr]
    built = json.loads((tmp_path / "ann" / "index.json").read_text())  # recorded with the collection
    assert built == {"type": "IVF_SQ", "rows": n, "partitions": round(n ** 0.5), "nprobes": 10, "refine_factor": 5}
    assert store._search_params(10) == {"nprobes": 10, "refine_factor": 5}
    store.nprobes = 3  # an explicit setting wins over the recorded one
    assert store._search_params(10)["nprobes"] == 3
    store.nprobes = None
    queries = centroids[rng.integers(0, 200, 30)] + 0.1 * rng.standard_normal((30, dim)).astype(np.float32)
    recalls = []
    for q in queries:
        truth = set(np.argsort(-(data @ q))[:10].tolist())
        ann = store.search(q, 10)  # above ann_threshold: the index
        recalls.append(len({int(h.record.id) for h in ann} & truth) / 10)
        assert {int(h.record.id) for h in store.search(q, 10, exact=True)} == truth
    assert np.mean(recalls) >= 0.9
    filtered = store.search(queries[0], 5, where="id < '5'")
    assert len(filtered) == 5 and all(h.record.id < "5" for h in filtered)


def test_the_index_grows_with_the_collection(tmp_path: Path) -> None:
    """New rows are folded into the index; once the table has doubled since the build, the index
    is trained again (more partitions), and index.json says so."""
    rng = np.random.default_rng(1)
    store = LanceStore(tmp_path / "grow", ann_threshold=1_000)

    def add(start: int, n: int) -> np.ndarray:
        data = unit(rng, n)
        store.add([Record(id=str(start + i), source="s", content_hash="h", locator=Locator("image"), vector=v)
                   for i, v in enumerate(data)])
        store.optimize()
        return data

    def built() -> dict:
        return json.loads((tmp_path / "grow" / "index.json").read_text())

    add(0, 1_200)
    assert built()["rows"] == 1_200 and built()["partitions"] == round(1_200 ** 0.5)
    late = add(1_200, 600)  # below double: folded into the same index
    assert built()["rows"] == 1_200
    assert store.search(late[7], 1)[0].record.id == str(1_200 + 7)  # a folded row is found through the index
    add(1_800, 700)  # 2,500 >= 2 x 1,200: trained again
    assert built()["rows"] == 2_500 and built()["partitions"] == 50
