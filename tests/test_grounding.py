"""Grounded results: word boxes of PDF text layers and OCR, mapped to the source (resize, EXIF orientation,
crop boxes, page rotation), matched against the query, and returned by search on every surface."""

from __future__ import annotations

import ctypes
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from test_hybrid import FONTS, needs_fonts
from vlsearch.collection import Collection
from vlsearch.errors import InputError
from vlsearch.grounding import crop_box, lines_label, map_box, regions, stem, terms
from vlsearch.ingest import ExtractOptions, content_hash, extract
from vlsearch.media.images import upright

needs_tesseract = pytest.mark.skipif(not shutil.which("tesseract"), reason="tesseract is not installed")


def write_words_pdf(path: Path, specs: list[dict], pages: int | None = None) -> Path:
    """A PDF with one text at a known place a page: ``{"word", "at": (x, y) baseline in points,
    "size": (w, h), "crop": (l, b, r, t) or None, "rotate": 0/90/180/270}``; ``pages=1``: every text
    on one page (the first one's size)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument.new()
    page = None
    for spec in specs:
        if page is None or pages is None:
            page = document.new_page(*spec.get("size", (300, 400)))
        obj = raw.FPDFPageObj_NewTextObj(document.raw, b"Helvetica", ctypes.c_float(20 if pages is None else 9))
        encoded = f"{spec['word']}\x00".encode("utf-16-le")
        raw.FPDFText_SetText(obj, (ctypes.c_ushort * (len(encoded) // 2)).from_buffer_copy(encoded))
        raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, *spec["at"])
        raw.FPDFPage_InsertObject(page.raw, obj)
        assert raw.FPDFPage_GenerateContent(page.raw)
        if spec.get("crop"):
            page.set_cropbox(*spec["crop"])
        if spec.get("rotate"):
            page.set_rotation(spec["rotate"])
    document.save(str(path))
    document.close()
    return path


def ink(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """The bounding box of the dark pixels of a picture (inside ``box`` when given)."""
    pixels = np.asarray(image.convert("L")) < 128
    if box is not None:
        mask = np.zeros_like(pixels)
        mask[box[1]:box[3], box[0]:box[2]] = True
        pixels &= mask
    ys, xs = np.nonzero(pixels)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def covers(outer: list[int], inner: tuple[int, ...], slack: int = 2) -> bool:
    return (outer[0] - slack <= inner[0] and outer[1] - slack <= inner[1] and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


# ---------------------------------------------------------------- PDF text layer

PAGES = [{"word": "Revenue", "at": (40, 300)},
         {"word": "Revenue", "at": (140, 250), "crop": (100, 100, 300, 400)},
         {"word": "Revenue", "at": (40, 300), "rotate": 90},
         {"word": "Revenue", "at": (140, 250), "crop": (100, 100, 300, 400), "rotate": 270}]


@pytest.mark.parametrize("max_pixels", [300 * 400, 4 * 300 * 400])
def test_text_layer_word_boxes_land_on_the_ink_through_crop_box_rotation_and_scale(tmp_path, max_pixels):
    pdf = write_words_pdf(tmp_path / "words.pdf", PAGES)
    pieces = extract(pdf, "pdf", content_hash(pdf), ExtractOptions(max_pixels=max_pixels, ocr="never"))
    for piece, spec in zip(pieces, PAGES):
        ((word, box),) = piece.metadata["layer_words"]
        image, scale = piece.item.image, piece.metadata["scale"]
        assert word == "Revenue" and (piece.metadata["width"], piece.metadata["height"]) == image.size
        drawn = ink(image)
        assert covers(box, drawn), (spec, box, drawn)  # the box holds the word's ink ...
        assert (box[2] - box[0]) * (box[3] - box[1]) < 2.5 * (drawn[2] - drawn[0]) * (drawn[3] - drawn[1])  # ... tightly
        if not spec.get("rotate"):  # the known place: baseline origin minus the crop box's corner, times the scale
            left, top = spec.get("crop", (0, 0, 300, 400))[0], spec.get("crop", (0, 0, 300, 400))[3]
            assert abs(box[0] - (spec["at"][0] - left) * scale) <= 2
            assert box[1] < (top - spec["at"][1]) * scale < box[3]  # the baseline crosses the box


def test_a_dense_page_keeps_a_bounded_number_of_word_boxes(tmp_path):
    from vlsearch.ingest.extractors import MAX_LAYER_WORDS
    from vlsearch.stores.milvus import VARCHAR_MAX

    spec = [{"word": " ".join(f"w{i}" for i in range(line * 12, line * 12 + 12)), "at": (10, 1180 - 11 * line),
             "size": (400, 1200)} for line in range(105)]  # 1,260 words
    pdf = write_words_pdf(tmp_path / "dense.pdf", spec, pages=1)
    (piece,) = extract(pdf, "pdf", content_hash(pdf), ExtractOptions(ocr="never"))
    words = piece.metadata["layer_words"]
    assert len(words) == MAX_LAYER_WORDS and words[0][0] == "w0" and "w1259" in piece.text
    assert len(json.dumps(piece.metadata).encode()) < VARCHAR_MAX // 2  # room beside OCR words in a Milvus record


def test_search_regions_on_a_text_layer_page(tmp_path, embedder_path):
    from ingest_files import write_text_pdf

    (tmp_path / "docs").mkdir()
    pdf = write_text_pdf(tmp_path / "docs" / "report.pdf", 2, text="Quarterly revenues grew")
    collection = Collection(str(tmp_path / "c"), model=str(embedder_path))
    collection.add([pdf.parent], workers=0, options=ExtractOptions(ocr="never"))
    results = collection.search("quarterly revenue", mode="lexical", rerank=False, top_k=2)
    assert {r.page for r in results} == {1, 2}
    for r in results:
        (region,) = r.regions  # one phrase on one line: the two words merged into one box
        assert region["kind"] == "text" and region["source"] == "text_layer" and region["score"] == 1.0
        assert region["text"] == "Quarterly revenues" and region["line"] == 1
        words = {w: b for w, b in r.metadata["layer_words"]}
        assert region["box"] == [words["Quarterly"][0], words["Quarterly"][1], words["revenues"][2],
                                 words["revenues"][3]]
        width, height = r.metadata["width"], r.metadata["height"]
        assert region["norm"] == [round(region["box"][0] / width, 4), round(region["box"][1] / height, 4),
                                  round(region["box"][2] / width, 4), round(region["box"][3] / height, 4)]
        shown = json.loads(json.dumps(r.to_dict()))
        assert shown["regions"] == [region] and "layer_words" not in shown["metadata"]  # the regions, not every box
    assert collection.search("penguins", mode="dense", rerank=False, top_k=2)[0].regions == []
    assert lines_label(results[0].regions) == "line 1"


def test_cli_prints_where_the_words_are_and_gives_regions_in_json(tmp_path, monkeypatch, capsys, embedder_path):
    from ingest_files import write_text_pdf
    from vlsearch.cli import main

    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLSEARCH_EMBEDDER", str(embedder_path))
    (tmp_path / "docs").mkdir()
    write_text_pdf(tmp_path / "docs" / "report.pdf", 1, text="Quarterly revenues grew")
    assert main(["index", str(tmp_path / "docs"), "-c", "g", "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["search", "quarterly revenue", "-c", "g", "--no-rerank", "--no-server"]) == 0
    assert "report.pdf p.1, line 1" in capsys.readouterr().out
    assert main(["search", "quarterly revenue", "-c", "g", "--no-rerank", "--no-server", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert [(r["text"], r["line"], r["score"]) for r in result["regions"]] == [("Quarterly revenues", 1, 1.0)]
    assert main(["search", "quarterly revenue", "-c", "g", "--no-rerank", "--dense-regions", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in result["regions"]] == ["text"] + ["dense"] * 5


# ---------------------------------------------------------------- OCR and orientation

@pytest.mark.parametrize("turned", range(1, 9))
def test_boxes_follow_exif_orientation_as_pillow_turns_the_picture(turned):
    stored = Image.new("RGB", (120, 80), "white")
    ImageDraw.Draw(stored).rectangle((10, 20, 39, 29), fill="black")  # pixels 10..39 x 20..29
    shown = upright(stored, turned)
    assert map_box([10, 20, 40, 30], (120, 80), (120, 80), turned) == list(ink(shown))


def test_boxes_scale_from_the_picture_read_to_the_source():
    assert map_box([10, 20, 40, 30], (60, 40), (120, 80)) == [20, 40, 80, 60]
    assert map_box([10, 20, 40, 30], (60, 40), (120, 80), 6) == [20, 20, 40, 80]  # scaled, then turned
    meta = {"width": 120, "height": 80, "ocr": {"width": 60, "height": 40, "words": [["Glacier", [10, 20, 40, 30], 0.9]]}}
    (region,) = regions("glaciers", meta, "image")
    assert region["source"] == "ocr" and region["box"] == [20, 40, 80, 60] and region["norm"] == [
        round(20 / 120, 4), 0.5, round(80 / 120, 4), 0.75]


@needs_fonts
@needs_tesseract
@pytest.mark.parametrize("turned", [1, 3])
def test_ocr_regions_of_an_image_land_on_the_drawn_words(tmp_path, turned):
    picture = Image.new("RGB", (700, 160), "white")
    draw, face = ImageDraw.Draw(picture), ImageFont.truetype(str(FONTS[0]), 30)
    draw.text((20, 20), "The quarterly revenue grew", fill="black", font=face)
    draw.text((20, 90), "Penguins crossed the glacier", fill="black", font=face)
    exif = Image.Exif()
    exif[0x0112] = turned
    path = tmp_path / "scan.jpg"
    picture.save(path, quality=95, exif=exif)
    (piece,) = extract(path, "image", content_hash(path), ExtractOptions(ocr_engine="tesseract"))
    assert piece.metadata.get("orientation", 1) == turned
    found = regions("penguin glacier", piece.metadata, "image")
    assert sorted(r["text"] for r in found) == ["Penguins", "glacier"] and all(r["score"] == 0.5 for r in found)
    assert {r["line"] for r in found} == {2}
    shown = upright(picture, turned)
    for region in found:
        word = region["text"]
        x0 = 20 + draw.textlength("Penguins crossed the " if word == "glacier" else "", font=face)
        drawn = list(draw.textbbox((x0, 90), word, font=face))
        expected = map_box(drawn, picture.size, picture.size, turned)
        assert covers(region["box"], tuple(expected), slack=4), (region, expected)
        assert covers(region["box"], ink(shown, tuple(region["box"])))
    thumbnail = np.asarray(Image.open(io.BytesIO(piece.thumbnail)).convert("L"))  # upright, as the boxes
    expected = np.asarray(upright(picture, turned).resize((thumbnail.shape[1], thumbnail.shape[0])).convert("L"))
    assert np.abs(thumbnail.astype(int) - expected).mean() < 12


# ---------------------------------------------------------------- matching rules

def test_matching_folds_case_and_accents_stems_and_merges_phrases_per_line():
    assert terms("The Élan of COMPANIES, growing") == ["elan", "company", "grow"]
    assert stem("revenues") == stem("revenue") and stem("class") == "class"
    words = [["Café", [0, 0, 40, 10]], ["companies", [44, 0, 100, 10]], ["of", [104, 0, 114, 10]],
             ["the", [118, 0, 140, 10]], ["world", [144, 0, 180, 10]],  # line 1
             ["growing", [0, 20, 50, 30]], ["fast", [54, 20, 80, 30]],  # line 2
             ["cafe", [0, 40, 30, 50]]]  # line 3
    meta = {"width": 200, "height": 60, "layer_words": words}
    found = regions("cafe company world growing", meta, "pdf_page")
    # one phrase over lines 1 and 2 (stop words inside it), a lone match on line 3
    assert [(r["text"], r["line"], r["score"]) for r in found] == [
        ("Café companies of the world", 1, 1.0), ("growing", 2, 1.0), ("cafe", 3, 0.25)]
    assert found[0]["box"] == [0, 0, 180, 10] and lines_label(found) == "lines 1-2"
    assert lines_label([{**r, "score": 1.0} for r in found]) == "lines 1-3"
    assert lines_label([{**found[0], "line": n} for n in (2, 5, 6, 9)]) == "lines 2, 5-6, 9"
    assert regions("", meta, "pdf_page") == [] and regions("cafe", meta, "video") == []
    assert regions("cafe", {"width": 10, "height": 10}, "pdf_page") == []  # an older record: no boxes


def test_crop_boxes_are_checked_and_kept_inside_the_picture():
    assert crop_box("10,20,50,60", (100, 100)) == (10, 20, 50, 60)
    assert crop_box([-5, 90, 500, 120.4], (100, 100)) == (0, 90, 100, 100)
    for bad in ("1,2,3", "a,b,c,d", "10,10,10,50", "200,200,300,300", "nan,0,1,1"):
        with pytest.raises(InputError, match="box"):
            crop_box(bad, (100, 100))


# ---------------------------------------------------------------- video moments

def test_video_moments_are_the_best_window_inside_their_segment(tmp_path, embedder_path, embedder):
    from ingest_files import write_video
    from vlsearch.ingest import piece_item
    from vlsearch.moments import windows

    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "clip.mp4", frames=104, fps=8)  # 13 s: segments 0-6, 6-12, 12-13
    collection = Collection(str(tmp_path / "c"), model=str(embedder_path), loaded_embedder=embedder)
    options = ExtractOptions(segment_seconds=6.0)
    collection.add([tmp_path / "videos"], workers=0, options=options)
    plain = collection.search("a grey clip", mode="dense", rerank=False, top_k=3)
    assert len(plain) == 3 and all(r.moment is None for r in plain)
    results = collection.search("a grey clip", mode="dense", rerank=False, top_k=3, moments=True)
    query = embedder.embed([{"text": "a grey clip", "instruction": collection.instruction}])[0]
    for r in results:
        assert r.start <= r.moment["start"] < r.moment["end"] <= r.end, (r.locator, r.moment)
        if r.end - r.start < 4:  # the last second: no shorter window than the segment itself
            assert r.moment == {"start": r.start, "end": r.end, "score": None}
            continue
        frames = piece_item(r.source, r.locator, options).video
        spans = windows(len(frames), 1.0)
        assert spans == [(0, 4), (2, 6)]  # six frames at 1 fps: 4-second windows, half-overlapping
        scores = embedder.embed([{"video": frames[i:j], "fps": 1.0} for i, j in spans]) @ query
        best = spans[int(np.argmax(scores))]
        assert r.moment["score"] == pytest.approx(float(scores.max()), abs=1e-5)
        assert (r.moment["start"], r.moment["end"]) == (r.start + best[0], r.start + best[1])
        assert r.to_dict()["moment"] == r.moment


def test_windows_cover_the_segment():
    assert windows_of(3, 1.0) == [(0, 3)] and windows_of(7, 1.0) == [(0, 4), (2, 6), (3, 7)]
    assert windows_of(20, 2.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 12), (10, 14), (12, 16), (14, 18),
                                        (16, 20)]
    assert windows_of(9, 0.25) == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 8), (7, 9)]


def windows_of(frames, rate, seconds=4.0):
    from vlsearch.moments import windows

    return windows(frames, rate, seconds)


# ---------------------------------------------------------------- dense regions (an approximation)

def test_patch_scores_equal_transformers_own_forward(embedder, embedder_path):
    """Each cell is the cosine of the query with the last layer's state at one image token, as
    transformers' own model (eager attention, no vlsearch kernels) computes it."""
    import torch
    from transformers import AutoModel

    from vlsearch.items import Item
    from vlsearch.testing import gradient_image

    picture = gradient_image(200, 120, seed=3)
    query = embedder.embed(["a chart"])[0]
    scores = embedder.patch_scores(Item(image=picture), query)
    encoded = embedder.encode_item(Item(image=picture))
    _, rows, cols = encoded.image_grid_thw[0].tolist()
    assert scores.shape == (rows // 2, cols // 2)  # one cell per merged 2x2 patch
    model = AutoModel.from_pretrained(embedder_path, attn_implementation="eager", dtype=torch.float32)
    with torch.inference_mode():
        out = model(input_ids=encoded.input_ids[None], attention_mask=torch.ones_like(encoded.input_ids)[None],
                    pixel_values=encoded.pixel_values, image_grid_thw=encoded.image_grid_thw,
                    mm_token_type_ids=encoded.mm_token_type_ids[None])
    states = out.last_hidden_state[0][encoded.mm_token_type_ids == 1]
    want = torch.nn.functional.normalize(states, dim=-1) @ torch.as_tensor(query)
    np.testing.assert_allclose(scores, want.numpy().reshape(scores.shape), atol=1e-5)
    prefix = embedder.patch_scores(Item(image=picture), query[:16] / np.linalg.norm(query[:16]))  # Matryoshka
    want = torch.nn.functional.normalize(states[:, :16], dim=-1) @ torch.as_tensor(query[:16] / np.linalg.norm(query[:16]))
    np.testing.assert_allclose(prefix, want.numpy().reshape(scores.shape), atol=1e-5)
    with pytest.raises(InputError, match="one image"):
        embedder.patch_scores(Item(text="no picture"), query)


def test_patch_regions_tile_the_picture():
    from vlsearch.grounding import patch_regions

    grid = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.9]]
    best, second = patch_regions(grid, (400, 200), top=2)
    assert (best["kind"], best["score"], best["box"], best["norm"]) == ("dense", 0.9, [300, 100, 400, 200],
                                                                       [0.75, 0.5, 1.0, 1.0])
    assert best["approximate"] is True and second["box"] == [200, 100, 300, 200] and best["line"] is None
    turned = patch_regions(grid, (400, 200), turned=6, top=1)[0]  # shown upright: 200 x 400
    assert turned["box"] == map_box([300, 100, 400, 200], (400, 200), (400, 200), 6) == [0, 300, 100, 400]
    assert lines_label([best]) == "" and lines_label([best, {**best, "kind": "text", "line": 4}]) == "line 4"


def test_search_adds_dense_regions_when_asked(tmp_path, embedder_path, embedder):
    from ingest_files import write_text_pdf

    (tmp_path / "docs").mkdir()
    write_text_pdf(tmp_path / "docs" / "report.pdf", 1, text="Quarterly revenues grew")
    collection = Collection(str(tmp_path / "c"), model=str(embedder_path), loaded_embedder=embedder)
    collection.add([tmp_path / "docs"], workers=0, options=ExtractOptions(ocr="never", max_pixels=300 * 400))
    (plain,) = collection.search("quarterly revenue", rerank=False)
    (dense,) = collection.search("quarterly revenue", rerank=False, dense_regions=True)
    assert dense.regions[: len(plain.regions)] == plain.regions  # word regions first, unchanged
    extra = dense.regions[len(plain.regions):]
    assert len(extra) == 5 and all(r["kind"] == "dense" and r["approximate"] for r in extra)
    assert [r["score"] for r in extra] == sorted((r["score"] for r in extra), reverse=True)
    widths = {r["box"][2] - r["box"][0] for r in extra}
    assert all(0 <= v <= 1 for r in extra for v in r["norm"]) and max(widths) - min(widths) <= 1  # grid cells
