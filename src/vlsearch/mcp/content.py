"""What the MCP tools answer: text an agent reads (source, page or time span, scores) and images it sees
(thumbnails, a page at the model's resolution, a few frames of a video segment)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from ..collection import Result
from ..grounding import lines_label
from ..ingest.extractors import to_rgb
from ..locator import Located

SNIPPET_CHARS = 600  # of a result's text, in search answers (get_item gives the whole text)


def json_result(data: Any) -> CallToolResult:
    """Structured data, also as JSON text (for clients that read text only)."""
    return CallToolResult(content=[text(json.dumps(data, indent=1, ensure_ascii=False))],
                          structured_content=data if isinstance(data, dict) else {"result": data})


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def jpeg(data: bytes) -> ImageContent:
    return ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type="image/jpeg")


def image_jpeg(image: Image.Image, quality: int = 90) -> ImageContent:
    """A PIL image as JPEG image content (RGBA composited on white, as the models see it)."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, "JPEG", quality=quality)
    return jpeg(buffer.getvalue())


def clock(seconds: float) -> str:
    """Seconds as m:ss.s ("1:05.0")."""
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def place(item: Located, source: str) -> str:
    """Where an item is: "report.pdf, page 3", "clip.mp4, 0:05.0-0:10.0 (5.0-10.0 s)", "notes.txt, chunk 2"."""
    if item.page is not None:
        return f"{source}, page {item.page}"
    if item.start is not None:
        end = item.end if item.end is not None else item.start
        return f"{source}, {clock(item.start)}-{clock(end)} ({item.start:.1f}-{end:.1f} s)"
    if item.chunk is not None:
        return f"{source}, chunk {item.chunk}"
    return source


def scores(result: Result) -> str:
    parts = [f"{name} {value:.4f}" for name, value in (("rerank", result.rerank_score), ("vector", result.vector_score),
                                                       ("bm25", result.lexical_score)) if value is not None]
    return f"score {result.score:.4f} ({', '.join(parts)})"


def ordering(results: list[Result], reranked: bool) -> str:
    """How the results are ordered, from the scores they carry: ", reranked", ", by BM25" ..."""
    if reranked:
        return ", reranked"
    kinds = [name for name, present in (("vector similarity", any(r.vector_score is not None for r in results)),
                                        ("BM25", any(r.lexical_score is not None for r in results))) if present]
    return f", by {' and '.join(kinds)}" + (" (fused)" if len(kinds) == 2 else "") if kinds else ""


def search_result(collection: str, results: list[Result], reranked: bool, thumbnails: bool) -> CallToolResult:
    """A header, then per result a text block (rank, scores, place, modality, id, text snippet) followed by
    its thumbnail; the results as structured content too (without thumbnails)."""
    blocks: list[Any] = [text(f"{len(results)} results from collection {collection!r}{ordering(results, reranked)}.")]
    for r in results:
        snippet = " ".join(r.text.split())
        snippet = snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS] + "..."
        lines = [f"#{r.rank} {scores(r)}", f"source: {place(r, r.source)}", f"modality: {r.modality}; id: {r.id}"]
        lines += [f"text: {snippet}"] if snippet else []
        lines += [f"note: {r.note}"] if r.note else []
        lines += [f"query words at: {lines_label(r.regions)}, {len(r.regions)} regions (get_item with a region "
                  "and the query shows just that crop)"] if r.regions else []
        blocks.append(text("\n".join(lines)))
        if thumbnails and r.thumbnail:
            blocks.append(jpeg(r.thumbnail))
    data = {"collection": collection, "reranked": reranked, "results": [r.to_dict(thumbnail=False) for r in results]}
    for entry in data["results"]:
        entry.pop("thumbnail", None)
    return CallToolResult(content=blocks, structured_content=data)
