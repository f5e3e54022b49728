"""What discovery reports: ``Found`` entries, file kinds by extension, glob matching, content hashes.

A source is named by one string: a local path, an object URI (``s3://bucket/key``) or an archive
member (``/data/a.zip!/dir/page.pdf``, ``s3://bucket/b.tar.gz!/x.png``); record ids derive from it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import MediaError

__all__ = ["Kind", "Found", "EXTENSIONS", "OFFICE_EXTENSIONS", "kind_of", "matches", "content_hash", "hash_stream"]

Kind = Literal["pdf", "image", "video", "text", "office"]

#: documents LibreOffice renders to PDF (see ``ingest.office``)
OFFICE_EXTENSIONS = (".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods", ".rtf", ".doc", ".ppt", ".xls")

EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf",
    **{ext: "image" for ext in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")},
    **{ext: "video" for ext in (".mp4", ".mov", ".mkv", ".webm", ".avi")},
    **{ext: "text" for ext in (".txt", ".md", ".markdown", ".html", ".htm")},
    **{ext: "office" for ext in OFFICE_EXTENSIONS},
}


@dataclass(frozen=True)
class Found:
    """One file met by ``discover``: a local file, an object in a bucket, or an archive member.

    Attributes:
        path: absolute path of a local file (symlinks resolved when the entry is valid), or the
            source string of an object or archive member (``s3://b/k``, ``/d/a.zip!/m.pdf``).
        kind: "pdf", "image", "video", "text", "office", or ``None`` for an unsupported file.
        size: bytes.
        mtime: modification time (seconds since the epoch).
        error: why the entry cannot be used (``None`` when it can).
        relative: the POSIX path below the root it was found under (what filters match).
        etag: the object store's version tag (objects only; "" otherwise).
        folder: the entry stands for a folder, prefix or archive that could not be listed: what
            lies below it is unknown, not gone (``prune`` keeps it).

    Example:
        >>> Found(Path("/data/a.pdf"), "pdf", size=1234, mtime=1.7e9, relative="a.pdf").ok
        True
    """

    path: Path | str
    kind: Kind | None
    size: int = 0
    mtime: float = 0.0
    error: str | None = None
    relative: str = ""
    etag: str = ""
    folder: bool = False

    @property
    def ok(self) -> bool:
        """A supported file without error: ready to extract."""
        return self.kind is not None and self.error is None

    @property
    def source(self) -> str:
        """The string that names this file in records, reports and messages."""
        return str(self.path)


def kind_of(path: str | Path) -> Kind | None:
    """The kind of file by extension (case-insensitive), ``None`` when unsupported.

    Example:
        >>> kind_of("Scan.PDF"), kind_of("s3://bucket/notes.docx"), kind_of("data.bin")
        ('pdf', 'office', None)
    """
    return EXTENSIONS.get(os.path.splitext(str(path))[1].lower())


def matches(relative: str, pattern: str) -> bool:
    """Whether a POSIX relative path matches a glob pattern.

    ``*``, ``?`` and ``[...]`` stay within one path component, ``**`` spans any number
    of components (none included). A pattern without ``/`` matches the last component
    at any depth (like ``.gitignore``); a pattern ending in ``/`` matches everything below.
    Matching is case-sensitive.

    Example:
        >>> matches("docs/2024/a.pdf", "*.pdf"), matches("docs/2024/a.pdf", "docs/*.pdf")
        (True, False)
        >>> matches("docs/2024/a.pdf", "docs/**/*.pdf")
        True
    """
    pattern = pattern.strip()
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        pattern = "**/" + pattern
    return _match_parts(tuple(p for p in pattern.split("/") if p), tuple(p for p in relative.split("/") if p))


def _match_parts(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_parts(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_parts(rest, parts[1:])


def hash_stream(stream: BinaryIO, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of what ``stream`` reads to its end, as 64 hex digits."""
    digest = hashlib.sha256()
    while block := stream.read(chunk_bytes):
        digest.update(block)
    return digest.hexdigest()


def content_hash(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of a local file's bytes, as 64 hex digits, read in chunks.

    Raises:
        MediaError: the file cannot be read (names the file and the reason).

    Example:
        >>> content_hash("empty.txt")
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    try:
        with open(path, "rb") as handle:
            return hash_stream(handle, chunk_bytes)
    except OSError as exc:
        raise MediaError(f"{str(path)!r}: cannot read ({exc.strerror or exc})") from None
