"""Plain text for ingestion: the visible text of HTML, and overlapping chunks cut on boundaries."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from ..errors import InputError

__all__ = ["html_to_text", "chunk_text"]

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object", "canvas"})
_PARAGRAPH = frozenset({"p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
                        "blockquote", "pre", "table", "ul", "ol", "dl", "form", "figure", "hr", "title",
                        "h1", "h2", "h3", "h4", "h5", "h6"})
_LINE = frozenset({"br", "li", "tr", "dt", "dd", "figcaption", "caption", "option"})


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _PARAGRAPH or tag in _LINE:
            self.parts.append("\n\n" if tag in _PARAGRAPH else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML document: tags, scripts and styles dropped, blocks on their own lines.

    Example:
        >>> html_to_text("<h1>Title</h1><script>x()</script><p>One &amp; two</p>")
        'Title\\n\\nOne & two'
    """
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _cut(text: str, start: int, end: int) -> int:
    """Where a chunk of ``text[start:end]`` should end: after a paragraph, line, sentence or word."""
    floor = start + (end - start) // 2
    for separator, kept in (("\n\n", 0), ("\n", 0), (". ", 1), ("! ", 1), ("? ", 1), ("; ", 1), (" ", 0),
                            ("\t", 0)):
        at = text.rfind(separator, floor, end - kept + len(separator))  # the kept part must fit
        if at > start:
            return at + kept
    return end


def chunk_text(text: str, chunk_chars: int = 1500, chunk_overlap: int = 200) -> list[tuple[int, str]]:
    """Cut text into chunks of at most ``chunk_chars`` characters, each starting about
    ``chunk_overlap`` characters before the previous one ended.

    Cuts fall on paragraph, line, sentence or word boundaries when one lies in the second
    half of the window; a chunk starts at the beginning of a word (so the overlap can be a
    word longer). Returns (offset, chunk) pairs.

    Example:
        >>> chunk_text("one two three four five six", chunk_chars=10, chunk_overlap=4)
        [(0, 'one two'), (4, 'two three'), (8, 'three four'), (14, 'four five'), (19, 'five six')]
    """
    if chunk_chars < 1 or not 0 <= chunk_overlap < chunk_chars:
        raise InputError(f"need chunk_chars >= 1 and 0 <= chunk_overlap < chunk_chars, got "
                         f"{chunk_chars} and {chunk_overlap}")
    length, out = len(text), []
    start = _skip_space(text, 0)
    while start < length:
        end = length if start + chunk_chars >= length else _cut(text, start, start + chunk_chars)
        body = text[start:end].rstrip()
        if body:
            out.append((start, body))
        if end >= length:
            break
        following = end - chunk_overlap
        if following <= start:
            following = end
        elif not text[following].isspace() and not text[following - 1].isspace():
            # mid-word: back to the start of that word, unless it began this chunk
            back = following
            while back > start and not text[back - 1].isspace():
                back -= 1
            following = back if back > start else following
        start = _skip_space(text, following)
    return out


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at
