"""Ingestion: files -> pieces ready to embed.

``discover`` walks paths, bucket URIs and archives and reports what it finds (kind, size, errors);
``fingerprint`` gives a file's content fingerprint (``content_hash`` of a local file's bytes; an
object's version tag); ``sources`` opens any source the same way; ``extract`` cuts one file into ``Piece`` objects (PDF pages, an
image, video segments, text chunks), each carrying the ``Item`` to embed; ``plan_parts``
and ``extract_part`` do the same in bounded steps (runs of pages or video segments);
``extract_all`` runs those steps for many files in crash-isolated worker processes,
yielding one ``ExtractResult`` per part; ``piece_item`` rebuilds one piece's model input.

Example:
    >>> from vlsearch.ingest import discover, extract_all, fingerprint
    >>> tasks = ((f, fingerprint(f)) for f in discover(["docs", "s3://bucket/scans"]) if f.ok)
    >>> pieces = [p for r in extract_all(tasks) if r.ok for p in r.pieces]
"""

from __future__ import annotations

from .archives import ArchiveLimits
from .discover import EXTENSIONS, Found, Kind, content_hash, discover, kind_of
from .extractors import ExtractOptions, Part, Piece, extract, extract_part, iter_extract, piece_item, plan_parts
from .sources import fingerprint
from .workers import ExtractResult, extract_all

__all__ = ["EXTENSIONS", "Found", "Kind", "content_hash", "discover", "kind_of", "ExtractOptions", "Part", "Piece",
           "extract", "extract_part", "iter_extract", "piece_item", "plan_parts", "ExtractResult", "extract_all",
           "ArchiveLimits", "fingerprint"]
