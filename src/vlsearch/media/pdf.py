"""PDF pages with pypdfium2: each page rendered to RGB pixels, plus its text layer.

Pages are rendered at the scale that fills the pixel budget (``max_pixels``), so the
model sees a document page at the resolution it would keep anyway. Every failure is a
``MediaError`` naming the file and the reason: not a PDF or corrupt, encrypted
(password-protected), no pages, more pages than allowed, a page that cannot be loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from ..errors import InputError, MediaError
from .images import MediaLimits, describe, local_file, read_source

__all__ = ["PdfPage", "render_pages", "page_count", "page_scale"]

# PDFium's FPDF_ERR_* load error codes
_ERR_FILE, _ERR_FORMAT, _ERR_PASSWORD, _ERR_SECURITY = 2, 3, 4, 5


@dataclass
class PdfPage:
    """One rendered page.

    Attributes:
        image: the page as an RGB ``PIL.Image``.
        text: the page's text layer ("" for scanned pages without one).
        number: 1-based page number.
        count: pages in the document.
        scale: pixels per PDF point used for rendering (1.0 = 72 dpi).
        words: the text layer's words, ``[text, [x0, y0, x1, y1]]`` in pixels of ``image`` (crop box
            and page rotation applied, as rendered), in the text layer's order.
    """

    image: Image.Image
    text: str
    number: int
    count: int
    scale: float
    words: list[list[Any]] = field(default_factory=list)


def page_scale(width_pt: float, height_pt: float, max_pixels: int, min_pixels: int) -> float:
    """The render scale whose output (pypdfium2 rounds sizes up) fills ``max_pixels`` at most.

    The page is scaled up or down so that width x height pixels lands in
    [``min_pixels``, ``max_pixels``] (except for degenerate pages, where each side is kept >= 1 px).

    Example:
        >>> round(page_scale(612, 792, 1843200, 4096), 3)  # US Letter at about 140 dpi
        1.949
    """
    if width_pt <= 0 or height_pt <= 0:
        raise InputError(f"page size must be positive, not {width_pt} x {height_pt} pt")
    area = width_pt * height_pt
    ideal = math.sqrt(max_pixels / area)
    width, height = max(1, math.floor(width_pt * ideal)), max(1, math.floor(height_pt * ideal))
    if width * height < min_pixels:  # only for extreme strips, where rounding down loses much
        return math.sqrt(min_pixels / area) * (1 + 1e-9)
    # the largest scale with ceil(w*s) <= width and ceil(h*s) <= height; the margin absorbs float error
    return min(width / width_pt, height / height_pt) * (1 - 1e-9)


def page_count(path: str | Path, *, max_pages: int = 10000, limits: MediaLimits | None = None) -> int:
    """The number of pages of a PDF, after the checks ``render_pages`` makes; nothing is rendered.

    Example:
        >>> page_count("report.pdf")
        12
    """
    document, count = _checked(path, max_pages, limits)
    document.close()
    return count


def render_pages(path: str | Path, *, max_pixels: int = 1843200, min_pixels: int = 4096,
                 max_pages: int = 10000, limits: MediaLimits | None = None, first: int = 1,
                 last: int | None = None) -> Iterator[PdfPage]:
    """Render the pages of a PDF one by one, each with its text layer.

    The document is opened and checked at once (errors are raised by this call, not by
    the first ``next``); pages are rendered lazily and the document is closed when the
    iterator is exhausted or closed. A local file is read by PDFium on demand, not loaded whole.

    Args:
        path: the PDF file.
        max_pixels: the most pixels of one rendered page.
        min_pixels: the fewest pixels of one rendered page.
        max_pages: documents with more pages are refused (the caller decides what to do).
        limits: file-size cap (``max_file_bytes``); the defaults of ``MediaLimits`` when omitted.
        first, last: 1-based page range to render, inclusive (``last=None``: to the end).

    Returns:
        An iterator of ``PdfPage`` in page order.

    Raises:
        MediaError: not a PDF or corrupt, encrypted, no pages, too many pages, unreadable,
            ``first`` or ``last`` beyond the document.

    Example:
        >>> for page in render_pages("report.pdf", max_pixels=1024 * 1024):
        ...     print(page.number, page.count, page.image.size, page.text[:40])
    """
    if not 0 < min_pixels <= max_pixels:
        raise InputError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
    document, count = _checked(path, max_pages, limits)
    last = count if last is None else last
    if not 1 <= first <= last <= count:
        document.close()
        raise MediaError(f"{describe(path)}: pages {first} to {last} asked, the PDF has {count}")
    return _pages(document, describe(path), count, max_pixels, min_pixels, first, last)


def _checked(path: str | Path, max_pages: int, limits: MediaLimits | None) -> tuple[Any, int]:
    """The open document and its page count, refused when empty or over ``max_pages``."""
    if max_pages < 1:
        raise InputError(f"max_pages must be >= 1, not {max_pages}")
    limits = limits or MediaLimits()
    name = describe(path)
    local = local_file(path, limits)
    document = _open(local if local is not None else read_source(path, limits), name)
    try:
        count = len(document)
        if count == 0:
            raise MediaError(f"{name}: the PDF has no pages")
        if count > max_pages:
            raise MediaError(f"{name}: {count} pages, more than max_pages={max_pages}")
    except BaseException:
        document.close()
        raise
    return document, count


def _open(data: bytes | Path, name: str) -> Any:
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    # PDFium's last-error code is global and some load failures (an empty page tree) leave it
    # untouched: prime it with "file error", which loading from memory never sets itself (nor, in
    # practice, loading a path that ``local_file`` has just found readable).
    stale = raw.FPDF_LoadDocument(b"", None)
    if stale:
        raw.FPDF_CloseDocument(stale)
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == _ERR_PASSWORD:
            raise MediaError(f"{name}: encrypted PDF (password-protected), cannot be read") from None
        if code == _ERR_SECURITY:
            raise MediaError(f"{name}: encrypted PDF with an unsupported security handler") from None
        if code == _ERR_FILE:  # not set by this load (see above): PDFium refuses an empty page tree so
            raise MediaError(f"{name}: the PDF has no pages (empty or unreadable page tree)") from None
        if code == _ERR_FORMAT:
            raise MediaError(f"{name}: not a PDF or corrupt PDF ({exc})") from None
        raise MediaError(f"{name}: cannot open the PDF ({exc})") from None


def _pages(document: Any, name: str, count: int, max_pixels: int, min_pixels: int, first: int,
           last: int) -> Iterator[PdfPage]:
    import pypdfium2 as pdfium

    try:
        for index in range(first - 1, last):
            try:
                page = document[index]
            except pdfium.PdfiumError as exc:
                raise MediaError(f"{name}: page {index + 1} cannot be loaded ({exc})") from None
            try:
                yield _render(page, name, index + 1, count, max_pixels, min_pixels)
            finally:
                page.close()
    finally:
        document.close()


def _render(page: Any, name: str, number: int, count: int, max_pixels: int, min_pixels: int) -> PdfPage:
    import pypdfium2 as pdfium

    try:
        width_pt, height_pt = page.get_size()
        if not (width_pt > 0 and height_pt > 0):
            raise MediaError(f"{name}: page {number} has an empty size ({width_pt} x {height_pt} pt)")
        scale = page_scale(width_pt, height_pt, max_pixels, min_pixels)
        bitmap = page.render(scale=scale)
        textpage = page.get_textpage()
        try:
            image = bitmap.to_pil().convert("RGB")  # convert copies out of the bitmap buffer
            text = textpage.get_text_range()
            words = _words(textpage, bitmap.get_posconv(page))
        finally:
            textpage.close()
            bitmap.close()
    except pdfium.PdfiumError as exc:
        raise MediaError(f"{name}: page {number} cannot be rendered ({exc})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return PdfPage(image=image, text=text, number=number, count=count, scale=scale, words=words)


def _words(textpage: Any, posconv: Any) -> list[list[Any]]:
    """The words of a text page (runs of characters between spaces and line breaks), each with the
    union of its characters' font boxes in bitmap pixels. PDFium's own page-to-device mapping (crop
    box, rotation and scale as rendered) is affine: it is read once, at three points, and applied here."""
    import ctypes

    import pypdfium2.raw as raw

    far = 10_000.0  # pixels are integers: measure the transform over a long distance
    (ex, ey), (ax, ay), (cx, cy) = (posconv.to_bitmap(x, y) for x, y in ((0, 0), (far, 0), (0, far)))
    a, b, c, d = (ax - ex) / far, (ay - ey) / far, (cx - ex) / far, (cy - ey) / far
    words: list[list[Any]] = []
    chars: list[str] = []
    box = [math.inf, math.inf, -math.inf, -math.inf]
    rect, count = raw.FS_RECTF(), textpage.count_chars()
    for index in range(count + 1):  # one past the end: a space, closing the last word
        char = chr(raw.FPDFText_GetUnicode(textpage, index) or 32) if index < count else " "
        if char.isspace() or not char.isprintable():
            if chars and box[0] < box[2]:
                words.append(["".join(chars), [math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]),
                                               math.ceil(box[3])]])
            chars, box = [], [math.inf, math.inf, -math.inf, -math.inf]
            continue
        if not raw.FPDFText_GetLooseCharBox(textpage, index, ctypes.byref(rect)):
            continue
        for x, y in ((rect.left, rect.bottom), (rect.right, rect.top)):
            px, py = a * x + c * y + ex, b * x + d * y + ey
            box = [min(box[0], px), min(box[1], py), max(box[2], px), max(box[3], py)]
        chars.append(char)
    return words
