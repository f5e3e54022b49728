"""LanceStore: upsert, delete, filters, exact and ANN search, files, meta, durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vlsearch.errors import InputError, StoreError
from vlsearch.stores import FileEntry, Hit, Record, VectorStore, make_record_id, open_store
from vlsearch.stores.lancedb import LanceStore

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_records(n: int, dim: int = DIM, seed: int = 0) -> list[Record]:
    """n records over 4 sources: pdf pages, video spans, images, text chunks in turn."""
    vecs = unit(np.random.default_rng(seed), n, dim)
    out = []
    for i, v in enumerate(vecs):
        kind = ("pdf_page", "video", "image", "text")[i % 4]
        out.append(Record(
            id=f"r{i}", source=f"src{i % 4}", content_hash=f"h{i % 4}", modality=kind,
            page=i // 4 + 1 if kind == "pdf_page" else None,
            start=float(i) if kind == "video" else None, end=float(i) + 5.0 if kind == "video" else None,
            chunk=i if kind == "text" else None, text=f"text {i}",
            thumbnail=b"\xff\xd8jpeg" if kind == "image" else None, metadata={"i": i, "tag": ["a", "b"]},
            vector=v,
        ))
    return out


@pytest.fixture
def store(tmp_path: Path) -> LanceStore:
    return LanceStore(tmp_path / "idx")


def test_protocol_and_open_store(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "a"), dim=DIM)
    assert isinstance(s, LanceStore) and isinstance(s, VectorStore) and s.dim == DIM
    assert s.count() == 0 and s.search(np.ones(DIM), 3) == [] and s.get(["x"]) == [] and s.files() == {}
    with pytest.raises(StoreError, match="Milvus"):
        open_store("milvus://localhost:19530/db")


def test_upsert_is_idempotent(store: LanceStore) -> None:
    recs = make_records(40)
    store.add(recs)
    store.add(recs)
    store.add(recs[:10] + recs[:10])  # duplicates inside one batch too
    assert store.count() == 40
    changed = Record(**{**recs[3].__dict__, "text": "new", "vector": -recs[3].vector})
    store.add([changed])
    assert store.count() == 40
    got = store.get(["r3"])[0]
    assert got.text == "new"
    np.testing.assert_allclose(got.vector, -recs[3].vector, rtol=1e-6)


def test_get_round_trip_and_order(store: LanceStore) -> None:
    recs = make_records(12)
    store.add(recs)
    got = store.get(["r5", "missing", "r0", "r5"])
    assert [r.id for r in got] == ["r5", "r0", "r5"]
    r0 = got[1]
    assert r0.modality == "pdf_page" and r0.page == 1 and r0.start is None and r0.metadata == {"i": 0, "tag": ["a", "b"]}
    assert r0.vector is not None and r0.vector.dtype == np.float32 and r0.vector.shape == (DIM,)
    np.testing.assert_array_equal(r0.vector, recs[0].vector)
    assert got[0].start == 5.0 and got[0].end == 10.0 and got[0].page is None
    r2 = store.get(["r2"])[0]
    assert r2.thumbnail == b"\xff\xd8jpeg" and r2.text == "text 2"


def test_delete_by_ids_and_sources(store: LanceStore) -> None:
    store.add(make_records(40))
    assert store.delete(ids=["r0", "r1", "nope"]) == 2
    assert store.count() == 38
    assert store.delete(sources=["src2"]) == 10
    assert store.count() == 28
    assert store.delete(ids=["r3"], sources=["src3"]) == 10  # r3 is in src3: counted once
    assert store.delete() == 0 and store.delete(ids=[], sources=[]) == 0
    assert {r.source for r in store.get([f"r{i}" for i in range(40)])} == {"src0", "src1"}
    assert store.delete(ids=["it's"]) == 0  # quotes are escaped


def test_delete_keep_hash_drops_stale_rows_only(store: LanceStore) -> None:
    old = [Record(id=f"p{i}", source="a.pdf", content_hash="v1", modality="pdf_page", page=i, vector=v)
           for i, v in enumerate(unit(np.random.default_rng(0), 5), 1)]
    store.add(old + make_records(4))
    new = [Record(**{**r.__dict__, "content_hash": "v2"}) for r in old[:3]]  # the file shrank to 3 pages
    store.add(new)
    assert store.delete(sources=["a.pdf"], keep_hash="v2") == 2
    assert sorted(r.id for r in store.get([f"p{i}" for i in range(1, 6)])) == ["p1", "p2", "p3"]
    assert store.count() == 7


def test_search_matches_numpy_exact(store: LanceStore) -> None:
    recs = make_records(300, seed=1)
    store.add(recs)
    mat = np.stack([r.vector for r in recs])
    for q in unit(np.random.default_rng(7), 5):
        sims = mat @ q
        expected = np.argsort(-sims)[:10]
        hits = store.search(q * 3.0, 10)  # cosine: scale does not matter
        assert all(isinstance(h, Hit) and h.record.vector is None for h in hits)
        assert [h.record.id for h in hits] == [f"r{i}" for i in expected]
        np.testing.assert_allclose([h.score for h in hits], sims[expected], atol=1e-5)
        again = store.search(q, 10, exact=True)
        assert [h.record for h in again] == [h.record for h in hits]


def test_filters(store: LanceStore) -> None:
    store.add(make_records(80))
    q = unit(np.random.default_rng(3), 1)[0]
    pages = store.search(q, 100, where="modality = 'pdf_page' AND page <= 3")
    assert sorted(h.record.page for h in pages) == [1, 2, 3]
    spans = store.search(q, 100, where="modality = 'video' AND start >= 20 AND end <= 45")
    assert sorted(h.record.start for h in spans) == [21.0, 25.0, 29.0, 33.0, 37.0]
    assert all(h.record.source == "src2" for h in store.search(q, 5, where="source = 'src2'"))
    assert len(store.search(q, 3, where="modality = 'text'")) == 3
    for bad in ("page <== 3", "no_such_column = 1"):
        with pytest.raises(InputError, match="invalid filter"):
            store.search(q, 5, where=bad)


def test_refusals(tmp_path: Path, store: LanceStore) -> None:
    recs = make_records(4)
    store.add(recs)
    with pytest.raises(StoreError, match="dim 8"):
        store.add(make_records(1, dim=8))
    bad = Record(**{**recs[0].__dict__, "id": "nan1", "vector": np.full(DIM, np.nan, np.float32)})
    with pytest.raises(InputError, match="nan1"):
        store.add([bad])
    inf = Record(**{**recs[0].__dict__, "id": "inf1", "vector": np.r_[np.inf, np.ones(DIM - 1)]})
    with pytest.raises(InputError, match="inf1"):
        store.add([recs[1], inf])
    with pytest.raises(InputError, match="shape"):
        store.add([Record(**{**recs[0].__dict__, "id": "m", "vector": np.ones((2, DIM))})])
    with pytest.raises(InputError, match="modality"):
        store.add([Record(**{**recs[0].__dict__, "modality": "audio"})])
    with pytest.raises(InputError, match="JSON"):
        store.add([Record(**{**recs[0].__dict__, "metadata": {"x": object()}})])
    with pytest.raises(InputError):
        store.search(np.full(DIM, np.nan), 3)
    with pytest.raises(InputError):
        store.search(np.ones(DIM), 0)
    assert store.count() == 4  # nothing partial was written
    with pytest.raises(StoreError, match="16-d"):
        LanceStore(store.path, dim=32)
    assert LanceStore(store.path).dim == DIM  # read from the schema


def test_files_round_trip(store: LanceStore) -> None:
    a = FileEntry("docs/a.pdf", "abc", items=12, status="done", mtime=1700000000.5, size=1234)
    b = FileEntry("docs/b.mp4", "def", items=0, status="failed", error="cannot decode: moov atom not found")
    store.mark_files([a, b])
    store.mark_files([FileEntry("docs/a.pdf", "abd", items=13, status="done")])
    files = LanceStore(store.path).files()
    assert set(files) == {"docs/a.pdf", "docs/b.mp4"}
    assert files["docs/b.mp4"] == b
    assert files["docs/a.pdf"].content_hash == "abd" and files["docs/a.pdf"].items == 13
    assert store.forget_files(["docs/a.pdf", "zzz"]) == 1
    assert set(store.files()) == {"docs/b.mp4"}
    with pytest.raises(InputError, match="status"):
        store.mark_files([FileEntry("c", "h", 1, "pending")])  # type: ignore[arg-type]


def test_meta_persists(tmp_path: Path, store: LanceStore) -> None:
    assert store.read_meta() == {}
    meta = {"model": "Qwen/Qwen3-VL-Embedding-2B", "dim": DIM, "instruction": "Represent the user's input."}
    store.write_meta(meta)
    store.add(make_records(2))
    again = LanceStore(store.path)
    assert again.read_meta() == meta and again.count() == 2
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(StoreError, match="dim"):
        again.write_meta({"dim": 4})


def test_a_second_handle_sees_new_commits(store: LanceStore) -> None:
    store.add(make_records(3))
    reader = LanceStore(store.path)
    store.add(make_records(8))
    store.mark_files([FileEntry("x", "h", 8, "done")])
    assert reader.count() == 8 and set(reader.files()) == {"x"}


def test_record_ids_are_stable() -> None:
    a = make_record_id("v.mp4", "video", start=1.0, end=3.5)
    assert a == make_record_id("v.mp4", "video", start=1.0, end=3.5)
    assert a != make_record_id("v.mp4", "video", start=1.0, end=4.0)
    assert make_record_id("a.pdf", "pdf_page", page=1) != make_record_id("a.pdf", "pdf_page", page=2)


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from vlsearch.stores import Record, open_store
    store = open_store(sys.argv[1], dim=32)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    recs = [Record(id=f"r{i}", source=f"s{i % 7}", content_hash="h", modality="text", vector=v)
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
    store.add([Record(id=f"r{i}", source=f"s{i % 7}", content_hash="h", modality="text", vector=v)
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
    store.add([Record(id=str(i), source="s", content_hash="h", modality="image", vector=v) for i, v in enumerate(data)])
    store.optimize()
    assert any(ix.columns == ["vector"] for ix in store._records.list_indices())  # type: ignore[union-attr]
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
