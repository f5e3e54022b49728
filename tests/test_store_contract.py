"""The VectorStore contract, run against every backend: LanceDB and Milvus (Milvus Lite)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from vlsearch.errors import InputError, StoreError
from vlsearch.locator import Locator
from vlsearch.stores.filters import parse
from vlsearch.stores import (
    FileEntry,
    Hit,
    Record,
    VectorStore,
    open_store,
)
from vlsearch.stores.lancedb import LanceStore

DIM = 16
_names = itertools.count()

try:
    import milvus_lite  # noqa: F401

    from vlsearch.stores.milvus import MilvusStore
    MILVUS_SKIP = ""
except ImportError as e:
    MILVUS_SKIP = f"milvus-lite is not importable ({e}); pip install -e '.[milvus]'"


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
            id=f"r{i}", source=f"/data/{'docs' if i % 2 else 'media'}/src{i % 4}", content_hash=f"h{i % 4}",
            locator=Locator(kind, page=i // 4 + 1 if kind == "pdf_page" else None,
                            start=float(i) if kind == "video" else None,
                            end=float(i) + 5.0 if kind == "video" else None, chunk=i if kind == "text" else None),
            text=f"text {i}" + (" invoice" if i % 10 == 3 else ""),
            thumbnail=b"\xff\xd8jpeg" if kind == "image" else None, metadata={"i": i, "tag": ["a", "b"]},
            vector=v,
        ))
    return out


@pytest.fixture(scope="module")
def milvus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "contract.db"


Opener = Callable[..., VectorStore]


@pytest.fixture(params=["lancedb", "milvus-lite"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function opening (again) this test's store: ``opener(dim=None)``."""
    if request.param == "lancedb":
        yield lambda dim=None: LanceStore(tmp_path / "idx", dim=dim)
        return
    if MILVUS_SKIP:
        pytest.skip(MILVUS_SKIP)
    db, name = str(request.getfixturevalue("milvus_db")), f"t{next(_names)}"
    opened: list[MilvusStore] = []

    def open_milvus(dim: int | None = None) -> VectorStore:
        opened.append(MilvusStore(db, collection=name, dim=dim))
        return opened[-1]

    yield open_milvus
    opened[0].drop()
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Opener) -> VectorStore:
    return opener()


def ids(hits: list[Hit]) -> list[str]:
    return [h.record.id for h in hits]


def test_protocol_and_empty_store(opener: Opener) -> None:
    s = opener(dim=DIM)
    assert isinstance(s, VectorStore) and s.dim == DIM
    assert s.count() == 0 and s.search(np.ones(DIM), 3) == [] and s.get(["x"]) == [] and s.files() == {}
    assert s.delete(ids=["x"]) == 0 and s.forget_files(["x"]) == 0 and s.read_meta() == {}


def test_upsert_is_idempotent(store: VectorStore) -> None:
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


def test_get_round_trip_and_order(store: VectorStore) -> None:
    recs = make_records(12)
    store.add(recs)
    got = store.get(["r5", "missing", "r0", "r5"])
    assert [r.id for r in got] == ["r5", "r0", "r5"]
    r0 = got[1]
    assert r0.modality == "pdf_page" and r0.page == 1 and r0.start is None and r0.chunk is None
    assert r0.metadata == {"i": 0, "tag": ["a", "b"]} and r0.thumbnail is None
    assert r0.vector is not None and r0.vector.dtype == np.float32 and r0.vector.shape == (DIM,)
    np.testing.assert_array_equal(r0.vector, recs[0].vector)
    assert got[0].start == 5.0 and got[0].end == 10.0 and got[0].page is None
    r2 = store.get(["r2"])[0]
    assert r2.thumbnail == b"\xff\xd8jpeg" and r2.text == "text 2"
    assert store.get(["r3"])[0].chunk == 3


def test_delete_by_ids_and_sources(store: VectorStore) -> None:
    store.add(make_records(40))
    assert store.delete(ids=["r0", "r1", "nope"]) == 2
    assert store.count() == 38
    assert store.delete(sources=["/data/media/src2"]) == 10
    assert store.count() == 28
    assert store.delete(ids=["r3"], sources=["/data/docs/src3"]) == 10  # r3 is in src3: counted once
    assert store.delete() == 0 and store.delete(ids=[], sources=[]) == 0
    assert {r.source for r in store.get([f"r{i}" for i in range(40)])} == {"/data/media/src0", "/data/docs/src1"}
    assert store.delete(ids=["it's", 'say "x"']) == 0  # quotes are escaped


def test_delete_keep_hash_drops_stale_rows_only(store: VectorStore) -> None:
    old = [Record(id=f"p{i}", source="a.pdf", content_hash="v1", locator=Locator("pdf_page", page=i), vector=v)
           for i, v in enumerate(unit(np.random.default_rng(0), 5), 1)]
    store.add(old + make_records(4))
    new = [Record(**{**r.__dict__, "content_hash": "v2"}) for r in old[:3]]  # the file shrank to 3 pages
    store.add(new)
    assert store.delete(sources=["a.pdf"], keep_hash="v2") == 2
    assert sorted(r.id for r in store.get([f"p{i}" for i in range(1, 6)])) == ["p1", "p2", "p3"]
    assert store.count() == 7


def test_search_matches_numpy_exact(store: VectorStore) -> None:
    recs = make_records(300, seed=1)
    store.add(recs)
    mat = np.stack([r.vector for r in recs])
    for q in unit(np.random.default_rng(7), 5):
        sims = mat @ q
        expected = np.argsort(-sims)[:10]
        hits = store.search(q * 3.0, 10)  # cosine: scale does not matter
        assert all(isinstance(h, Hit) and h.record.vector is None for h in hits)
        assert ids(hits) == [f"r{i}" for i in expected]
        np.testing.assert_allclose([h.score for h in hits], sims[expected], atol=1e-5)
        again = store.search(q, 10, exact=True)
        assert [h.record for h in again] == [h.record for h in hits]
    assert store.search(recs[7].vector, 1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_filters(store: VectorStore) -> None:
    store.add(make_records(80))
    q = unit(np.random.default_rng(3), 1)[0]
    pages = store.search(q, 100, where="modality = 'pdf_page' AND page <= 3")
    assert sorted(h.record.page for h in pages) == [1, 2, 3]
    spans = store.search(q, 100, where="modality = 'video' AND start >= 20 AND end <= 45")
    assert sorted(h.record.start for h in spans) == [21.0, 25.0, 29.0, 33.0, 37.0]
    assert all(h.record.source.endswith("src2") for h in store.search(q, 5, where="source = '/data/media/src2'"))
    assert len(store.search(q, 3, where="modality = 'text'")) == 3
    assert sorted(ids(store.search(q, 100, where="text LIKE '%invoice%'"))) == sorted(
        f"r{i}" for i in range(80) if i % 10 == 3)
    docs = store.search(q, 100, where="source LIKE '%/docs/%' AND (modality = 'video' OR page IS NOT NULL)")
    assert len(docs) == 20 and {h.record.modality for h in docs} == {"video"}
    assert {h.record.modality for h in store.search(q, 100, where="page IS NULL AND chunk IS NULL")} == {"video", "image"}
    assert sorted(ids(store.search(q, 10, where="id IN ('r1', 'r2', 'nope')"))) == ["r1", "r2"]
    assert len(store.search(q, 100, where="NOT (modality = 'text') AND modality <> 'image'")) == 40
    for bad in ("page <== 3", "no_such_column = 1"):
        with pytest.raises(InputError, match="invalid filter"):
            store.search(q, 5, where=bad)


def test_refusals(opener: Opener, store: VectorStore) -> None:
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
        store.add([Record(**{**recs[0].__dict__, "locator": Locator("audio")})])
    with pytest.raises(InputError, match="JSON"):
        store.add([Record(**{**recs[0].__dict__, "metadata": {"x": object()}})])
    with pytest.raises(InputError):
        store.search(np.full(DIM, np.nan), 3)
    with pytest.raises(InputError):
        store.search(np.ones(DIM), 0)
    with pytest.raises(InputError, match="dim"):
        store.search(np.ones(DIM + 1), 3)
    assert store.count() == 4  # nothing partial was written
    with pytest.raises(StoreError, match="16-d"):
        opener(dim=32)
    assert opener().dim == DIM  # read from the schema


def test_files_round_trip(opener: Opener, store: VectorStore) -> None:
    a = FileEntry("docs/a.pdf", "abc", items=12, status="done", mtime=1700000000.5, size=1234)
    b = FileEntry("docs/b.mp4", "def", items=0, status="failed", error="cannot decode: moov atom not found")
    store.mark_files([a, b])
    store.mark_files([FileEntry("docs/a.pdf", "abd", items=13, status="done")])
    files = opener().files()
    assert set(files) == {"docs/a.pdf", "docs/b.mp4"}
    assert files["docs/b.mp4"] == b
    assert files["docs/a.pdf"].content_hash == "abd" and files["docs/a.pdf"].items == 13
    assert store.forget_files(["docs/a.pdf", "zzz"]) == 1
    assert set(store.files()) == {"docs/b.mp4"}
    with pytest.raises(InputError, match="status"):
        store.mark_files([FileEntry("c", "h", 1, "pending")])  # type: ignore[arg-type]


def test_meta_persists(opener: Opener, store: VectorStore) -> None:
    assert store.read_meta() == {}
    meta = {"model": "Qwen/Qwen3-VL-Embedding-2B", "dim": DIM, "instruction": "Represent the user's input.",
            "layout": {"max_pixels": 1024}}
    store.write_meta(meta)
    store.add(make_records(2))
    again = opener()
    assert again.read_meta() == meta and again.count() == 2
    with pytest.raises(StoreError, match="dim"):
        again.write_meta({"dim": 4})


def test_a_second_handle_sees_new_commits(opener: Opener, store: VectorStore) -> None:
    store.add(make_records(3))
    reader = opener()
    store.add(make_records(8))
    store.mark_files([FileEntry("x", "h", 8, "done")])
    assert reader.count() == 8 and set(reader.files()) == {"x"}
    store.optimize()
    assert reader.count() == 8 and len(reader.search(np.ones(DIM), 20)) == 8


def test_record_ids_are_stable() -> None:
    a = Locator("video", start=1.0, end=3.5).record_id("v.mp4")
    assert a == Locator("video", start=1.0, end=3.5).record_id("v.mp4")
    assert a != Locator("video", start=1.0, end=4.0).record_id("v.mp4")
    assert Locator("pdf_page", page=1).record_id("a.pdf") != Locator("pdf_page", page=2).record_id("a.pdf")


# ---------------------------------------------------------------- Milvus-specific
needs_milvus = pytest.mark.skipif(bool(MILVUS_SKIP), reason=MILVUS_SKIP or "-")


@needs_milvus
def test_open_store_routes_uris(tmp_path: Path) -> None:
    lite = open_store(str(tmp_path / "x.db"), dim=DIM)
    assert isinstance(lite, MilvusStore) and lite.collection == "vlsearch" and lite.dim == DIM
    lite.close()
    assert isinstance(open_store(str(tmp_path / "dir")), LanceStore)
    with pytest.raises(StoreError, match="connect"):
        open_store("milvus://127.0.0.1:1/papers")
    with pytest.raises(StoreError, match="scheme"):
        open_store("s3://bucket/x")
    with pytest.raises(InputError, match="collection name"):
        MilvusStore(str(tmp_path / "y.db"), collection="bad-name")


def test_filter_translation() -> None:
    def milvus(where: str) -> str:
        return parse(where).milvus()

    assert milvus("modality = 'pdf_page' AND page <= 3") == 'modality == "pdf_page" and page <= 3'
    assert milvus("text LIKE '%it''s \"x\"%'") == r'text like "%it' + "'" + r's \"x\"%"'
    assert milvus("id NOT IN ('a', 'b') OR page IS NOT NULL") == 'id not in ["a", "b"] or page is not null'
    assert milvus('"end" BETWEEN 1 AND 2.5') == "(end >= 1 and end <= 2.5)"
    assert milvus("text NOT LIKE 'x%'") == 'not (text like "x%")'
    for bad in ("page = 1; DROP", "page + 1 = 2", "(page = 1", "  "):
        with pytest.raises(InputError, match="invalid filter"):
            milvus(bad)


@needs_milvus
def test_milvus_says_when_it_stores_a_cut_text(tmp_path: Path) -> None:
    store = MilvusStore(str(tmp_path / "long.db"), collection="long", dim=DIM)
    long_text = "page text " * 8000  # 80,000 bytes: over Milvus' 65,535-byte VARCHAR
    store.add([Record(id="p1", source="big.pdf", content_hash="h", locator=Locator("pdf_page", page=1), text=long_text,
                      metadata={"pages": 9}, vector=np.ones(DIM, np.float32))])
    got = store.get(["p1"])[0]
    assert long_text.startswith(got.text) and len(got.text) < len(long_text)
    assert got.metadata == {"pages": 9, "text_truncated_from_bytes": 80_000}
    store.drop()
    store.close()
