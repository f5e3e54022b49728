"""Reranking does no repeated work: rebuilt pages and video segments come from a bounded disk cache
(LRU, safe under concurrent processes, off with a warning when it cannot write), rebuilds overlap,
and the reranker's pixel budget is an option of its own."""

from __future__ import annotations

import io
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image

from ingest_files import write_text_pdf, write_video
from vlsearch.collection import Collection
from vlsearch.ingest import ExtractOptions
from vlsearch.ingest.item_cache import ItemCache, cache_key
from vlsearch.ingest.workers import default_workers
from vlsearch.items import Item
from vlsearch.locator import Locator
from vlsearch.testing import gradient_image


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder_path, reranker_path):
    root = tmp_path_factory.mktemp("rerank-cache")
    docs = root / "docs"
    docs.mkdir()
    write_text_pdf(docs / "report.pdf", 4, text="Quarterly revenue table")
    write_video(docs / "clip.mp4", frames=48, fps=8)
    home = root / "home"
    c = Collection(str(home / "collections" / "c"), model=str(embedder_path), reranker=str(reranker_path))
    c.add([docs], workers=0, options=ExtractOptions(segment_seconds=3.0, ocr="never"))
    return c


def test_the_second_rerank_reads_the_cache_and_scores_the_same(indexed, monkeypatch):
    import vlsearch.collection as module

    built: list[str] = []
    original = module.piece_item
    monkeypatch.setattr(module, "piece_item", lambda *a, **k: built.append(a[1].label) or original(*a, **k))
    entries = indexed.catalog.home / "cache" / "items"  # the session's home: other tests' entries are there too
    before = set(entries.glob("*/*.npz"))
    first = indexed.search("quarterly revenue", top_k=6, mode="dense")
    assert len(built) == 6 and indexed._items.hits == 0  # four pages and two segments rendered and decoded
    second = indexed.search("quarterly revenue", top_k=6, mode="dense")
    assert len(built) == 6 and indexed._items.hits == 6  # nothing rebuilt
    assert [(r.id, r.rerank_score) for r in first] == [(r.id, r.rerank_score) for r in second]
    assert len(set(entries.glob("*/*.npz")) - before) == 6


def test_a_changed_layout_or_file_is_another_key():
    base = cache_key("abc", Locator("pdf_page", page=1), {"max_pixels": 1843200})
    assert base != cache_key("abd", Locator("pdf_page", page=1), {"max_pixels": 1843200})
    assert base != cache_key("abc", Locator("pdf_page", page=2), {"max_pixels": 1843200})
    assert base != cache_key("abc", Locator("pdf_page", page=1), {"max_pixels": 200000})


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    cache = ItemCache(tmp_path, max_bytes=3 * 120 * 90 * 3 + 3000)  # about three pictures
    for i in range(5):
        cache.put(f"key{i:02d}", Item(image=gradient_image(120, 90, seed=i)))
        os.utime(cache._path(f"key{i:02d}"), (1000 + i, 1000 + i))
        if i == 2:
            assert cache.get("key00") is not None  # used: now the most recent
    kept = sorted(p.stem for p in tmp_path.glob("*/*.npz"))
    assert len(kept) <= 3 and "key04" in kept and "key01" not in kept
    video = Item(video=[gradient_image(40, 30, seed=s) for s in range(4)], fps=2.0)
    cache.put("vid", video)
    back = cache.get("vid")
    assert back.fps == 2.0 and [f.tobytes() for f in back.video] == [f.tobytes() for f in video.video]


def test_concurrent_processes_never_read_a_torn_entry(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from vlsearch.ingest.item_cache import ItemCache
        from vlsearch.items import Item
        from vlsearch.testing import gradient_image
        cache, seed = ItemCache({str(tmp_path)!r}, max_bytes=10**9), int(sys.argv[1])
        picture = gradient_image(300, 200, seed=1)
        for round in range(40):
            cache.put("shared", Item(image=picture))
            item = cache.get("shared")
            assert item is None or item.image.tobytes() == picture.tobytes(), "torn read"
        print("ok")
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(3)]
    assert [p.communicate(timeout=120)[0].strip() for p in runs] == ["ok"] * 3


def test_an_unwritable_cache_warns_once_and_gets_out_of_the_way(tmp_path, caplog):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    cache = ItemCache(blocked / "cache")
    with caplog.at_level(logging.WARNING, logger="vlsearch.cache"):
        cache.put("k", Item(image=Image.new("RGB", (8, 8))))
        cache.put("k2", Item(image=Image.new("RGB", (8, 8))))
    assert not cache.enabled and cache.get("k") is None
    assert sum("is off for this process" in r.message for r in caplog.records) == 1


def test_threads_and_caches_on_one_unwritable_folder_warn_once(tmp_path, caplog):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    caches = [ItemCache(blocked / "cache"), ItemCache(blocked / "cache")]  # two collections of one home
    start = threading.Barrier(8)

    def put(n: int) -> None:
        start.wait()
        caches[n % 2].put(f"k{n}", Item(image=Image.new("RGB", (8, 8))))

    with caplog.at_level(logging.WARNING, logger="vlsearch.cache"):
        threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not any(c.enabled for c in caches)
    assert sum("is off for this process" in r.message for r in caplog.records) == 1


def test_the_cache_is_private_and_uses_no_entry_it_did_not_write(tmp_path):
    umask = os.umask(0o022)
    try:
        (tmp_path / "cache" / "items").mkdir(parents=True)  # as an older version left it: 0755
        cache = ItemCache(tmp_path / "cache" / "items")
        picture = gradient_image(40, 30, seed=2)
        cache.put("a" * 40, Item(image=picture))
        cache.put("b" * 40, Item(image=gradient_image(40, 30, seed=3)))
    finally:
        os.umask(umask)
    root = tmp_path / "cache" / "items"
    for folder in (root, root / "aa", root / "bb"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (root / ".secret", cache._path("a" * 40)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert cache.get("a" * 40).image.tobytes() == picture.tobytes()

    moved, corrupt, planted = cache._path("b" * 40), cache._path("a" * 40), cache._path("c" * 40)
    moved.write_bytes(cache._path("a" * 40).read_bytes())  # a whole, valid entry, under another key
    data = bytearray(corrupt.read_bytes())
    data[-40] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    planted.parent.mkdir(mode=0o700)
    buffer = io.BytesIO()  # an entry in the old format, without the digest: what anyone could write
    np.savez(buffer, frames=np.stack([np.asarray(gradient_image(40, 30, seed=9))]), fps=np.float64(0))
    planted.write_bytes(buffer.getvalue())
    for key, path in (("b" * 40, moved), ("a" * 40, corrupt), ("c" * 40, planted)):
        assert cache.get(key) is None and not path.exists(), key  # a miss, and removed


def test_the_reranker_pixel_budget_is_its_own_option(indexed, embedder_path, reranker_path):
    small = Collection(str(indexed.path), reranker=str(reranker_path), rerank_pixels=64 * 32 * 32,
                       create=False)
    assert small.reranker.budget.max_pixels == 64 * 32 * 32
    full = indexed.search("quarterly revenue", top_k=2, mode="dense")
    reduced = small.search("quarterly revenue", top_k=2, mode="dense")
    assert [r.rerank_score for r in full] != [r.rerank_score for r in reduced]


def test_default_workers_follow_the_machine():
    cores = os.cpu_count() or 1
    assert default_workers(model_on_cpu=True) == max(1, min(16, cores // 2))
    assert default_workers(model_on_cpu=False) == max(1, min(16, cores - 1))
