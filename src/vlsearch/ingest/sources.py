"""Sources: one way to list, stat, read and fingerprint local files, objects in buckets and archive members.

A source is a string: a local path, an object URI (``s3://bucket/key``, ``gs://``, ``az://``; see
``objects``) or an archive member (``/data/a.zip!/dir/page.pdf``, ``s3://b/x.tar.gz!/y.png``, and
nested, ``a.zip!/inner.tar!/z.pdf``; see ``archives``). Discovery, the decoding workers, reranking
(``piece_item``) and the server's media route all open sources through here, with the same caps.

Decoders read local files: ``local_copy`` gives the path of a local source as it is, and for any
other a private temporary copy (at most ``max_file_bytes``, checked while copying, removed when done;
a failed copy leaves nothing behind). Each worker process keeps its last copies, so the parts of one
big object (pages, video segments) do not download it again, and its last open archives, so that
reading their members in order reads each archive once.

With ``follow_links=False`` a local file (or the local archive a member lies in) is opened only if
no component of its path is a symbolic link, checked as it is opened, one component at a time
(``files.open_without_links``); decoders then read that very open file (``/proc/PID/fd/N``), so
a link swapped in after the check is never followed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
import threading
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ..errors import MediaError, VlsearchError
from ..files import open_without_links
from ..media.images import MediaLimits, NamedFile
from .archives import (SEPARATOR, Archive, ArchiveLimits, archive_format, depth, open_archive, outermost,
                       split_member)
from .entries import Found, content_hash, hash_stream, kind_of
from .objects import list_objects, object_digest, object_info, open_object, store_of

__all__ = ["Stat", "is_local", "is_uri", "under", "plain_name_error", "local_copy", "open_source", "spool",
           "stat_source", "fingerprint", "changed_reason", "members", "list_uri", "CHANGED"]

CHANGED = "source changed or missing since indexing"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Stat:
    """Size, modification time and (objects) version tag of a source now."""

    size: int
    mtime: float
    etag: str = ""


def is_uri(source: str) -> bool:
    """Whether the source (or the archive it lies in) is in a bucket: ``s3://``, ``gs://``, ``az://`` ..."""
    return store_of(source) is not None


def is_local(source: str) -> bool:
    """A plain local file: no URI, not inside an archive."""
    return not is_uri(source) and split_member(source) is None


def under(source: str, root: str) -> bool:
    """Whether ``source`` is ``root``, lies below the folder or prefix ``root``, or in the archive ``root``
    (an archive member lies below a folder only if its archive does: the members of ``a.zip`` are
    not below a folder named ``a.zip!``).

    Example:
        >>> under("s3://b/docs/a.pdf", "s3://b/docs"), under("/d/a.zip!/x.pdf", "/d/a.zip")
        (True, True)
        >>> under("/d/a.zip!/x.pdf", "/d/a.zip!")
        False
    """
    if source == root or source.startswith(root + SEPARATOR):
        return True
    separator = "/" if is_uri(root) else os.sep
    if not source.startswith(root.rstrip(separator) + separator):
        return False
    archive = outermost(source)
    return archive == source or under(archive, root)


def plain_name_error(source: str) -> str | None:
    """Why a local file or object may not be a source: its name holds the member separator after an
    archive's name (a folder ``a.zip!`` or a key ``a.zip!/x``), so it would read as a member of ``a.zip``."""
    split = split_member(source)
    if split is None:
        return None
    return (f"its name holds {SEPARATOR!r} after {split[0].rsplit('/', 1)[-1]!r}, which names a member of an "
            "archive: rename it to index it")


def list_uri(root: str) -> Iterator[Found]:
    """The objects under a bucket URI (see ``objects.list_objects``)."""
    return list_objects(root)


# -- reading ---------------------------------------------------------------------------------------

@contextmanager
def open_source(source: str, limits: MediaLimits, archives: ArchiveLimits | None = None,
                digest: str | None = None, follow_links: bool = True) -> Iterator[BinaryIO]:
    """A seekable reader of any source: a local file, an object (refused when ``digest``, the
    fingerprint recorded at listing, says it changed since), or an archive member.

    Raises:
        MediaError: the source is missing, unreadable, over ``max_file_bytes``, breaks an archive cap,
            or (``follow_links=False``) has a symbolic link on its path.
    """
    archives = archives or ArchiveLimits()
    split = split_member(source)
    if split is not None:
        outer, member = split
        with _ARCHIVES.borrow(outer, limits, archives, follow_links) as archive, archive.open(member) as handle:
            _check_size(source, handle.size, limits)
            yield handle  # type: ignore[misc]
        return
    if is_uri(source):
        with open_object(source, digest) as (handle, info):
            _check_size(source, info.size, limits)
            yield handle  # type: ignore[misc]
        return
    with _open_local(source, follow_links) as handle:
        _check_size(source, os.fstat(handle.fileno()).st_size, limits)
        yield handle


def _open_local(source: str, follow_links: bool) -> BinaryIO:
    """A local regular file, open; without links on its path unless ``follow_links``."""
    try:
        handle = open(source, "rb") if follow_links else os.fdopen(open_without_links(os.path.abspath(source)), "rb")
    except OSError as exc:
        if not follow_links and exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise MediaError(f"{source!r}: a symbolic link lies on its path, and links are not followed here") \
                from None
        raise MediaError(f"{source!r}: cannot read ({exc.strerror or exc})") from None
    if not stat_module.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise MediaError(f"{source!r}: not a regular file")
    return handle  # type: ignore[return-value]


@contextmanager
def _seekable(source: str, limits: MediaLimits, archives: ArchiveLimits, follow_links: bool) -> Iterator[BinaryIO]:
    """An archive opened for random access: local files and objects directly, a member through a copy.
    An archive may be larger than one file (``max_file_bytes``), up to ``max_total_bytes``."""
    if split_member(source) is None:
        wide = replace(limits, max_file_bytes=max(limits.max_file_bytes, archives.max_total_bytes))
        with open_source(source, wide, archives, follow_links=follow_links) as stream:
            yield stream
    else:
        with local_copy(source, limits, archives, follow_links=follow_links) as copy:
            with open(copy.data if isinstance(copy, NamedFile) else copy, "rb") as stream:  # type: ignore[arg-type]
                yield stream


class _OpenArchives:
    """This process's last few open archives, so that reading the members of one, in order, reads it
    once (see ``archives``). Each is lent to one reader at a time, and opened again when the file it
    lies in (a local file or an object; for a nested archive, the outermost one) has changed."""

    def __init__(self, keep: int = 2) -> None:
        self.keep, self.lock = keep, threading.Lock()
        self.items = OrderedDict[tuple[str, MediaLimits, ArchiveLimits, bool], tuple[Any, Archive, ExitStack]]()

    @contextmanager
    def borrow(self, source: str, limits: MediaLimits, archives: ArchiveLimits,
               follow_links: bool = True) -> Iterator[Archive]:
        key, version = (source, limits, archives, follow_links), _version(source)
        with self.lock:
            held = self.items.pop(key, None)
        if held is not None and held[0] != version:
            held[2].close()
            held = None
        if held is None:
            stack = ExitStack()
            try:
                stream = stack.enter_context(_seekable(source, limits, archives, follow_links))
                fmt = archive_format(source)
                assert fmt is not None
                held = (version, open_archive(stream, fmt, source, archives, _stream_size(stream)), stack)
            except BaseException:
                stack.close()
                raise
        try:
            yield held[1]
        finally:
            with self.lock:
                dropped = [old for old in [self.items.pop(key, None)] if old is not None]
                self.items[key] = held
                while len(self.items) > self.keep:
                    dropped.append(self.items.popitem(last=False)[1])
            for _, _, stack in dropped:
                stack.close()


_ARCHIVES = _OpenArchives()


def _version(source: str) -> Any:
    """What changes when the file an archive lies in changes: its identity, size and time (a local
    file) or its size, time and tag (an object)."""
    source = outermost(source)
    if is_uri(source):
        return object_info(source)
    try:
        info = os.stat(source)
    except OSError as exc:
        raise MediaError(f"{source!r}: cannot access ({exc.strerror or exc})") from None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _descriptor_path(fd: int) -> str | None:
    """A path that opens the file behind ``fd`` again, also in a child process such as LibreOffice
    (Linux: ``/proc/PID/fd/N``); None where there is none."""
    folder = f"/proc/{os.getpid()}/fd"
    return f"{folder}/{fd}" if os.path.isdir(folder) else None


def _check_size(source: str, size: int, limits: MediaLimits) -> None:
    if size > limits.max_file_bytes:
        raise MediaError(f"{source!r}: {size} bytes, larger than {limits.max_file_bytes}")


@contextmanager
def local_copy(source: str, limits: MediaLimits, archives: ArchiveLimits | None = None,
               digest: str | None = None, follow_links: bool = True) -> Iterator[str | NamedFile]:
    """What a decoder can read: a local source as it is (``follow_links=False``: the file opened
    without links, as ``/proc/PID/fd/N``); any other as a private temporary copy, named by the
    source in messages (``NamedFile``). With ``digest`` the copy must be of that content (objects:
    their tag; members: their bytes), and it is kept for the next parts of the same file.

    Example:
        >>> with local_copy("s3://bucket/a.pdf", MediaLimits()) as readable:
        ...     count = page_count(readable)
    """
    if is_local(source):
        if follow_links:
            yield source
            return
        with _open_local(source, follow_links) as handle:
            opened = _descriptor_path(handle.fileno())
            yield NamedFile(Path(opened), source) if opened else source
        return
    if digest:
        cached = _COPIES.get(source, digest)
        if cached is not None:
            yield NamedFile(cached, source)
            return
    path = _download(source, limits, archives, digest, follow_links)
    try:
        yield NamedFile(path, source)
    finally:
        if digest:
            _COPIES.put(source, digest, path)
        else:
            path.unlink(missing_ok=True)


def _download(source: str, limits: MediaLimits, archives: ArchiveLimits | None, digest: str | None,
              follow_links: bool) -> Path:
    """A private copy of the source (its extension kept, for decoders that go by it); removed on failure."""
    name = source.rsplit("/", 1)[-1]
    suffix = "".join(Path(name).suffixes[-2:]) if archive_format(name) else Path(name).suffix
    handle = tempfile.NamedTemporaryFile(prefix="source-", suffix=suffix[:24], dir=_COPIES.folder(), delete=False)
    path = Path(handle.name)
    try:
        with handle:
            _copy_into(handle, source, limits, archives, digest, follow_links)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def spool(source: str, limits: MediaLimits, archives: ArchiveLimits | None = None,
          digest: str | None = None, follow_links: bool = True) -> BinaryIO:
    """The bytes of a source in an anonymous temporary file (gone once closed), rewound; with ``digest``,
    only if the source still holds that content.

    Raises:
        MediaError: missing, changed, unreadable or over ``max_file_bytes``.
    """
    handle = tempfile.TemporaryFile(prefix="vlsearch-")
    try:
        _copy_into(handle, source, limits, archives, digest, follow_links)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle  # type: ignore[return-value]


def _copy_into(out: BinaryIO, source: str, limits: MediaLimits, archives: ArchiveLimits | None,
               digest: str | None, follow_links: bool) -> None:
    """Copy a source's bytes into ``out``, within ``max_file_bytes``; with ``digest``, check the content
    (objects with a tag are checked by it before reading, the rest by hashing what was copied)."""
    with open_source(source, limits, archives, digest, follow_links) as stream:
        hasher = hashlib.sha256()
        written = 0
        while block := stream.read(_CHUNK):
            written += len(block)
            if written > limits.max_file_bytes:
                raise MediaError(f"{source!r}: larger than {limits.max_file_bytes} bytes")
            hasher.update(block)
            out.write(block)
        tagged = bool(getattr(stream, "info", None) and stream.info.etag)  # type: ignore[attr-defined]
    if not written:
        raise MediaError(f"{source!r}: empty file")
    if digest and not tagged and hasher.hexdigest() != digest:
        raise MediaError(f"{source!r}: the content changed since it was listed")


class _Copies:
    """This process's last few copies, by (source, fingerprint); removed at exit."""

    def __init__(self, keep: int = 2) -> None:
        self.keep, self.items = keep, OrderedDict[tuple[str, str], Path]()
        self.lock = threading.Lock()
        self._folder: str | None = None

    def folder(self) -> str:
        with self.lock:
            if self._folder is None or not os.path.isdir(self._folder):
                self._folder = tempfile.mkdtemp(prefix="vlsearch-copies-")  # mode 0700
                from multiprocessing import util

                util.Finalize(None, shutil.rmtree, args=(self._folder, True), exitpriority=10)
            return self._folder

    def get(self, source: str, digest: str) -> Path | None:
        with self.lock:
            path = self.items.get((source, digest))
            if path is not None and path.exists():
                self.items.move_to_end((source, digest))
                return path
            return None

    def put(self, source: str, digest: str, path: Path) -> None:
        with self.lock:
            self.items[(source, digest)] = path
            while len(self.items) > self.keep:
                _, old = self.items.popitem(last=False)
                old.unlink(missing_ok=True)


_COPIES = _Copies()


# -- state -----------------------------------------------------------------------------------------

def stat_source(source: str, limits: MediaLimits | None = None, archives: ArchiveLimits | None = None) -> Stat:
    """Size, time and tag of a source now (a member: as its archive lists it).

    Raises:
        MediaError: it is missing or cannot be reached.
    """
    split = split_member(source)
    if split is not None:
        outer, member = split
        with _ARCHIVES.borrow(outer, limits or MediaLimits(), archives or ArchiveLimits()) as archive:
            found = archive.member(member)
        return Stat(found.size, found.mtime)
    if is_uri(source):
        info = object_info(source)
        return Stat(info.size, info.mtime, info.etag)
    try:
        info = os.stat(source)
    except OSError as exc:
        raise MediaError(f"{source!r}: cannot access ({exc.strerror or exc})") from None
    return Stat(info.st_size, info.st_mtime)


def fingerprint(found: Found, limits: MediaLimits | None = None, archives: ArchiveLimits | None = None,
                follow_links: bool = True) -> str:
    """The content fingerprint recorded for a source: the SHA-256 of its bytes, or for an object with a
    version tag, a digest of the tag (nothing downloaded).

    Raises:
        MediaError: the source cannot be read.
    """
    source = found.source
    if is_local(source) and follow_links:
        return content_hash(source)
    if is_local(source):  # opened as the decoders will open it: no link on its path, a regular file
        with _open_local(source, follow_links) as handle:
            return hash_stream(handle, _CHUNK)
    if is_uri(source) and found.etag:
        return object_digest(found.etag)
    with open_source(source, limits or MediaLimits(), archives, follow_links=follow_links) as stream:
        return hash_stream(stream, _CHUNK)


def changed_reason(source: str, digest: str | None, size: int | None = None, mtime: float | None = None,
                   limits: MediaLimits | None = None, archives: ArchiveLimits | None = None) -> str:
    """Empty when ``source`` still holds the content ``digest`` was taken of, else why not. The same size
    and time as recorded (``size``, ``mtime``) settle it without reading; else the fingerprint does."""
    try:
        now = stat_source(source, limits, archives)
    except VlsearchError as exc:
        return CHANGED if is_local(source) else str(exc)
    if (now.size, now.mtime) == (size, mtime):
        return ""
    try:
        if digest and fingerprint(Found(source, kind_of(source), now.size, now.mtime, etag=now.etag),
                                  limits, archives) == digest:
            return ""
    except VlsearchError as exc:
        return str(exc)
    return CHANGED


# -- archives --------------------------------------------------------------------------------------

def members(archive: str, limits: MediaLimits, archives: ArchiveLimits, relative: str = "",
            follow_links: bool = True) -> Iterator[Found]:
    """The members of an archive as ``Found`` entries (nested archives expanded up to ``max_depth``),
    each named ``archive!/member``; refused members carry their reason, and an archive over a cap
    yields a ``Found`` for itself with the reason after the members listed before it."""
    level = depth(archive) + 1
    if level > archives.max_depth:
        yield Found(archive, None, error=f"an archive nested {level} deep, over the cap of {archives.max_depth} "
                                         "(its members are not indexed)", relative=relative)
        return
    try:
        with _ARCHIVES.borrow(archive, limits, archives, follow_links) as opened:
            listed, cap = opened.members()
    except VlsearchError as exc:
        yield Found(archive, None, error=_bare(str(exc), archive), relative=relative, folder=True)
        return
    for member in listed:
        source = f"{archive}{SEPARATOR}{member.name}"
        inner = f"{relative}{SEPARATOR}{member.name}" if relative else member.name
        if member.error is None and archive_format(member.name):
            yield from members(source, limits, archives, inner, follow_links)
            continue
        yield Found(source, kind_of(member.name), member.size, member.mtime, member.error, inner)
    if cap:
        yield Found(archive, None, error=cap, relative=relative)


def _stream_size(stream: BinaryIO) -> int:
    try:
        end = stream.seek(0, os.SEEK_END)
        stream.seek(0)
        return int(end)
    except (OSError, ValueError):
        return 0


def _bare(message: str, source: str) -> str:
    """A message without the leading ``'source': `` (``Found.error`` is shown after the source)."""
    head = f"{source!r}: "
    return message[len(head):] if message.startswith(head) else message
