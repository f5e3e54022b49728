"""Files for the ingestion tests (PDFs with a text layer, encrypted or broken, videos, text, images),
and checks on ``extract_all`` results."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
from PIL import Image

from vlsearch.ingest import Found, content_hash, discover

# -- file makers ----------------------------------------------------------------------------------

def write_text_pdf(path: Path, pages: int, size: tuple[float, float] = (300, 400), text: str = "Hello page") -> Path:
    """A PDF whose pages carry a real text layer, written with pypdfium2's page-object API."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument.new()
    for number in range(1, pages + 1):
        page = document.new_page(*size)
        if text:
            obj = raw.FPDFPageObj_NewTextObj(document.raw, b"Helvetica", ctypes.c_float(14))
            encoded = f"{text} {number}\x00".encode("utf-16-le")
            raw.FPDFText_SetText(obj, (ctypes.c_ushort * (len(encoded) // 2)).from_buffer_copy(encoded))
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 20, size[1] - 40)
            raw.FPDFPage_InsertObject(page.raw, obj)
            assert raw.FPDFPage_GenerateContent(page.raw)
        page.close()
    document.save(str(path))
    document.close()
    return path


def write_raw_pdf(path: Path, objects: list[bytes], trailer_extra: bytes = b"") -> Path:
    """A hand-written PDF: numbered objects, an exact xref table, a trailer."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + trailer_extra + b" >>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


def write_encrypted_pdf(path: Path) -> Path:
    """A PDF with a Standard security handler (RC4, R2) whose empty password does not open it."""
    page_tree = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                 b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
                 b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -44 >>"]
    file_id = b"<" + b"ab" * 16 + b">"
    return write_raw_pdf(path, page_tree, b"/Encrypt 4 0 R /ID [" + file_id + b" " + file_id + b"]")


def write_broken_page_pdf(path: Path, good_pages: int = 3) -> Path:
    """A PDF listing ``good_pages + 1`` pages whose last page object is not a page (cannot be loaded)."""
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(good_pages + 1))
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"
    return write_raw_pdf(path, [b"<< /Type /Catalog /Pages 2 0 R >>",
                                b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % (good_pages + 1),
                                *[page] * good_pages, b"<< /Type /Font >>"])


def write_video(path: Path, frames: int = 96, fps: int = 8, size: tuple[int, int] = (96, 64),
                faststart: bool = False, codec: str = "mpeg4", codec_options: dict | None = None) -> Path:
    import av

    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)  # noise: real packet sizes
            array[: height // 2] = (i * 9) % 256  # top half: a grey level that encodes the frame index
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


PROSE = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} talks about topic {p * 7 + s}." for s in range(12)) for p in range(8))
HTML = """<!doctype html><html><head><title>Doc title</title><style>body { color: red }</style>
<script>var secret = "do not index";</script></head><body><h1>Heading &amp; more</h1>
<p>First   paragraph
text.</p><div>Second <b>bold</b> part</div><noscript>hidden</noscript><ul><li>one</li><li>two</li></ul></body></html>"""


def make_ingest_files(d: Path) -> dict[str, Path]:
    """Every file the ingestion tests read, written into ``d``."""
    f: dict[str, Path] = {}
    f["pdf"] = write_text_pdf(d / "doc.pdf", 3)
    f["many_pdf"] = write_text_pdf(d / "many.pdf", 12, size=(100, 100), text="")
    f["encrypted_pdf"] = write_encrypted_pdf(d / "locked.pdf")
    f["zero_page_pdf"] = write_raw_pdf(d / "nopages.pdf", [b"<< /Type /Catalog /Pages 2 0 R >>",
                                                           b"<< /Type /Pages /Kids [] /Count 0 >>"])
    f["corrupt_pdf"] = d / "corrupt.pdf"
    f["corrupt_pdf"].write_bytes(b"%PDF-1.7\n" + os.urandom(300))
    rgba = Image.new("RGBA", (80, 60), (0, 0, 255, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 40, 60))
    f["png"] = d / "alpha.png"
    rgba.save(f["png"])
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    for ext, options in {"jpg": {"quality": 90}, "webp": {}, "bmp": {}, "tiff": {}}.items():
        f[ext] = d / f"picture.{ext}"
        picture.save(f[ext], **options)
    f["gif"] = d / "anim.gif"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(f["gif"], save_all=True, duration=100,
                                                  append_images=[Image.new("RGB", (40, 30), (0, 0, 255))])
    f["video"] = write_video(d / "clip.mp4")
    if "libx264" in __import__("av").codecs_available:  # B-frames, a keyframe every 10 frames: seeks matter
        f["h264"] = write_video(d / "bframes.mkv", codec="libx264",
                                codec_options={"x264-params": "keyint=10:min-keyint=10:bframes=2:scenecut=0"})
    whole = write_video(d / "whole.mp4").read_bytes()  # index (moov) at the end: cut, it is gone
    f["truncated_mp4"] = d / "truncated.mp4"
    f["truncated_mp4"].write_bytes(whole[: len(whole) // 2])
    indexed = write_video(d / "indexed.mp4", faststart=True).read_bytes()  # index first: data missing
    f["truncated_indexed_mp4"] = d / "truncated_indexed.mp4"
    f["truncated_indexed_mp4"].write_bytes(indexed[: len(indexed) * 6 // 10])
    (d / "whole.mp4").unlink()
    (d / "indexed.mp4").unlink()
    f["txt"] = d / "prose.txt"
    f["txt"].write_text(PROSE)
    f["md"] = d / "readme.md"
    f["md"].write_text("# Title\n\nSome *markdown* text.\n")
    f["html"] = d / "page.html"
    f["html"].write_text(HTML)
    f["empty_txt"] = d / "empty.txt"
    f["empty_txt"].write_bytes(b"")
    f["blank_txt"] = d / "blank.md"
    f["blank_txt"].write_text("  \n\n \t\n")
    f["empty_pdf"] = d / "empty.pdf"
    f["empty_pdf"].write_bytes(b"")
    f["unsupported"] = d / "data.xyz"
    f["unsupported"].write_bytes(b"whatever")
    return f


# -- extract_all results ---------------------------------------------------------------------------

def tasks_for(paths: list[Path]) -> list[tuple[Found, str]]:
    found = [f for p in paths for f in discover([p])]
    return [(f, content_hash(f.path) if f.error is None else "") for f in found]


def by_file(results: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for result in results:
        out.setdefault(result.found.path.name, []).append(result)
    return out


def merged(results: list) -> tuple[list, str | None]:
    """A file's pieces in part order, and its error."""
    ok = sorted((r for r in results if r.ok), key=lambda r: r.part)
    return [p for r in ok for p in r.pieces], next((r.error for r in results if not r.ok), None)


def assert_part_flags(results: list) -> None:
    """Per file: one ``last`` result, the final one; a failure is a single error result, the final one;
    a success has every part exactly once."""
    for name, rs in by_file(results).items():
        assert [r.last for r in rs] == [False] * (len(rs) - 1) + [True], name
        errors = [r for r in rs if not r.ok]
        if errors:
            assert errors == [rs[-1]], name
        else:
            assert sorted(r.part for r in rs) == list(range(rs[0].parts)), name
            assert all(r.parts == rs[0].parts for r in rs), name


def assert_same_pieces(got: list, want: list) -> None:
    assert [p.record_id for p in got] == [p.record_id for p in want]
    for a, b in zip(got, want):
        assert (a.text, a.page, a.start, a.end, a.metadata, a.thumbnail) == (b.text, b.page, b.start, b.end,
                                                                              b.metadata, b.thumbnail)
        assert_same_item(a.item, b.item)


def assert_same_item(a, b) -> None:
    assert (a.image is None) == (b.image is None) and a.fps == b.fps and a.text == b.text
    if a.image is not None:
        assert a.image.size == b.image.size and a.image.tobytes() == b.image.tobytes()
    assert len(a.video or []) == len(b.video or [])
    assert all(np.array_equal(np.asarray(f), np.asarray(g)) for f, g in zip(a.video or [], b.video or []))
