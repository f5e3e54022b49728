"""Real media files for tests: images, a PDF page, videos, and broken ones."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from vlsearch.testing import gradient_image, write_video


def write_pdf_page_png(directory: Path) -> Path:
    """A two-page PDF (made with Pillow), page 2 rendered to PNG with pypdfium2."""
    import pypdfium2 as pdfium

    pages = [gradient_image(300, 400, seed=s) for s in (7, 8)]
    pdf = directory / "doc.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=72)
    document = pdfium.PdfDocument(str(pdf))
    image = document[1].render(scale=1.5).to_pil()
    document.close()
    out = directory / "doc-page2.png"
    image.save(out)
    return out


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def make_media(directory: Path) -> dict[str, Path]:
    """Every file the model tests use, good and bad, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, (w, h, seed) in {"small": (64, 48, 1), "wide": (320, 120, 2), "tall": (90, 260, 3),
                               "large": (700, 500, 4)}.items():
        files[name] = directory / f"{name}.png"
        gradient_image(w, h, seed).save(files[name])
    files["jpeg"] = directory / "photo.jpg"
    gradient_image(200, 150, 5).save(files["jpeg"], quality=90)
    files["rgba"] = directory / "alpha.png"
    gradient_image(120, 90, 6, mode="RGBA").save(files["rgba"])
    files["pdf_page"] = write_pdf_page_png(directory)
    files["video"] = write_video(directory / "clip.mp4")
    files["long_video"] = write_video(directory / "long.mp4", frames=80, fps=4, size=(128, 72))
    frames = []
    for i in range(5):
        frames.append(directory / f"frame{i}.png")
        gradient_image(80, 60, 10 + i).save(frames[-1])
    files.update({f"frame{i}": f for i, f in enumerate(frames)})
    # broken inputs
    files["truncated_png"] = directory / "truncated.png"
    files["truncated_png"].write_bytes(files["large"].read_bytes()[:600])
    files["not_image"] = directory / "notes.png"
    files["not_image"].write_bytes(b"this is plain text, not a picture\n" * 4)
    files["empty"] = directory / "empty.png"
    files["empty"].write_bytes(b"")
    files["bomb"] = png_bomb(directory / "bomb.png")
    whole = write_video(directory / "indexed.mp4", frames=80, fps=4, size=(128, 72), faststart=True).read_bytes()
    files["truncated_video"] = directory / "truncated.mp4"  # index intact, last 40% of the data gone
    files["truncated_video"].write_bytes(whole[: len(whole) * 6 // 10])
    files["not_video"] = directory / "fake.mp4"
    files["not_video"].write_bytes(b"\x00\x01garbage" * 100)
    return files
