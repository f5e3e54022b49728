"""Ingestion: discovery, PDF/image/video/text extraction, ids, errors, crash-isolated workers."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlsearch.errors import InputError, MediaError
from vlsearch.locator import Locator
from vlsearch.ingest import (ExtractOptions, Part, content_hash, discover, extract, extract_all, kind_of,
                             piece_item, plan_parts)
from vlsearch.ingest import video_frames
from vlsearch.ingest import workers as ingest_workers
from vlsearch.ingest.discover import matches
from vlsearch.ingest.extractors import chunk_text, html_to_text, plan_segments
from vlsearch.ingest.workers import CRASH_HOOK_ENV, CRASHED
from vlsearch.media.images import MediaLimits
from vlsearch.media.pdf import render_pages

from ingest_files import (HTML, PROSE, assert_part_flags, assert_same_item, assert_same_pieces, by_file,
                          make_ingest_files, merged, tasks_for, write_broken_page_pdf, write_text_pdf)

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_ingest_files(tmp_path_factory.mktemp("ingest"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(path: Path, kind: str, **options) -> list:
    return extract(path, kind, content_hash(path), ExtractOptions(**options))  # type: ignore[arg-type]


def assert_thumbnail(data: bytes | None) -> None:
    assert data is not None and data[:3] == b"\xff\xd8\xff"
    thumb = Image.open(io.BytesIO(data))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256


def assert_names(exc: pytest.ExceptionInfo, path: Path, *reasons: str) -> None:
    message = str(exc.value)
    assert path.name in message, message
    assert any(reason in message for reason in reasons), message


# -- discovery ------------------------------------------------------------------------------------

def make_tree(root: Path) -> Path:
    for rel in ["b.pdf", "a.png", "sub/z.mp4", "sub/deep/c.txt", "sub/deep/x.xyz", "Sub2/B.MD", "drafts/d.pdf"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 10)
    return root


def test_discover_order_kinds_and_metadata(tmp_path):
    root = make_tree(tmp_path / "tree")
    found = list(discover([root]))
    assert [f.relative for f in found] == ["Sub2/B.MD", "a.png", "b.pdf", "drafts/d.pdf", "sub/deep/c.txt",
                                           "sub/deep/x.xyz", "sub/z.mp4"]
    assert [f.kind for f in found] == ["text", "image", "pdf", "pdf", "text", None, "video"]
    assert all(f.path.is_absolute() and f.size == 10 and f.mtime > 0 and f.error is None for f in found)
    assert found == list(discover([root]))  # deterministic
    assert kind_of("x.JPEG") == "image" and kind_of("x.webm") == "video" and kind_of("x.htm") == "text"


def test_discover_include_exclude(tmp_path):
    root = make_tree(tmp_path / "tree")
    rel = lambda **kw: [f.relative for f in discover([root], **kw)]  # noqa: E731
    assert rel(include=["*.pdf"]) == ["b.pdf", "drafts/d.pdf"]
    assert rel(include=["*.pdf"], exclude=["drafts/"]) == ["b.pdf"]
    assert rel(include=["sub/**"]) == ["sub/deep/c.txt", "sub/deep/x.xyz", "sub/z.mp4"]
    assert rel(include=["sub/*"]) == ["sub/z.mp4"]
    assert rel(exclude=["deep", "*.png", "Sub2/**"]) == ["b.pdf", "drafts/d.pdf", "sub/z.mp4"]
    assert matches("a/b/c.pdf", "**/c.pdf") and matches("c.pdf", "**/c.pdf") and not matches("a/c.pdf", "b/*")
    # a file given directly is matched by its name; duplicates across roots are yielded once
    assert [f.relative for f in discover([root / "b.pdf", root, root / "b.pdf"], include=["b.*"])] == ["b.pdf"]


def test_discover_symlinks_and_missing(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "sub" / "loop").symlink_to(root)  # a directory link back to an ancestor
    (root / "self").symlink_to(root / "self")  # a link to itself
    (root / "dangling.pdf").symlink_to(root / "nowhere.pdf")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.jpg").write_bytes(b"y")
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    found = {f.relative: f for f in discover([root, tmp_path / "missing"])}
    assert "symlink loop" in found["sub/loop"].error
    assert "symlink loop" in found["self"].error
    assert "broken symbolic link" in found["dangling.pdf"].error
    assert found["linked/e.jpg"].ok and found["linked/e.jpg"].path == (tmp_path / "elsewhere" / "e.jpg").resolve()
    assert "no such file" in found["missing"].error.lower()
    assert sum(1 for f in found.values() if f.ok and f.relative.endswith("b.pdf")) == 1
    plain = [f.relative for f in discover([root], follow_symlinks=False)]
    assert "linked/e.jpg" not in plain and "self" not in plain and "b.pdf" in plain


@pytest.mark.skipif(ROOT, reason="root reads files whatever their permissions")
def test_unreadable_dir_and_file(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "sub").chmod(0)
    (root / "b.pdf").chmod(0)
    try:
        found = {f.relative: f for f in discover([root])}
        assert "cannot read directory" in found["sub"].error
        assert "permission denied" in found["b.pdf"].error
        with pytest.raises(MediaError) as exc:
            content_hash(root / "b.pdf")
        assert_names(exc, root / "b.pdf", "cannot read")
        with pytest.raises(MediaError) as exc:
            extract(root / "b.pdf", "pdf", "0" * 64, ExtractOptions())
        assert_names(exc, root / "b.pdf", "cannot read")
    finally:
        (root / "sub").chmod(0o755)
        (root / "b.pdf").chmod(0o644)


def test_content_hash(files):
    assert content_hash(files["pdf"]) == digest(files["pdf"])
    assert content_hash(files["empty_txt"]) == hashlib.sha256(b"").hexdigest()


# -- PDF ------------------------------------------------------------------------------------------

def test_pdf_pages_with_text_layer(files):
    pieces = run(files["pdf"], "pdf")
    assert [p.locator for p in pieces] == [Locator("pdf_page", page=n) for n in (1, 2, 3)]
    for number, piece in enumerate(pieces, 1):
        assert piece.modality == "pdf_page" and piece.page == number and piece.metadata["page_count"] == 3
        assert f"Hello page {number}" in piece.text
        assert piece.item.text is None  # the text layer is for display and keyword search only
        image = piece.item.image
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert 0.9 * 1843200 < image.width * image.height <= 1843200
        assert_thumbnail(piece.thumbnail)
    # a page renders within any pixel budget, keeping its aspect ratio
    page = next(render_pages(files["pdf"], max_pixels=300 * 400 // 4))
    assert page.image.size == (150, 200) and page.number == 1 and page.count == 3


def test_pdf_errors(files):
    cases = {"encrypted_pdf": ("encrypted",), "corrupt_pdf": ("corrupt",), "zero_page_pdf": ("no pages",),
             "empty_pdf": ("empty file",)}
    for key, reasons in cases.items():
        with pytest.raises(MediaError) as exc:
            run(files[key], "pdf")
        assert_names(exc, files[key], *reasons)
    with pytest.raises(MediaError) as exc:
        run(files["many_pdf"], "pdf", max_pages=5)
    assert_names(exc, files["many_pdf"], "12 pages, more than max_pages=5")
    assert len(run(files["many_pdf"], "pdf", max_pages=12)) == 12
    with pytest.raises(MediaError) as exc:
        run(files["pdf"], "pdf", limits=MediaLimits(max_file_bytes=100))
    assert_names(exc, files["pdf"], "larger than 100")


# -- images ---------------------------------------------------------------------------------------

def test_images(files):
    for key in ("png", "jpg", "webp", "bmp", "tiff", "gif"):
        (piece,) = run(files[key], "image")
        assert piece.locator == Locator("image") and piece.modality == "image"
        assert piece.item.image.mode == "RGB" and piece.text == ""
        assert_thumbnail(piece.thumbnail)
    (gif,) = run(files["gif"], "image")
    assert gif.item.image.getpixel((5, 5)) == (255, 0, 0) and gif.metadata["frames"] == 2  # first frame
    (png,) = run(files["png"], "image")
    assert png.item.image.getpixel((10, 10)) == (255, 0, 0)
    assert png.item.image.getpixel((70, 10)) == (255, 255, 255)  # transparent -> white, as qwen-vl-utils
    (jpg,) = run(files["jpg"], "image")
    assert Image.open(io.BytesIO(jpg.thumbnail)).size == (256, 192)


def test_image_errors(files, tmp_path):
    with pytest.raises(MediaError) as exc:
        run(files["jpg"], "image", limits=MediaLimits(max_image_pixels=1000))
    assert_names(exc, files["jpg"], "decompression bomb")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    with pytest.raises(MediaError) as exc:
        run(fake, "image")
    assert_names(exc, fake, "not an image")
    with pytest.raises(MediaError) as exc:
        run(files["empty_pdf"], "image")
    assert_names(exc, files["empty_pdf"], "empty file")


# -- video ----------------------------------------------------------------------------------------

def test_video_segments(files):
    pieces = run(files["video"], "video", segment_seconds=5.0)
    assert [(p.start, p.end) for p in pieces] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert [p.locator for p in pieces] == [Locator("video", start=a, end=b) for a, b in ((0, 5), (5, 10), (10, 12))]
    assert [len(p.item.video) for p in pieces] == [5, 5, 2]  # 1 fps
    for piece in pieces:
        assert piece.modality == "video" and piece.item.fps == 1.0
        assert all(isinstance(f, Image.Image) and f.mode == "RGB" and f.size == (96, 64) for f in piece.item.video)
        assert all(piece.start <= t < piece.end for t in piece.metadata["frame_times"])
        assert_thumbnail(piece.thumbnail)
    # frames really come from their own time: the grey level of the top half encodes the frame index
    grey = [np.asarray(f)[4:28].mean() for f in pieces[1].item.video]
    assert np.allclose(grey, [(i * 9) % 256 for i in (44, 52, 60, 68, 76)], atol=3), grey
    (whole,) = run(files["video"], "video")  # shorter than one segment: one segment
    assert (whole.start, whole.end, len(whole.item.video)) == (0.0, 12.0, 12)


def test_video_frame_caps():
    options = ExtractOptions(segment_seconds=5.0, video_max_frames=3)
    plan = plan_segments(96, 8.0, options)
    assert [len(s.indices) for s in plan] == [3, 3, 2] and plan[0].fps == pytest.approx(0.6)
    one_frame = plan_segments(1, 8.0, ExtractOptions())
    assert one_frame[0].indices == [0, 0] and one_frame[0].end == 0.125  # duplicated to two frames
    dense = plan_segments(16, 8.0, ExtractOptions(video_fps=100.0))  # more than the source has
    assert dense[0].indices == list(range(16))


def test_video_errors(files):
    for key in ("truncated_mp4", "truncated_indexed_mp4"):
        with pytest.raises(MediaError) as exc:
            run(files[key], "video", segment_seconds=5.0)
        assert_names(exc, files[key], "truncated", "not a readable video")
    with pytest.raises(MediaError) as exc:
        run(files["video"], "video", limits=MediaLimits(max_video_seconds=5.0))
    assert_names(exc, files["video"], "longer than the limit")
    with pytest.raises(MediaError) as exc:
        run(files["empty_pdf"], "video")
    assert_names(exc, files["empty_pdf"], "empty file")


# -- text -----------------------------------------------------------------------------------------

def test_text_chunks_overlap(files):
    pieces = run(files["txt"], "text", chunk_chars=300, chunk_overlap=80)
    assert [p.locator for p in pieces] == [Locator("text", chunk=i) for i in range(len(pieces))] and len(pieces) > 5
    for before, after in zip(pieces, pieces[1:]):
        assert len(before.text) <= 300 and before.item.text == before.text and before.modality == "text"
        shared = before.metadata["offset"] + len(before.text) - after.metadata["offset"]
        assert 0 < shared <= 80 + 40  # about chunk_overlap (a chunk starts on a word)
        assert PROSE[after.metadata["offset"]:][:shared] == before.text[-shared:]
    assert all(p.text[-1] in ".0123456789" for p in pieces[:-1])  # cuts on sentence boundaries
    assert {w for p in pieces for w in p.text.split()} == set(PROSE.split())  # nothing lost
    assert chunk_text("x" * 25, 10, 2) == [(0, "x" * 10), (8, "x" * 10), (16, "x" * 9)]


def test_markdown_and_html(files):
    (md,) = run(files["md"], "text")
    assert md.text == "# Title\n\nSome *markdown* text." and md.thumbnail is None
    (html,) = run(files["html"], "text")
    assert html.text == "Doc title\n\nHeading & more\n\nFirst paragraph text.\n\nSecond bold part\n\none\ntwo"
    assert "secret" not in html_to_text(HTML) and "color" not in html_to_text(HTML)
    for key in ("empty_txt", "blank_txt"):
        with pytest.raises(MediaError) as exc:
            run(files[key], "text")
        assert_names(exc, files[key], "empty file")


# -- ids, options, pickling -----------------------------------------------------------------------

def test_ids_deterministic_and_path_based(files, tmp_path):
    """The same file gives the same record ids; a copy elsewhere the same locators (and its own ids)."""
    copy = tmp_path / "renamed.pdf"
    shutil.copy(files["pdf"], copy)
    first, again, moved = run(files["pdf"], "pdf"), run(files["pdf"], "pdf"), run(copy, "pdf")
    assert [p.record_id for p in first] == [p.record_id for p in again]
    assert [p.locator for p in first] == [p.locator for p in moved]
    assert [p.record_id for p in moved] == [p.locator.record_id(str(copy)) for p in first]
    assert moved[0].source == str(copy)
    restored = pickle.loads(pickle.dumps(first))
    assert restored[0].item.image.tobytes() == first[0].item.image.tobytes()


def test_bad_options_and_kinds(files):
    for bad in ({"chunk_overlap": 1500}, {"video_max_frames": 1}, {"min_pixels": 0}, {"segment_seconds": 0}):
        with pytest.raises(InputError):
            ExtractOptions(**bad)
    with pytest.raises(InputError, match="unsupported kind"):
        extract(files["unsupported"], "binary", digest(files["unsupported"]))  # type: ignore[arg-type]


# -- parts and workers ----------------------------------------------------------------------------

def test_extract_all_matches_in_process(files):
    paths = [files[k] for k in ("pdf", "jpg", "video", "txt", "corrupt_pdf", "empty_txt", "unsupported")]
    options = ExtractOptions(segment_seconds=5.0)
    serial = by_file(list(extract_all(tasks_for(paths), options, workers=0)))
    pooled = by_file(list(extract_all(tasks_for(paths), options, workers=2, max_in_flight=3)))
    assert serial.keys() == pooled.keys() == {p.name for p in paths}
    for name, results in serial.items():
        (pieces, error), (pooled_pieces, pooled_error) = merged(results), merged(pooled[name])
        assert [p.record_id for p in pieces] == [p.record_id for p in pooled_pieces] and error == pooled_error
    assert "corrupt" in merged(pooled["corrupt.pdf"])[1] and "corrupt.pdf" in merged(pooled["corrupt.pdf"])[1]
    assert "empty file" in merged(pooled["empty.txt"])[1]
    assert "unsupported file type" in merged(pooled["data.xyz"])[1]
    assert len(merged(pooled["clip.mp4"])[0]) == 3 and len(pooled["clip.mp4"]) == 3  # a part per segment
    assert [(r.part, r.parts, r.last) for r in pooled["doc.pdf"]] == [(0, 1, True)]


def test_plan_parts(files):
    h = digest(files["many_pdf"])
    parts = plan_parts(files["many_pdf"], "pdf", h, ExtractOptions(pages_per_part=5))
    assert [(p.index, p.count, p.first, p.stop, p.total) for p in parts] == [(0, 3, 1, 6, 12), (1, 3, 6, 11, 12),
                                                                             (2, 3, 11, 13, 12)]
    video = plan_parts(files["video"], "video", digest(files["video"]),
                       ExtractOptions(segment_seconds=5.0, segments_per_part=2))
    assert [(p.first, p.stop, p.total, len(p.segments)) for p in video] == [(0, 2, 3, 2), (2, 3, 3, 1)]
    assert video[1].video.frames == 96 and video[1].segments[0].start == 10.0
    (whole,) = plan_parts(files["txt"], "text", digest(files["txt"]))
    assert (whole.count, whole.first, whole.stop) == (1, 0, 1)
    with pytest.raises(MediaError, match="encrypted"):
        plan_parts(files["encrypted_pdf"], "pdf", digest(files["encrypted_pdf"]))
    with pytest.raises(InputError, match="pages_per_part"):
        ExtractOptions(pages_per_part=0)


def test_parts_give_the_pieces_of_extract(files, tmp_path, monkeypatch):
    pdf = write_text_pdf(tmp_path / "seven.pdf", 7, size=(120, 160))
    videos = [files[k] for k in ("video", "h264") if k in files]
    cut = dict(max_pixels=200 * 200, segment_seconds=2.0, video_fps=2.0)
    whole = {p.name: extract(p, kind_of(p), digest(p), ExtractOptions(**cut, pages_per_part=99, segments_per_part=99))
             for p in [pdf, *videos]}
    assert [len(whole[p.name]) for p in [pdf, *videos]] == [7] + [6] * len(videos)
    starts: list[float] = []  # the time of the first frame each video decode sees
    original = video_frames._timed_frames

    def watched(*args):
        for number, (time, frame) in enumerate(original(*args)):
            if number == 0:
                starts.append(time)
            yield time, frame

    monkeypatch.setattr(video_frames, "_timed_frames", watched)
    options = ExtractOptions(**cut, pages_per_part=2, segments_per_part=1)
    for workers in (0, 2):
        results = list(extract_all(tasks_for([pdf, *videos]), options, workers=workers, max_in_flight=3))
        assert_part_flags(results)
        groups = by_file(results)
        assert [r.parts for r in groups["seven.pdf"]] == [4] * 4 and [r.parts for r in groups["clip.mp4"]] == [6] * 6
        for name, rs in groups.items():
            pieces, error = merged(rs)
            assert error is None
            assert_same_pieces(pieces, whole[name])
    # in process, each part's decode began at a keyframe shortly before its segment (2 s each), not at 0
    assert len(starts) == 6 * len(videos)
    assert all(2 * (k % 6) - 1.5 <= start <= 2 * (k % 6) + 0.25 for k, start in enumerate(starts)), starts
    for path in videos:  # and the frames are those of their planned times: decode order, counted
        import av

        with av.open(str(path)) as container:
            frames = [np.asarray(f.to_image()) for f in container.decode(container.streams.video[0])]
        for piece in whole[path.name]:
            for image, time in zip(piece.item.video, piece.metadata["frame_times"]):
                assert np.array_equal(np.asarray(image), frames[round(time * 8)])


def test_piece_item_rebuilds_one_piece(files):
    options = ExtractOptions(max_pixels=200 * 200, segment_seconds=2.0, video_fps=2.0)
    pdf = extract(files["pdf"], "pdf", digest(files["pdf"]), options)
    assert_same_item(piece_item(str(files["pdf"]), Locator("pdf_page", page=2), options), pdf[1].item)
    for key in [k for k in ("video", "h264") if k in files]:
        for piece in extract(files[key], "video", digest(files[key]), options)[2:4]:
            item = piece_item(str(files[key]), piece.locator, options)
            assert_same_item(item, piece.item)
    (png,) = extract(files["png"], "image", digest(files["png"]), options)
    assert_same_item(piece_item(str(files["png"]), Locator("image"), options), png.item)
    with pytest.raises(MediaError, match="no video segment"):
        piece_item(str(files["video"]), Locator("video", start=1.0, end=3.0), options)
    with pytest.raises(InputError):
        piece_item(str(files["txt"]), Locator("text", chunk=0), options)


def test_failed_later_part_gives_one_error(files, tmp_path):
    broken = write_broken_page_pdf(tmp_path / "broken.pdf", good_pages=3)
    with pytest.raises(MediaError, match="page 4 cannot be loaded"):
        extract(broken, "pdf", digest(broken))
    options = ExtractOptions(max_pixels=200 * 200, pages_per_part=1)
    for workers in (0, 2):
        results = list(extract_all(tasks_for([broken, files["pdf"]]), options, workers=workers, max_in_flight=2))
        assert_part_flags(results)
        groups = by_file(results)
        failed = groups["broken.pdf"][-1]
        assert "page 4 cannot be loaded" in failed.error and (failed.part, failed.parts, failed.last) == (3, 4, True)
        assert all(r.ok for r in groups["broken.pdf"][:-1]) and len(groups["doc.pdf"]) == 3
    assert [r.part for r in by_file(list(extract_all(tasks_for([broken]), options, workers=0)))["broken.pdf"]] == [
        0, 1, 2, 3]


def test_parts_out_of_order(tmp_path, monkeypatch):
    """Parts completing in any order: one ``last`` per file; a failing part stops its file at once."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    sizes = {"a.txt": 4, "b.txt": 1, "bad.txt": 4, "c.txt": 3}
    for name in sizes:
        (tmp_path / name).write_text(name)

    def plan(path, kind, digest, options):
        n = sizes[Path(path).name]
        return [Part(path, kind, digest, index=i, count=n, first=i, stop=i + 1, total=n) for i in range(n)]

    def part(p, options):
        time.sleep(0.05 * (p.count - p.index))  # later parts finish first
        if Path(p.path).name == "bad.txt" and p.index == 2:
            raise MediaError(f"{p.path!r}: part 2 is broken")
        return [f"{Path(p.path).name}#{p.index}"]

    monkeypatch.setattr(ingest_workers, "_make_executor", lambda n: ThreadPoolExecutor(n))
    monkeypatch.setattr(ingest_workers, "_plan_work", plan)
    monkeypatch.setattr(ingest_workers, "_part_work", part)
    (alone,) = by_file(list(extract_all(tasks_for([tmp_path / "a.txt"]), workers=4, max_in_flight=4))).values()
    assert [(r.part, r.last) for r in alone] == [(3, False), (2, False), (1, False), (0, True)]
    results = list(extract_all(tasks_for([tmp_path / n for n in sizes]), ExtractOptions(), workers=4, max_in_flight=4))
    assert_part_flags(results)
    groups = by_file(results)
    assert "part 2 is broken" in groups["bad.txt"][-1].error and groups["bad.txt"][-1].part == 2
    assert [len(groups[n]) for n in ("a.txt", "b.txt", "c.txt")] == [4, 1, 3]


def test_parts_in_flight_are_bounded(tmp_path, monkeypatch):
    pdf = write_text_pdf(tmp_path / "long.pdf", 60, size=(100, 100), text="")
    pools: list = []
    monkeypatch.setattr(ingest_workers, "_POOL_HOOK", pools.append)
    results = []
    for result in extract_all(tasks_for([pdf]), ExtractOptions(max_pixels=100 * 100, pages_per_part=4), workers=2,
                              max_in_flight=2):
        assert len(pools[0].in_flight) <= 2  # submitted and not yet yielded, this one included
        results.append(result)
    assert pools[0].peak == 2
    assert_part_flags(results)
    assert len(results) == 15 and all(len(r.pieces) == 4 for r in results)
    assert [p.page for p in merged(results)[0]] == list(range(1, 61))


def test_worker_crash_fails_only_that_file(files, tmp_path, monkeypatch):
    crasher = tmp_path / "crash.txt"
    crasher.write_text("a file whose decoder kills its worker")
    paths = [files["txt"], files["md"], crasher, files["jpg"], files["html"], files["pdf"]]
    monkeypatch.setenv(CRASH_HOOK_ENV, crasher.name)
    results = list(extract_all(tasks_for(paths), ExtractOptions(), workers=2, max_in_flight=4))
    assert_part_flags(results)
    by_name = by_file(results)
    assert len(results) == len(paths) and by_name.keys() == {p.name for p in paths}
    assert by_name["crash.txt"][0].error == f"{str(crasher.resolve())!r}: {CRASHED}"
    assert all(r.ok and r.pieces for name, rs in by_name.items() if name != "crash.txt" for r in rs)


def test_worker_crash_in_one_part(files, monkeypatch):
    monkeypatch.setenv(CRASH_HOOK_ENV, "doc.pdf@1")  # the second part of doc.pdf kills its worker
    paths = [files["pdf"], files["many_pdf"], files["txt"]]
    options = ExtractOptions(max_pixels=100 * 100, pages_per_part=1)
    results = list(extract_all(tasks_for(paths), options, workers=2, max_in_flight=3))
    assert_part_flags(results)
    groups = by_file(results)
    crashed = groups["doc.pdf"][-1]
    assert crashed.error == f"{str(files['pdf'].resolve())!r}: {CRASHED}" and crashed.part == 1
    assert [r.ok for r in groups["many.pdf"]] == [True] * 12 and groups["prose.txt"][0].ok
