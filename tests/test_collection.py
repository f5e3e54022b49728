"""Collections end to end: index a real corpus, search it, re-index, prune, refuse mismatches."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from ingest_files import write_encrypted_pdf, write_text_pdf, write_video
from vlsearch.catalog import Catalog
from vlsearch.collection import Collection
from vlsearch.errors import InputError, StoreError
from vlsearch.ingest import ExtractOptions
from vlsearch.testing import gradient_image

OPTIONS = ExtractOptions(segment_seconds=5.0, max_pages=500, chunk_chars=400, chunk_overlap=50)


def make_corpus(root: Path) -> dict[str, Path]:
    """A folder like a user's: documents, pictures, a clip, notes, and broken files."""
    (root / "docs").mkdir(parents=True)
    (root / "pics" / "nested").mkdir(parents=True)
    (root / "clips").mkdir()
    f = {
        "pdf": write_text_pdf(root / "docs" / "report.pdf", 3, text="Quarterly revenue table"),
        "video": write_video(root / "clips" / "clip.mp4", frames=96, fps=8),  # 12 s: 3 segments of 5 s
        "notes": root / "docs" / "notes.txt",
        "page": root / "docs" / "page.html",
        "md": root / "docs" / "readme.md",
    }
    f["notes"].write_text(" ".join(f"Sentence {i} about penguins and glaciers." for i in range(60)))
    f["page"].write_text("<html><body><h1>Budget</h1><p>The budget for the year is balanced.</p></body></html>")
    f["md"].write_text("# Readme\n\nA short markdown note about cats.\n")
    for i, (name, size) in enumerate({"a.png": (320, 240), "b.jpg": (200, 300), "nested/c.webp": (640, 200)}.items()):
        f[name] = root / "pics" / name
        gradient_image(*size, seed=i).save(f[name])
    # broken files: each must be reported, none may stop the run
    f["corrupt_pdf"] = root / "docs" / "corrupt.pdf"
    f["corrupt_pdf"].write_bytes(b"%PDF-1.7\n" + os.urandom(400))
    f["encrypted_pdf"] = write_encrypted_pdf(root / "docs" / "locked.pdf")
    f["huge_pdf"] = write_text_pdf(root / "docs" / "huge.pdf", 2000, size=(50, 50), text="")
    whole = write_video(root / "clips" / "whole.mp4", frames=40).read_bytes()
    (root / "clips" / "whole.mp4").unlink()
    f["truncated_mp4"] = root / "clips" / "truncated.mp4"
    f["truncated_mp4"].write_bytes(whole[: len(whole) // 2])
    f["zero"] = root / "pics" / "zero.png"
    f["zero"].write_bytes(b"")
    f["unsupported"] = root / "docs" / "data.bin"
    f["unsupported"].write_bytes(b"\x00" * 10)
    os.symlink(root / "pics", root / "pics" / "nested" / "loop")  # a symlink loop
    return f


GOOD_ITEMS = 3 + 3 + 3 + 1 + 1  # pdf pages, video segments, images, html, md (+ text chunks, counted apart)
BROKEN = {"corrupt.pdf", "locked.pdf", "huge.pdf", "truncated.mp4", "zero.png"}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_index_search_and_incremental_reindex(home, corpus, embedder_path, reranker_path):
    c = Collection("mine", model=str(embedder_path), reranker=str(reranker_path))
    report = c.add([corpus["pdf"].parents[1]], options=OPTIONS, workers=2)
    failed = {Path(s).name: reason for s, reason in report.failed}
    assert BROKEN <= set(failed), report.summary()
    assert "encrypted" in failed["locked.pdf"] and "more than max_pages=500" in failed["huge.pdf"]
    assert "symlink loop" in failed["loop"]
    assert report.skipped == 1 and report.new == 13 and len(report.failed) == 6
    info = c.info()
    assert info["files"] == 8 and info["items"] == report.items and info["items"] >= GOOD_ITEMS + 2
    assert Catalog().names() == ["mine"]

    results = c.search("quarterly revenue", top_k=5, candidates=20)
    assert 1 <= len(results) <= 5
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert all(r.rerank_score is not None and 0 <= r.score <= 1 for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    pages = c.search("revenue", where="modality = 'pdf_page'", rerank=False, top_k=10)
    assert sorted(r.page for r in pages) == [1, 2, 3] and all("Quarterly revenue table" in r.text for r in pages)
    clips = c.search("a clip", where="modality = 'video'", rerank=False)
    assert sorted((r.start, r.end) for r in clips) == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert all(r.thumbnail and r.thumbnail[:2] == b"\xff\xd8" for r in clips)
    by_image = c.search(image=str(corpus["a.png"]), rerank=False, top_k=1, instruction="Represent the user's input.")
    assert by_image[0].source == str(corpus["a.png"].resolve()) and by_image[0].score > 0.999
    like = c.search(like=by_image[0].id, top_k=3, candidates=10)
    assert by_image[0].id not in {r.id for r in like} and len(like) == 3

    # nothing changed: nothing embedded again
    again = c.add([corpus["pdf"].parents[1]], options=OPTIONS)
    assert (again.items, again.unchanged, again.new, again.failed_before) == (0, 8, 0, 5)
    assert [Path(s).name for s, _ in again.failed] == ["loop"]  # discovery errors are reported every run
    retry = c.add([corpus["pdf"].parents[1]], options=OPTIONS, retry_failed=True)
    assert retry.retried == 5 and len(retry.failed) == 6 and retry.items == 0

    # one file changed, one new, one deleted
    corpus["md"].write_text("# Readme\n\nNow about dogs, not cats.\n")
    gradient_image(100, 100, seed=9).save(corpus["pdf"].parent / "new.png")
    corpus["b.jpg"].unlink()
    before = c.info()["items"]
    third = c.add([corpus["pdf"].parents[1]], options=OPTIONS, prune=True)
    assert (third.changed, third.new, third.pruned, third.items) == (1, 1, 1, 2)
    assert c.info()["items"] == before  # +1 new image, -1 deleted image, md replaced in place
    md = c.search("dogs", where="source LIKE '%readme.md'", rerank=False)
    assert len(md) == 1 and "dogs" in md[0].text


def test_model_and_dimension_mismatch_is_refused(home, corpus, embedder_path, tmp_path):
    from vlsearch.testing import build_checkpoint

    c = Collection("dims", model=str(embedder_path), dim=32)
    c.add([corpus["notes"]], options=OPTIONS)
    assert c.store.dim == 32
    with pytest.raises(StoreError, match="holds 32-d vectors; it cannot take dim=16"):
        Collection("dims", dim=16)
    other = build_checkpoint(tmp_path / "other-model", seed=5)
    with pytest.raises(StoreError, match="has other weights"):
        Collection("dims", model=str(other)).add([corpus["md"]], options=OPTIONS)
    copy = tmp_path / "copy-of-model"
    shutil.copytree(embedder_path, copy)
    same = Collection("dims", model=str(copy))  # same weights elsewhere: accepted
    assert same.add([corpus["md"]], options=OPTIONS).new == 1
    with pytest.raises(StoreError, match="no collection 'absent'"):
        Collection("absent", create=False)
    with pytest.raises(InputError, match="invalid collection name"):
        Collection("bad name!")


def test_rerank_uses_the_thumbnail_when_the_source_is_gone(home, corpus, embedder_path, reranker_path):
    c = Collection("gone", model=str(embedder_path), reranker=str(reranker_path))
    c.add([corpus["a.png"], corpus["pdf"]], options=OPTIONS)
    corpus["a.png"].unlink()
    results = c.search("picture", top_k=4, rerank_inputs="full")  # pages as indexed: no note of their own
    moved = [r for r in results if r.source.endswith("a.png")]
    assert moved and "reranked on the thumbnail" in moved[0].note
    assert all(not r.note for r in results if not r.source.endswith("a.png"))


def test_delete_and_remove(home, corpus, embedder_path):
    c = Collection("del", model=str(embedder_path))
    c.add([corpus["pdf"], corpus["a.png"]], options=OPTIONS)
    assert c.delete(sources=[corpus["pdf"]]) == 3
    assert c.info()["items"] == 1 and c.info()["files"] == 1
    Collection.remove("del")
    assert Catalog().names() == []
    with pytest.raises(StoreError):
        Collection.remove("del")


def test_search_needs_an_indexed_collection_and_a_query(home, embedder_path):
    c = Collection("empty", model=str(embedder_path))
    with pytest.raises(StoreError, match="is empty"):
        c.search("anything")


def test_vectors_in_the_store_equal_the_embedder(home, corpus, embedder_path, embedder):
    c = Collection("same", model=str(embedder_path))
    c.add([corpus["a.png"]], options=OPTIONS)
    stored = c.search(image=str(corpus["a.png"]), rerank=False, top_k=1)[0]
    record = c.store.get([stored.id])[0]
    from PIL import Image

    expected = embedder.embed([{"image": Image.open(corpus["a.png"]).convert("RGB")}])[0]
    assert np.abs(record.vector - expected).max() < 1e-6


def test_layout_is_recorded_and_enforced(home, corpus, embedder_path, reranker_path):
    c = Collection("layout", model=str(embedder_path))
    c.add([corpus["video"]], options=OPTIONS)
    assert c.meta["layout"]["segment_seconds"] == 5.0
    reopened = Collection("layout", reranker=str(reranker_path))
    assert reopened.extract_options().segment_seconds == 5.0
    clips = reopened.search("clip")  # segments rebuilt from the video for reranking, with the recorded layout
    assert len(clips) == 3 and all(r.rerank_score is not None and not r.note for r in clips)
    with pytest.raises(InputError, match="segment_seconds"):
        reopened.add([corpus["video"]], options=ExtractOptions(segment_seconds=7.0))


def test_collections_are_their_owners_only(home, embedder_path, tmp_path):
    """Whatever the umask, the home, its collections folder and each collection are 0700, and the files vlsearch
    writes there (the metadata) are 0600: other users can neither list the indexed names nor read the records."""
    notes = tmp_path / "notes.txt"
    notes.write_text("private notes")
    umask = os.umask(0o002)
    try:
        Collection("mine", model=str(embedder_path)).add([notes], workers=0)
        Collection(str(tmp_path / "elsewhere" / "c"), model=str(embedder_path)).add([notes], workers=0)
    finally:
        os.umask(umask)
    for folder in (home, home / "collections", home / "collections" / "mine", tmp_path / "elsewhere" / "c"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((home / "collections" / "mine" / "store" / "meta.json").stat().st_mode) == 0o600
