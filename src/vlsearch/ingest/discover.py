"""Find the files to ingest: a sorted recursive walk with glob filters, objects under bucket URIs,
and the members of zip and tar archives.

Problems met on the way (unreadable directories, broken links, symlink loops, special
files, buckets that cannot be listed, archives over a cap) are reported as ``Found`` entries
with an ``error``, never raised, so one bad corner of a tree does not stop the walk.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

from ..media.images import MediaLimits
from .archives import ArchiveLimits, archive_format
from .entries import EXTENSIONS, Found, Kind, content_hash, kind_of, matches
from .sources import is_uri, list_uri, members, plain_name_error

__all__ = ["Kind", "Found", "EXTENSIONS", "kind_of", "matches", "discover", "content_hash"]


def discover(paths: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = (),
             follow_symlinks: bool = True, archives: ArchiveLimits | None = None,
             limits: MediaLimits | None = None) -> Iterator[Found]:
    """Walk files and directories, yielding every file met, in a deterministic order.

    Roots are visited in the given order; inside a directory, entries are visited sorted
    by name, depth first. A file is yielded when it matches one of ``include`` (all files
    when empty) and none of ``exclude``; directories matching ``exclude`` are not entered.
    Patterns match the path relative to its root (a root file: its name), see ``matches``.
    A file reached twice (overlapping roots, links) is yielded once. A root that is a bucket
    URI (``s3://bucket/prefix``, ``gs://``, ``az://``) yields its objects, sorted by key. The
    members of zip and tar archives are yielded as files named ``archive.zip!/dir/member``
    (patterns match ``archive.zip!/dir/member`` below the root), within ``archives``' caps.

    Args:
        paths: files, directories and bucket URIs.
        include: glob patterns a file must match (any of them).
        exclude: glob patterns that drop a file or prune a directory.
        follow_symlinks: enter linked directories and read linked files; when ``False``
            symbolic links met during the walk are skipped, and a root that is a link or lies
            below one fails (give it with its links resolved).
        archives: caps on archives (``ArchiveLimits()`` when omitted).
        limits: file-size caps of archives read through copies (``MediaLimits()`` when omitted).

    Returns:
        An iterator of ``Found``; unsupported files have ``kind=None``; unreadable
        directories or files, broken links and symlink loops have an ``error``.

    Example:
        >>> for found in discover(["docs"], include=["*.pdf", "*.png"], exclude=["drafts/"]):
        ...     print(found.relative, found.kind, found.error or "")
    """
    walker = _Walker(tuple(include), tuple(exclude), follow_symlinks, archives or ArchiveLimits(),
                     limits or MediaLimits())
    for root in paths:
        if isinstance(root, str) and is_uri(root):
            yield from walker.objects(root)
        else:
            yield from walker.root(Path(root))


class _Walker:
    def __init__(self, include: tuple[str, ...], exclude: tuple[str, ...], follow: bool, archives: ArchiveLimits,
                 limits: MediaLimits) -> None:
        self.include, self.exclude, self.follow = include, exclude, follow
        self.archives, self.limits = archives, limits
        self.seen_files: set[str] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def wanted(self, relative: str) -> bool:
        """Whether the filters let a file through."""
        if self.include and not any(matches(relative, p) for p in self.include):
            return False
        return not any(matches(relative, p) for p in self.exclude)

    def objects(self, root: str) -> Iterator[Found]:
        for found in list_uri(root):
            if found.error is not None:
                yield found
            elif found.source not in self.seen_files and self.wanted(found.relative):
                self.seen_files.add(found.source)
                yield from self.expand(found)

    def expand(self, found: Found) -> Iterator[Found]:
        """A file as it is, or the members of an archive that pass the filters; a file whose name
        would read as an archive member is refused."""
        if found.error is None and (refused := plain_name_error(str(found.source))):
            found = replace(found, error=refused)
        if found.error is not None or not archive_format(found.source):
            yield found
            return
        for member in members(found.source, self.limits, self.archives, found.relative, self.follow):
            self.seen_files.add(member.source)  # a plain file of the same name (a folder "a.zip!") is left out
            if member.error is not None or self.wanted(member.relative):
                yield member

    def root(self, root: Path) -> Iterator[Found]:
        absolute = Path(os.path.abspath(root))
        if not self.follow and os.path.realpath(absolute) != str(absolute):
            yield Found(absolute, kind_of(absolute), error="a symbolic link lies on its path, and links are not "
                                                           "followed here", relative=root.name or str(root))
            return
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
            yield self.error(path, relative, exc, what="cannot read directory", folder=True)
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
        is_archive = archive_format(path.name) is not None
        if not is_archive and not self.wanted(relative):
            return
        if is_archive and any(matches(relative, p) for p in self.exclude):
            return
        resolved = os.path.realpath(path)
        if resolved in self.seen_files:
            return
        self.seen_files.add(resolved)
        kind = kind_of(path)
        error = None
        if not stat.S_ISREG(info.st_mode):
            error = "not a regular file"
        elif (kind is not None or is_archive) and not os.access(resolved, os.R_OK):
            error = "cannot read file (permission denied)"
        yield from self.expand(Found(Path(resolved), kind, info.st_size, info.st_mtime, error, relative))

    @staticmethod
    def error(path: Path, relative: str, exc: OSError, what: str = "cannot access", folder: bool = False) -> Found:
        if os.path.islink(path) and not os.path.exists(path):
            reason = "symlink loop" if exc.errno == errno.ELOOP else "broken symbolic link"
        else:
            reason = f"{what} ({exc.strerror or exc})"
        return Found(path, kind_of(path), error=reason, relative=relative, folder=folder)
