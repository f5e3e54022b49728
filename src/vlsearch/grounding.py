"""Where on a page or image a query's words are: regions from the word boxes ingestion stored.

A PDF page keeps its text layer's words (``metadata["layer_words"]``, pixels of the page as rendered
at the collection's budget) and OCR keeps the words it read (``metadata["ocr"]``, pixels of the picture
read). ``regions`` matches the query's words against them (case- and accent-insensitive, a light English
stemmer, stop words left out), joins consecutive matches into phrases, cuts each phrase into one box per
line and maps the boxes to the source: a page as rendered, an image upright (its EXIF orientation
applied, as viewers show it). Each region::

    {"kind": "text", "source": "text_layer" | "ocr", "text": "quarterly revenue", "score": 1.0,
     "line": 12, "box": [x0, y0, x1, y1], "norm": [x0, y0, x1, y1]}

``box`` is in pixels of the source, ``norm`` the same box over its width and height (0-1); ``score`` is
the share of the query's distinct words the phrase holds; ``line`` counts the page's lines from 1, in
reading order. Nothing here reads a file: a collection built before word boxes were kept has none.
``patch_regions`` turns a patch-similarity grid (``Embedder.patch_scores``) into regions of kind
"dense", an approximation.

Example:
    >>> meta = {"width": 200, "height": 100, "layer_words": [["Quarterly", [10, 10, 60, 20]],
    ...                                                      ["revenues", [64, 10, 120, 20]]]}
    >>> [(r["text"], r["score"], r["box"]) for r in regions("quarterly revenue", meta, "pdf_page")]
    [('Quarterly revenues', 1.0, [10, 10, 120, 20])]
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from .errors import InputError

__all__ = ["regions", "patch_regions", "terms", "fold", "stem", "lines_label", "map_box", "crop_box", "MAX_REGIONS"]

MAX_REGIONS = 20  # word regions per result, best first
DENSE_TOP = 5  # dense regions per result (the most similar patches)
STOPWORDS = frozenset("a an and are as at be by do for from has have in is it its of on or that the this to was "
                      "were will with".split())
_WORD = re.compile(r"\w+")
#: the word lists a record's metadata may hold -> the name regions give their source
SOURCES = {"layer_words": "text_layer", "ocr": "ocr"}


def fold(text: str) -> str:
    """Lower case without accents ("Élan" -> "elan"); other scripts are kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def stem(token: str) -> str:
    """A light English stemmer (Harman's plural rules, then -ing and -ed on longer words): "revenues"
    and "revenue", "companies" and "company", "growing" and "grow" meet."""
    if len(token) > 4 and token.endswith("ies") and not token.endswith(("eies", "aies")):
        token = token[:-3] + "y"
    elif len(token) > 3 and token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        token = token[:-1]
    elif len(token) > 3 and token.endswith("s") and not token.endswith(("us", "ss")):
        token = token[:-1]
    if len(token) >= 6 and token.endswith(("ing", "ed")):
        token = token[:-3] if token.endswith("ing") else token[:-2]
    return token


def terms(text: str) -> list[str]:
    """The query's distinct words, folded and stemmed, stop words left out (unless it has only those)."""
    tokens = [stem(t) for t in _WORD.findall(fold(text))]
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    return list(dict.fromkeys(kept))


def regions(query: str | None, metadata: dict[str, Any], modality: str) -> list[dict[str, Any]]:
    """The regions of a page or image where ``query``'s words are, best first (at most ``MAX_REGIONS``);
    [] for other modalities, a query without words, or a record without word boxes."""
    wanted = terms(query or "")
    if not wanted or modality not in ("pdf_page", "image"):
        return []
    found: list[dict[str, Any]] = []
    for key, name in SOURCES.items():
        words, frame = _words_of(metadata, key)
        if words:
            found += _matches(words, frame, wanted, name, metadata)
    found.sort(key=lambda r: (-r["score"], r["source"], r["line"], r["box"][0]))
    return found[:MAX_REGIONS]


def patch_regions(scores: Any, size: tuple[int, int], turned: int = 1, top: int = DENSE_TOP) -> list[dict[str, Any]]:
    """The ``top`` cells of a patch-similarity grid (``Embedder.patch_scores``: rows x cols tiling a
    picture of ``size`` stored pixels) as regions of kind "dense", best first, boxes upright for EXIF
    orientation ``turned``. An approximation, labelled so (``approximate``)."""
    rows, cols = len(scores), len(scores[0])
    cells = sorted(((float(v), r, c) for r, row in enumerate(scores) for c, v in enumerate(row)), reverse=True)
    w, h = size
    return [{**_region("dense", "patches", "", round(v, 4), None,
                       map_box([c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows], size, size,
                               turned), _shown(size, turned)), "approximate": True}
            for v, r, c in cells[:top]]


def lines_label(found: Sequence[dict[str, Any]]) -> str:
    """Where the best word regions are, for a printed locator: "line 3", "lines 12-14", "lines 2, 5-6" or ""."""
    found = [r for r in found if r["kind"] == "text"]
    if not found:
        return ""
    best = max(r["score"] for r in found)
    source = next(r["source"] for r in found if r["score"] == best)
    lines = sorted({r["line"] for r in found if r["score"] == best and r["source"] == source})
    runs: list[list[int]] = []
    for line in lines:
        if runs and line == runs[-1][-1] + 1:
            runs[-1].append(line)
        else:
            runs.append([line])
    spans = ", ".join(f"{run[0]}" if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
    return f"line{'s' if len(lines) > 1 else ''} {spans}"


def map_box(box: Sequence[float], frame: tuple[int, int], size: tuple[int, int], turned: int = 1) -> list[int]:
    """A box in pixels of a picture of size ``frame`` mapped to the source: scaled to ``size`` (the
    source's stored pixels), then turned upright for EXIF orientation ``turned`` (1-8)."""
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    w, h = size
    corners = [_upright(x * sx, y * sy, w, h, turned) for x, y in ((box[0], box[1]), (box[2], box[3]))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    out_w, out_h = _shown(size, turned)
    return [max(0, round(min(xs))), max(0, round(min(ys))), min(out_w, round(max(xs))), min(out_h, round(max(ys)))]


def crop_box(given: str | Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A crop of a picture of ``size``: "x0,y0,x1,y1" (or four numbers) in its pixels, kept inside it.

    Raises:
        InputError: not four numbers, or no pixels left inside the picture.
    """
    try:
        values = [float(v) for v in (given.split(",") if isinstance(given, str) else given)]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(v == v and abs(v) < 1e9 for v in values):
        raise InputError(f"box must be four numbers x0,y0,x1,y1 in pixels, not {str(given)[:80]!r}")
    x0, y0, x1, y1 = values
    box = (max(0, int(x0)), max(0, int(y0)), min(size[0], round(x1)), min(size[1], round(y1)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InputError(f"box {x0:g},{y0:g},{x1:g},{y1:g} holds no pixels of the {size[0]}x{size[1]} picture")
    return box


# -- matching -------------------------------------------------------------------------------------

def _words_of(metadata: dict[str, Any], key: str) -> tuple[list[Any], tuple[int, int]]:
    """A word list and the size of the picture its boxes are in."""
    value = metadata.get(key)
    if isinstance(value, dict):  # OCR: the words with the size of the picture read
        return value.get("words") or [], (value.get("width") or 0, value.get("height") or 0)
    return value or [], (metadata.get("width") or 0, metadata.get("height") or 0)


def _matches(words: list[Any], frame: tuple[int, int], wanted: list[str], name: str,
             metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """Phrases of consecutive matching words (stop words may sit inside), one region per line each."""
    if min(frame) <= 0:
        return []
    size = (metadata.get("width") or frame[0], metadata.get("height") or frame[1])
    turned = metadata.get("orientation") or 1
    shown = _shown(size, turned)
    lines = _line_numbers([w[1] for w in words])
    keys = [[stem(t) for t in _WORD.findall(fold(str(w[0])))] for w in words]
    hits = [{t for t in k if t in wanted} for k in keys]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(words):
        if not hits[i]:
            i += 1
            continue
        end = i + 1  # extend over matches, and over stop words followed by a match
        while end < len(words):
            gap = end
            while gap < len(words) and not hits[gap] and keys[gap] and all(t in STOPWORDS for t in keys[gap]):
                gap += 1
            if gap < len(words) and hits[gap] and gap - end <= 2:
                end = gap + 1
            else:
                break
        covered = set().union(*hits[i:end])
        score = round(len(covered) / len(wanted), 4)
        for line in dict.fromkeys(lines[i:end]):
            members = [j for j in range(i, end) if lines[j] == line]
            box = [min(words[j][1][0] for j in members), min(words[j][1][1] for j in members),
                   max(words[j][1][2] for j in members), max(words[j][1][3] for j in members)]
            out.append(_region("text", name, " ".join(str(words[j][0]) for j in members), score, line,
                               map_box(box, frame, size, turned), shown))
        i = end
    return out


def _region(kind: str, source: str, text: str, score: float, line: int | None, box: list[int],
            shown: tuple[int, int]) -> dict[str, Any]:
    norm = [round(box[0] / shown[0], 4), round(box[1] / shown[1], 4), round(box[2] / shown[0], 4),
            round(box[3] / shown[1], 4)]
    return {"kind": kind, "source": source, "text": text, "score": score, "line": line, "box": box, "norm": norm}


def _line_numbers(boxes: list[Sequence[float]]) -> list[int]:
    """The line (from 1) of each word, in reading order: a word starts a new line when its middle is
    outside the previous word's height, or it starts left of where the previous word began."""
    numbers, line, previous = [], 0, None
    for box in boxes:
        middle = (box[1] + box[3]) / 2
        if previous is None or not previous[1] <= middle <= previous[3] or box[0] < previous[0]:
            line += 1
        numbers.append(line)
        previous = box
    return numbers


def _shown(size: tuple[int, int], turned: int) -> tuple[int, int]:
    """The size of a stored picture shown upright."""
    return (size[1], size[0]) if turned in (5, 6, 7, 8) else size


def _upright(x: float, y: float, w: float, h: float, turned: int) -> tuple[float, float]:
    """A point of a stored image (w x h) where it lands once the image is shown upright."""
    return {1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y), 5: (y, x), 6: (h - y, x),
            7: (h - y, w - x), 8: (y, w - x)}.get(turned, (x, y))
