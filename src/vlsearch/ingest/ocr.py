"""Text from pixels, offline: OCR for PDF pages without a text layer, images and (optionally) video frames.

Engines are a registry (``ENGINES``), each a class with ``read(image) -> OcrText``:

- ``tesseract``: the ``tesseract`` program (Debian's ``tesseract-ocr``), any installed language;
  the better reader of Latin scripts;
- ``rapidocr``: PP-OCR detection and recognition models on onnxruntime, shipped inside the
  ``rapidocr-onnxruntime`` wheel (Chinese and English; no download, no network). Its model often
  drops the spaces between English words, which lexical search then cannot split.

``auto`` picks tesseract when the program is installed, else rapidocr; a collection records the
engine it resolved to.

An engine is loaded once per process (extraction runs it in the decoding workers, never on the
model's thread). A picture the engine cannot read fails only its OCR: the caller records why.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..errors import InputError, MediaError, MissingExtraError

OCR_MODES = ("never", "auto", "always")
#: the most pixels an engine reads (4096 x 4096): a larger picture is reduced first, since the engines'
#: buffers grow with its pixels (tesseract takes ~0.5 GB over 42 MP) and text that large stays legible
OCR_MAX_PIXELS = 4096 * 4096


def usable_text_layer(text: str) -> bool:
    """Whether a PDF page's text layer is worth keeping: a few letters or digits at least (a scan
    often carries none, or a stray mark)."""
    return sum(c.isalnum() for c in text) >= 4


@dataclass
class OcrText:
    """What an engine read: the text (lines in reading order) and its words with boxes.

    ``words``: ``[text, [x0, y0, x1, y1], confidence]`` in pixels of the picture read.
    """

    text: str
    words: list[list[Any]] = field(default_factory=list)

    def metadata(self, engine: str, image: Image.Image) -> dict[str, Any]:
        return {"engine": engine, "width": image.width, "height": image.height, "words": self.words}


class Engine(Protocol):
    name: str

    def read(self, image: Image.Image) -> OcrText: ...


class RapidOcr:
    """PP-OCR (v4 mobile) through rapidocr-onnxruntime; one thread, so that workers do not contend."""

    name = "rapidocr"
    languages = ("ch", "en")

    def __init__(self, lang: str | None) -> None:
        if lang and lang not in self.languages:
            raise InputError(f"the rapidocr engine reads {' and '.join(self.languages)} only, not {lang!r}; "
                             "use the tesseract engine for other languages")
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise MissingExtraError("rapidocr-onnxruntime", "ocr") from exc
        self._ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)

    def read(self, image: Image.Image) -> OcrText:
        import numpy as np

        lines, _ = self._ocr(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), return_word_box=True)
        texts, words = [], []
        for line in lines or []:
            texts.append(line[1])
            words += _words(line[1], line[3] if len(line) > 3 else [], line[4] if len(line) > 4 else [],
                            line[0], float(line[2]))
        return OcrText("\n".join(texts), words)


def _words(text: str, boxes: list[Any], chars: list[str], line_box: list[Any], confidence: float) -> list[list[Any]]:
    """Group character boxes into words (split on spaces); the line's box when characters are missing."""
    if not boxes or len(boxes) != len(chars):
        return [[word, _bounds(line_box), round(confidence, 3)] for word in text.split()]
    out, current, spans = [], "", []
    for char, box in [*zip(chars, boxes), (" ", None)]:
        if char.strip():
            current += char
            spans.append(box)
        elif current:
            out.append([current, _bounds([p for b in spans for p in b]), round(confidence, 3)])
            current, spans = "", []
    return out


def _bounds(points: list[Any]) -> list[int]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))]


class Tesseract:
    """The ``tesseract`` program, words and boxes from its TSV output."""

    name = "tesseract"

    def __init__(self, lang: str | None) -> None:
        self.program = shutil.which("tesseract")
        if self.program is None:
            raise InputError("the tesseract engine needs the tesseract program: apt-get install tesseract-ocr "
                             "(plus tesseract-ocr-LANG for other languages)")
        self.lang = lang or "eng"

    def read(self, image: Image.Image) -> OcrText:
        with tempfile.TemporaryDirectory(prefix="vlsearch-ocr-") as tmp:
            path = Path(tmp) / "page.png"
            (image if image.mode == "RGB" else image.convert("RGB")).save(path)
            try:
                done = subprocess.run([self.program, str(path), "stdout", "-l", self.lang, "tsv"],
                                      capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                raise MediaError("tesseract took more than 120 s") from None
        if done.returncode != 0:
            raise MediaError(f"tesseract failed: {done.stderr.strip()[:200]}")
        lines: dict[tuple[str, ...], list[str]] = {}
        words = []
        for row in done.stdout.splitlines()[1:]:
            cols = row.split("\t")
            if len(cols) < 12 or not cols[11].strip() or float(cols[10]) < 0:
                continue
            left, top, width, height = (int(c) for c in cols[6:10])
            words.append([cols[11], [left, top, left + width, top + height], round(float(cols[10]) / 100, 3)])
            lines.setdefault(tuple(cols[1:5]), []).append(cols[11])
        return OcrText("\n".join(" ".join(ws) for ws in lines.values()), words)


ENGINES: dict[str, type] = {"rapidocr": RapidOcr, "tesseract": Tesseract}


def resolve_engine(name: str) -> str:
    """``name``, or for "auto" the engine this machine has: tesseract if installed, else rapidocr."""
    if name != "auto":
        return name
    return "tesseract" if shutil.which("tesseract") else "rapidocr"


@lru_cache(maxsize=4)
def engine(name: str, lang: str | None) -> Engine:
    """The engine ``name`` for ``lang``, loaded once per process."""
    name = resolve_engine(name)
    if name not in ENGINES:
        raise InputError(f"unknown OCR engine {name!r}; expected one of {sorted(ENGINES)}")
    return ENGINES[name](lang)


def blank(image: Image.Image) -> bool:
    """Whether a picture is (nearly) one flat tone, or too small for a line of text: nothing to read."""
    if min(image.size) < 8:
        return True
    low, high = image.convert("L").getextrema()
    return high - low < 24


def read_text(image: Image.Image, name: str, lang: str | None) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of one picture: the text read and ``{"ocr": {...words}}``, or ``{"ocr_error": why}``
    when the engine is missing or cannot read it (the picture is still embedded). A blank picture is
    not read: no text, no error."""
    if blank(image):
        return "", {}
    factor = math.ceil(math.sqrt(image.width * image.height / OCR_MAX_PIXELS))
    if factor > 1:  # the words' boxes are then in the reduced picture's pixels, its size in the metadata
        image = image.reduce(factor)
    try:
        reader = engine(name, lang)
        found = reader.read(image)
    except (InputError, MediaError, MissingExtraError) as exc:
        return "", {"ocr_error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - an engine's own failure fails only this OCR
        return "", {"ocr_error": f"{name} could not read the picture ({type(exc).__name__}: {exc})"[:300]}
    return found.text, {"ocr": found.metadata(reader.name, image)}
