"""Hybrid retrieval: OCR text for pictures, BM25 in the store, reciprocal-rank fusion, on every surface."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vlsearch.collection import Collection, fuse
from vlsearch.errors import InputError, StoreError
from vlsearch.ingest import ExtractOptions, content_hash, extract
from vlsearch.ingest.ocr import read_text
from vlsearch.locator import Locator
from vlsearch.stores import Hit, Record
from vlsearch.testing import gradient_image

FONTS = [Path("/usr/share/fonts/truetype/dejavu") / name for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf")] + \
        [Path("/usr/share/fonts/truetype/liberation") / name for name in ("LiberationSans-Regular.ttf",
                                                                         "LiberationMono-Regular.ttf")]
FONTS = [f for f in FONTS if f.exists()]
LINES = ["The quarterly revenue grew by twelve percent", "Penguins crossed the glacier before noon",
         "Invoice number 4711 is due on Friday", "Seven orange lanterns light the harbour"]
needs_fonts = pytest.mark.skipif(len(FONTS) < 2, reason="needs the DejaVu or Liberation fonts (fonts-dejavu-core)")


def text_picture(lines: list[str], font: Path, size: int, width: int = 1000) -> Image.Image:
    image = Image.new("RGB", (width, 40 + int(size * 1.8) * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), size)
    for i, line in enumerate(lines):
        draw.text((20, 20 + int(size * 1.8) * i), line, fill="black", font=face)
    return image


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# ---------------------------------------------------------------- OCR

@needs_fonts
@pytest.mark.parametrize("engine, fonts, sizes", [
    ("tesseract", FONTS[::2], (18, 36)),
    pytest.param("tesseract", FONTS, (18, 26, 36), marks=pytest.mark.slow),
    ("rapidocr", FONTS[:1], (26,)),
    pytest.param("rapidocr", FONTS, (18, 26, 36), marks=pytest.mark.slow),  # ~6 s a picture on one core
])
def test_ocr_recovers_the_words_of_rendered_text(engine, fonts, sizes):
    if engine == "rapidocr":
        pytest.importorskip("rapidocr_onnxruntime", reason="pip install 'vlsearch[ocr]'")
    elif not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed (apt-get install tesseract-ocr)")
    expected, found = [], []
    for font in fonts:
        for size in sizes:
            text, meta = read_text(text_picture(LINES, font, size), engine, None)
            assert "ocr" in meta and meta["ocr"]["words"], meta
            expected += words(" ".join(LINES))
            found += words(text)
    if engine == "rapidocr":  # its model drops the spaces between English words: judge the letters
        joined = "".join(found)
        recovered = sum(w in joined for w in expected) / len(expected)
    else:
        recovered = sum(min(found.count(w), expected.count(w)) for w in set(expected)) / len(expected)
    assert recovered >= 0.9, f"{engine} recovered {recovered:.0%} of the words"


@needs_fonts
def test_a_scanned_pdf_page_gets_ocr_text_with_word_boxes(tmp_path):
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed")
    scan = tmp_path / "scan.pdf"
    text_picture(LINES[:2], FONTS[0], 30).save(scan)  # an image-only PDF: no text layer
    (page,) = extract(scan, "pdf", content_hash(scan), ExtractOptions())
    assert {"quarterly", "revenue", "penguins", "glacier"} <= set(words(page.text))
    ocr = page.metadata["ocr"]
    assert ocr["engine"] == "tesseract" and (ocr["width"], ocr["height"]) == page.item.image.size
    word, box, confidence = next(w for w in ocr["words"] if w[0].lower() == "quarterly")
    assert 0 <= box[0] < box[2] <= ocr["width"] and 0 <= box[1] < box[3] <= ocr["height"] and confidence > 0.5
    (never,) = extract(scan, "pdf", content_hash(scan), ExtractOptions(ocr="never"))
    assert never.text == "" and "ocr" not in never.metadata


def test_an_ocr_failure_fails_only_the_ocr(tmp_path, embedder_path):
    picture = tmp_path / "docs" / "picture.png"
    picture.parent.mkdir()
    gradient_image(200, 120, seed=1).save(picture)
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed")
    options = ExtractOptions(ocr_engine="tesseract", ocr_lang="no-such-language")
    report = Collection(str(tmp_path / "c"), model=str(embedder_path)).add([picture.parent], options=options,
                                                                         workers=0)
    assert report.items == 1 and not report.failed
    (item, reason), = report.no_ocr
    assert "picture.png" in item and "tesseract failed" in reason
    assert "without OCR text" in report.summary()


# ---------------------------------------------------------------- hybrid search

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hybrid")
    font = FONTS[0] if FONTS else None
    for i, line in enumerate(LINES):
        if font:
            text_picture([line], font, 34, width=900).save(root / f"slide{i}.png")
    for i in range(6):
        gradient_image(160, 120, seed=50 + i).save(root / f"photo{i}.png")
    (root / "notes.txt").write_text("Notes about the annual report, the harbour and the weather. " * 6)
    (root / "zymurgy-handbook.md").write_text("A handbook for brewers: yeast, malt and water. " * 6)
    return root


@pytest.fixture(scope="module")
def collection(corpus, embedder_path, reranker_path, tmp_path_factory) -> Collection:
    if not FONTS or not shutil.which("tesseract"):
        pytest.skip("needs fonts and tesseract")
    c = Collection(str(tmp_path_factory.mktemp("hybrid-home") / "c"), model=str(embedder_path),
                   reranker=str(reranker_path))
    report = c.add([corpus], workers=0)
    assert report.items == 12 and not report.failed and not report.no_ocr, report.summary()
    return c


def test_a_word_found_only_in_ocr_text(collection):
    target = "slide2.png"  # "Invoice number 4711 is due on Friday", in pixels only
    dense = collection.search("invoice 4711", mode="dense", rerank=False, top_k=12)
    assert not dense[0].source.endswith(target), "the random tiny model happened to rank it first"
    for mode in ("lexical", "hybrid", None):
        results = collection.search("invoice 4711", mode=mode, rerank=False, top_k=3)
        assert results[0].source.endswith(target) and results[0].lexical_score > 0, mode
    reranked = collection.search("invoice 4711", mode="lexical", top_k=3)
    assert reranked[0].rerank_score is not None and reranked[0].lexical_score is not None


def test_file_names_are_searched_too(collection):
    found = collection.search("zymurgy", mode="lexical", rerank=False)
    assert [Path(r.source).name for r in found] == ["zymurgy-handbook.md"]


def test_lexical_scores_are_the_stores_own_bm25(collection):
    ours = collection.search("harbour annual", mode="lexical", rerank=False, top_k=5)
    table = lancedb.connect(str(collection.path / "store")).open_table("records")
    from lancedb.query import MultiMatchQuery

    theirs = table.search(MultiMatchQuery("harbour annual", ["text", "source"]), query_type="fts").limit(5).to_arrow()
    assert [r.id for r in ours] == theirs.column("id").to_pylist()
    assert [r.score for r in ours] == pytest.approx(theirs.column("_score").to_pylist())


def test_filters_apply_in_every_mode(collection):
    for mode in ("dense", "lexical", "hybrid"):
        results = collection.search("harbour", mode=mode, rerank=False, where="modality = 'text'", top_k=20)
        assert results and {r.modality for r in results} == {"text"}, mode


def test_reciprocal_rank_fusion_with_weights():
    def hit(name: str, score: float) -> Hit:
        return Hit(Record.of(name, "h", Locator("text")), score)

    dense, lexical = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)], [hit("c", 12.0), hit("d", 7.0)]
    fused = fuse(dense, lexical)
    assert [Path(r.source).name for r in fused] == ["c", "a", "b", "d"]  # c: 1/63 + 1/61 beats a: 1/61
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert (fused[0].vector_score, fused[0].lexical_score) == (0.7, 12.0)
    assert fused[1].lexical_score is None and fused[3].vector_score is None
    assert [Path(r.source).name for r in fuse(dense, lexical, (0.0, 1.0))][:2] == ["c", "d"]


def test_bad_lexical_queries(collection):
    with pytest.raises(InputError, match="needs a query with words"):
        collection.search("  ...  ", mode="lexical")
    with pytest.raises(InputError, match="over the limit"):
        collection.search("word " * 20_000, mode="lexical", rerank=False)
    for odd in ('AND OR ((', 'text:zymurgy', '"unclosed', "zym*", "a -b +c"):
        collection.search(odd, mode="hybrid", rerank=False)  # no query syntax: never an error
    with pytest.raises(InputError, match="mode must be one of"):
        collection.search("x", mode="fuzzy")


def test_ocr_settings_are_part_of_the_layout(collection, corpus):
    assert collection.extract_options().ocr == "auto"
    with pytest.raises(InputError, match="ocr"):
        collection.add([corpus], options=ExtractOptions(ocr="never"))


def test_a_0_1_collection_keeps_its_layout_and_gains_lexical_search(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "collection-v0.1", copy)
    old = Collection(str(copy), create=False)
    assert old.extract_options().ocr == "never"  # what 0.1 did: no OCR for files added later
    found = old.store.lexical_search("Quarterly", k=5)
    assert [h.record.modality for h in found] == ["pdf_page", "pdf_page"]  # their text layers, now indexed


# ---------------------------------------------------------------- lexical and dense stay in agreement

def _agree(c: Collection) -> None:
    """Every item with text is found by its words, and lexical search finds nothing else."""
    records = [h.record for h in c.store.search(np.ones(c.store.dim, np.float32), k=1000)]
    with_text = {r.id for r in records if r.text.strip()}
    found = {h.record.id for h in c.store.lexical_search("the note about things", k=1000)}
    assert found <= {r.id for r in records}, "lexical search found records the store does not hold"
    assert with_text <= found | {r.id for r in records if not set(words(r.text)) & {"note", "things", "the"}}


def test_delete_prune_and_reindex_keep_both_sides_in_agreement(tmp_path, embedder_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"note{i}.txt").write_text(f"the note {i} about things " * 30)
    c = Collection(str(tmp_path / "c"), model=str(embedder_path))
    c.add([docs], workers=0, options=ExtractOptions(ocr="never"))
    _agree(c)
    c.delete(sources=[docs / "note0.txt"])
    _agree(c)
    assert not any(h.record.source.endswith("note0.txt") for h in c.store.lexical_search("note", k=100))
    (docs / "note0.txt").unlink()
    (docs / "note1.txt").unlink()
    (docs / "note2.txt").write_text("the note two was rewritten with other things " * 10)
    c.add([docs], workers=0, prune=True)
    _agree(c)
    sources = {h.record.source for h in c.store.lexical_search("note things", k=100)}
    assert not any(s.endswith(("note0.txt", "note1.txt")) for s in sources)
    assert {h.record.text[:30] for h in c.store.lexical_search("rewritten", k=10)} == {
        "the note two was rewritten wit"}


def test_milvus_lite_searches_by_words_and_old_milvus_collections_say_why_not(tmp_path, embedder_path):
    pytest.importorskip("pymilvus")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("penguins on the glacier " * 10)
    (docs / "b.txt").write_text("quarterly revenue report " * 10)
    c = Collection(str(tmp_path / "m"), model=str(embedder_path), store=str(tmp_path / "m.db"))
    c.add([docs], workers=0)
    found = c.search("glacier", mode="lexical", rerank=False)
    assert [Path(r.source).name for r in found] == ["a.txt"] and found[0].lexical_score > 0
    assert c.search("quarterly revenue", rerank=False)[0].source.endswith("b.txt")  # hybrid by default

    from pymilvus import DataType, MilvusClient

    from vlsearch.stores.milvus import MilvusStore

    old_path = str(tmp_path / "old.db")
    client = MilvusClient(old_path)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection("vlsearch", schema=schema)
    client.close()
    with pytest.raises(StoreError, match="created before lexical search"):
        MilvusStore(old_path).lexical_search("anything", k=3)
