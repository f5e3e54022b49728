"""Find the files to ingest: a sorted recursive walk with glob filters, and content hashes.

Problems met on the way (unreadable directories, broken links, symlink loops, special
files) are reported as ``Found`` entries with an ``error``, never raised, so one bad
corner of a tree does not stop the walk.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

from ..errors import MediaError

__all__ = ["Kind", "Found", "EXTENSIONS", "kind_of", "matches", "discover", "content_hash"]

Kind = Literal["pdf", "image", "video", "text"]

EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf",
    **{ext: "image" for ext in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")},
    **{ext: "video" for ext in (".mp4", ".mov", ".mkv", ".webm", ".avi")},
    **{ext: "text" for ext in (".txt", ".md", ".markdown", ".html", ".htm")},
}


@dataclass(frozen=True)
class Found:
    """One file met by ``discover``.

    Attributes:
        path: absolute path (symlinks resolved when the entry is valid).
        kind: "pdf", "image", "video", "text", or ``None`` for an unsupported file.
        size: bytes.
        mtime: modification time (seconds since the epoch).
        error: why the entry cannot be used (``None`` when it can).
        relative: the POSIX path below the root it was found under (what filters match).

    Example:
        >>> Found(Path("/data/a.pdf"), "pdf", size=1234, mtime=1.7e9, relative="a.pdf").ok
        True
    """

    path: Path
    kind: Kind | None
    size: int = 0
    mtime: float = 0.0
    error: str | None = None
    relative: str = ""

    @property
    def ok(self) -> bool:
        """A supported file without error: ready to extract."""
        return self.kind is not None and self.error is None


def kind_of(path: str | Path) -> Kind | None:
    """The kind of file by extension (case-insensitive), ``None`` when unsupported.

    Example:
        >>> kind_of("Scan.PDF"), kind_of("notes.rtf")
        ('pdf', None)
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


def discover(paths: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = (),
             follow_symlinks: bool = True) -> Iterator[Found]:
    """Walk files and directories, yielding every file met, in a deterministic order.

    Roots are visited in the given order; inside a directory, entries are visited sorted
    by name, depth first. A file is yielded when it matches one of ``include`` (all files
    when empty) and none of ``exclude``; directories matching ``exclude`` are not entered.
    Patterns match the path relative to its root (a root file: its name), see ``matches``.
    A file reached twice (overlapping roots, links) is yielded once.

    Args:
        paths: files and directories.
        include: glob patterns a file must match (any of them).
        exclude: glob patterns that drop a file or prune a directory.
        follow_symlinks: enter linked directories and read linked files; when ``False``
            symbolic links met during the walk are skipped (roots are always followed).

    Returns:
        An iterator of ``Found``; unsupported files have ``kind=None``; unreadable
        directories or files, broken links and symlink loops have an ``error``.

    Example:
        >>> for found in discover(["docs"], include=["*.pdf", "*.png"], exclude=["drafts/"]):
        ...     print(found.relative, found.kind, found.error or "")
    """
    walker = _Walker(tuple(include), tuple(exclude), follow_symlinks)
    for root in paths:
        yield from walker.root(Path(root))


class _Walker:
    def __init__(self, include: tuple[str, ...], exclude: tuple[str, ...], follow: bool) -> None:
        self.include, self.exclude, self.follow = include, exclude, follow
        self.seen_files: set[str] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def root(self, root: Path) -> Iterator[Found]:
        absolute = Path(os.path.abspath(root))
        try:
            info = os.stat(absolute)
        except OSError as exc:
            yield self.error(absolute, root.name or str(root), exc)
            return
        if stat.S_ISDIR(info.st_mode):
            yield from self.directory(absolute, "", info, ())
        else:
            yield from self.file(absolute, absolute.name, info)

    def directory(self, path: Path, relative: str, info: os.stat_result,
                  ancestors: tuple[tuple[int, int], ...]) -> Iterator[Found]:
        key = (info.st_dev, info.st_ino)
        if key in ancestors:
            yield Found(path, None, error="symlink loop: this link leads back to a directory above it",
                        relative=relative)
            return
        if key in self.seen_dirs:  # reached before through another path: its files were yielded then
            return
        self.seen_dirs.add(key)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield self.error(path, relative, exc, what="cannot read directory")
            return
        for entry in entries:
            child = f"{relative}/{entry.name}" if relative else entry.name
            entry_path = path / entry.name
            try:
                is_link = entry.is_symlink()
                if is_link and not self.follow:
                    continue
                child_info = entry.stat(follow_symlinks=True)
            except OSError as exc:
                yield self.error(entry_path, child, exc)
                continue
            if stat.S_ISDIR(child_info.st_mode):
                if not any(matches(child, p) for p in self.exclude):
                    yield from self.directory(entry_path, child, child_info, ancestors + (key,))
            else:
                yield from self.file(entry_path, child, child_info)

    def file(self, path: Path, relative: str, info: os.stat_result) -> Iterator[Found]:
        if self.include and not any(matches(relative, p) for p in self.include):
            return
        if any(matches(relative, p) for p in self.exclude):
            return
        resolved = os.path.realpath(path)
        if resolved in self.seen_files:
            return
        self.seen_files.add(resolved)
        kind = kind_of(path)
        error = None
        if not stat.S_ISREG(info.st_mode):
            error = "not a regular file"
        elif kind is not None and not os.access(resolved, os.R_OK):
            error = "cannot read file (permission denied)"
        yield Found(Path(resolved), kind, info.st_size, info.st_mtime, error, relative)

    @staticmethod
    def error(path: Path, relative: str, exc: OSError, what: str = "cannot access") -> Found:
        if os.path.islink(path) and not os.path.exists(path):
            reason = "symlink loop" if exc.errno == errno.ELOOP else "broken symbolic link"
        else:
            reason = f"{what} ({exc.strerror or exc})"
        return Found(path, kind_of(path), error=reason, relative=relative)


def content_hash(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits, read in chunks.

    Raises:
        MediaError: the file cannot be read (names the file and the reason).

    Example:
        >>> content_hash("empty.txt")
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk_bytes):
                digest.update(block)
    except OSError as exc:
        raise MediaError(f"{str(path)!r}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()
