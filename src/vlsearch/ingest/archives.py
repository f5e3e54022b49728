"""Zip and tar archives: their members are indexed as files, named ``archive.zip!/dir/member.pdf``.

An archive is opened once (``open_archive``) and then listed and read through that one object:
members are read in listing order without reading the archive again (a compressed tar: one pass
over it), so the work grows with the archive's size, never with its size times its members.

Every cap is checked from the archive's directory (zip) or member headers (tar) before a byte of a
member is extracted: the number of members (no more directory entries or headers are read than
the cap), their total uncompressed size, the compression ratio of each member and of the whole
archive (zip bombs), the nesting depth (archives inside archives) and the member names (absolute
paths and ``..`` are refused). Zip members whose bytes overlap in the file (the non-recursive zip
bomb) make the archive unreadable. A member over a cap is refused alone with the reason; a cap on
the whole archive (members, total size, ratio) stops the listing there and fails the archive with
the reason, while the members listed before it are still indexed. A name listed twice is read as
its first, checked entry (later ones are not listed, nor ever read). Extraction checks again: a member that inflates
past the size its header gave is cut off and fails.
"""

from __future__ import annotations

import calendar
import stat
import struct
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Literal

from ..errors import InputError, MediaError

__all__ = ["Archive", "ArchiveLimits", "Member", "SEPARATOR", "archive_format", "open_archive", "split_member",
           "depth", "outermost"]

Format = Literal["zip", "tar"]
SEPARATOR = "!/"  # archive source + SEPARATOR + member name
_SUFFIXES: dict[str, Format] = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar",
                                ".tbz2": "tar", ".tar.xz": "tar", ".txz": "tar"}
RATIO_FLOOR = 1 << 20  # uncompressed bytes below which the ratio is not checked (small files compress well)
_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError, NotImplementedError,
           struct.error)


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on archives, checked before extraction.

    Attributes:
        max_members: entries listed per archive (directories included); the rest are not read.
        max_total_bytes: uncompressed bytes of the members listed; members past it are not indexed.
        max_ratio: most uncompressed bytes per compressed byte, of a zip member and of a whole
            archive (checked once past 1 MiB uncompressed).
        max_depth: archive levels: 1 indexes the members of archives met in folders or buckets,
            2 also those of archives inside them, and so on.

    Example:
        >>> ArchiveLimits(max_members=1000, max_depth=1)
    """

    max_members: int = 10_000
    max_total_bytes: int = 4 << 30
    max_ratio: float = 100.0
    max_depth: int = 2

    def __post_init__(self) -> None:
        if self.max_members < 1 or self.max_total_bytes < 1 or self.max_ratio < 1 or self.max_depth < 0:
            raise InputError("ArchiveLimits: need max_members, max_total_bytes >= 1, max_ratio >= 1, max_depth >= 0")


@dataclass(frozen=True)
class Member:
    """One listed member: its name in the archive, uncompressed size, time, and why it is refused."""

    name: str
    size: int
    mtime: float
    error: str | None = None


def archive_format(name: str) -> Format | None:
    """"zip" or "tar" by the name's ending (case-insensitive), else ``None``.

    Example:
        >>> archive_format("s3://b/x.TAR.GZ"), archive_format("a.zip!/b.zip"), archive_format("a.pdf")
        ('tar', 'zip', None)
    """
    lower = name.lower()
    return next((fmt for suffix, fmt in _SUFFIXES.items() if lower.endswith(suffix)), None)


def _unsafe(name: str) -> str | None:
    """Why a member name may not be used, or None."""
    if not name or "\x00" in name:
        return "empty name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
        return "unsafe member name (absolute path: path traversal)"
    if ".." in name.split("/"):
        return "unsafe member name ('..': path traversal)"
    if SEPARATOR in name:
        return f"member name contains {SEPARATOR!r}"
    return None


def open_archive(stream: BinaryIO, fmt: Format, name: str, limits: ArchiveLimits, archive_bytes: int) -> Archive:
    """The archive in ``stream`` (seekable, ``archive_bytes`` long), ready to list and read.

    Raises:
        MediaError: not a readable archive of that format, or a zip whose members overlap.
    """
    try:
        return (_Zip if fmt == "zip" else _Tar)(stream, name, limits, archive_bytes)
    except _ERRORS as exc:
        raise MediaError(f"{name!r}: not a readable {fmt} archive ({type(exc).__name__}: {exc})") from None


class Archive:
    """One open archive: its members listed up to the caps (lazily, in order), each readable by name.

    A name resolves to its first listed entry, the one the caps were checked on.
    """

    def __init__(self, name: str, limits: ArchiveLimits, archive_bytes: int) -> None:
        self.name, self.limits, self.archive_bytes = name, limits, archive_bytes
        self.listed: list[Member] = []
        self.error: str | None = None  # a cap on the whole archive: the listing stopped there
        self.done = False
        self._count = self._total = 0
        self._first: dict[str, Member] = {}

    def members(self) -> tuple[list[Member], str | None]:
        """The file members, in order, and the archive's own error (``None`` if none).

        Members refused alone (unsafe name, link or special file, ratio, encryption) come with an
        ``error``; a cap on the whole archive ends the list and is the archive's error.

        Raises:
            MediaError: the archive cannot be read.
        """
        while self._step():
            pass
        return self.listed, self.error

    def member(self, member: str) -> Member:
        """The listed member of that name (its first entry), read up to it.

        Raises:
            MediaError: not listed (absent, or past a cap), or refused.
        """
        where = f"{self.name}{SEPARATOR}{member}"
        while member not in self._first and self._step():
            pass
        found = self._first.get(member)
        if found is None:
            raise MediaError(f"{where!r}: {self.error or 'no such member in the archive'}")
        if found.error:
            raise MediaError(f"{where!r}: {found.error}")
        return found

    @contextmanager
    def open(self, member: str) -> Iterator[_Capped]:
        """A reader of one member's bytes (``size``: as its header gives) that refuses to read past it.

        Raises:
            MediaError: not listed, refused, or not extractable.
        """
        found = self.member(member)
        where = f"{self.name}{SEPARATOR}{member}"
        try:
            with self._open(member) as handle:
                yield _Capped(handle, found.size, where)
        except _ERRORS as exc:
            raise MediaError(f"{where!r}: cannot extract ({type(exc).__name__}: {exc})") from None

    def _step(self) -> bool:
        """List one more entry; False once the listing is complete or stopped by a cap."""
        if self.done:
            return False
        try:
            entry = self._next()
        except _ERRORS as exc:
            raise MediaError(f"{self.name!r}: not a readable archive ({type(exc).__name__}: {exc})") from None
        if entry is not None:
            self._count += 1
            if self._count > self.limits.max_members:
                self.error = (f"more members than the cap of {self.limits.max_members}: "
                              f"only the first {self.limits.max_members} are indexed")
                entry = None
        if entry is not None and entry.error is None:  # a member refused alone is never read: not counted
            self.error = self._over(entry)
            if self.error:
                entry = None
        if entry is None:
            self.done = True
            return False
        if entry.size >= 0 and entry.name not in self._first:  # directories and later duplicates: not listed
            self._first[entry.name] = entry
            self.listed.append(entry)
        return True

    def _over(self, entry: Member) -> str | None:
        """Why the archive stops before ``entry`` (total size, total ratio of the members read), or None."""
        self._total += max(entry.size, 0)
        if self._total > self.limits.max_total_bytes:
            return (f"members larger than {self.limits.max_total_bytes} bytes uncompressed in total: "
                    "the members after the cap are not indexed")
        read = max(min(self._consumed(), self.archive_bytes or self._consumed()), 1)
        inflated = self._inflated(entry)
        if inflated >= RATIO_FLOOR and inflated > self.limits.max_ratio * read:
            return (f"compression ratio over {self.limits.max_ratio:.0f}:1 ({inflated} bytes from {read}; "
                    "zip bomb guard): the members after it are not indexed")
        return None

    def _inflated(self, entry: Member) -> int:
        """Uncompressed bytes of the members that ``_consumed`` covers (a zip: all listed so far)."""
        return self._total

    def _next(self) -> Member | None:
        """The next entry of the directory or headers (size -1: a directory), ``None`` at the end."""
        raise NotImplementedError

    def _consumed(self) -> int:
        """Archive bytes the listed members take up, for the archive's ratio."""
        raise NotImplementedError

    def _open(self, member: str) -> Any:
        raise NotImplementedError


def _refused(name: str, kind: int, size: int, packed: int, encrypted: bool, limits: ArchiveLimits) -> str | None:
    """Why a member is refused alone: its name, its type (``kind``: a ``stat`` file type, 0 if not
    given), its ratio (``packed``: its compressed size, -1 if not known), encryption."""
    error = _unsafe(name)
    if error is None and kind and kind != stat.S_IFREG:
        error = "a link or special file, not a regular file"
    if error is None and packed >= 0 and size >= RATIO_FLOOR and size > limits.max_ratio * max(packed, 1):
        error = (f"compression ratio {size / max(packed, 1):.0f}:1, over the cap of "
                 f"{limits.max_ratio:.0f}:1 (zip bomb guard)")
    if error is None and encrypted:
        error = "encrypted member (password-protected)"
    return error


# -- zip: the central directory, read entry by entry --------------------------------------------

_END = struct.Struct("<4s4H2IH")  # end of central directory
_END64 = struct.Struct("<4sQ2H2I4Q")  # zip64 end of central directory (before its 20-byte locator)
_CENTRAL = struct.Struct("<4s6H3I5H2I")  # central directory file header
_LOCAL = struct.Struct("<4s5H3I2H")  # local file header


@dataclass(frozen=True)
class _ZipEntry:
    raw_name: bytes
    offset: int  # of its local header
    packed: int
    method: int
    crc: int
    flags: int


class _Zip(Archive):
    def __init__(self, stream: BinaryIO, name: str, limits: ArchiveLimits, archive_bytes: int) -> None:
        super().__init__(name, limits, archive_bytes)
        self.stream = stream
        self._start, self._end, self._shift = self._directory(archive_bytes)
        self._at = self._start
        self._entries: dict[str, _ZipEntry] = {}  # first entry of each name
        self._ranges: list[tuple[int, int, str]] = []  # (start, end, name) of each listed entry's bytes
        self._bounds: dict[int, int] = {}  # an entry's offset -> where the next entry (or the directory) starts
        self.members()  # the directory is small next to the data: read it all (to the caps) before any member
        self._check_overlaps()

    def _directory(self, size: int) -> tuple[int, int, int]:
        """(start, end, shift) of the central directory; ``shift``: bytes prepended to the zip. Its
        entries are read until its end (the count the end record gives may have wrapped)."""
        tail = min(size, _END.size + 0xFFFF)
        self.stream.seek(size - tail)
        data = self.stream.read(tail)
        at = data.rfind(b"PK\x05\x06")
        if at < 0 or at + _END.size > len(data):
            raise zipfile.BadZipFile("no end of central directory record")
        _, _, _, _, _, length, offset, _ = _END.unpack_from(data, at)
        end = size - tail + at
        if at >= 20 + _END64.size and data[at - 20:at - 16] == b"PK\x06\x07":
            record = _END64.unpack_from(data, at - 20 - _END64.size)
            if record[0] != b"PK\x06\x06":
                raise zipfile.BadZipFile("bad zip64 end of central directory record")
            length, offset = record[8], record[9]
            end = size - tail + at - 20 - _END64.size
        shift = end - length - offset
        if shift < 0:
            raise zipfile.BadZipFile("the central directory lies outside the file")
        return offset + shift, end, shift

    def _consumed(self) -> int:
        return self.archive_bytes

    def _next(self) -> Member | None:
        if self._at + _CENTRAL.size > self._end:
            return None
        self.stream.seek(self._at)
        header = _CENTRAL.unpack(self.stream.read(_CENTRAL.size))
        (signature, _, _, flags, method, time, date, crc, packed, size, name_len, extra_len, comment_len, _, _,
         attributes, offset) = header
        if signature != b"PK\x01\x02":
            raise zipfile.BadZipFile(f"bad central directory entry at byte {self._at}")
        raw = self.stream.read(name_len + extra_len)
        raw_name, extra = raw[:name_len], raw[name_len:]
        self._at += _CENTRAL.size + name_len + extra_len + comment_len
        size, packed, offset = _zip64(extra, size, packed, offset)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        offset += self._shift
        self._ranges.append((offset, offset + _LOCAL.size + name_len + packed, name))
        if name.endswith("/"):
            return Member(name, -1, 0.0)
        self._entries.setdefault(name, _ZipEntry(raw_name, offset, packed, method, crc, flags))
        kind = stat.S_IFMT(attributes >> 16)  # 0 when the writer gave no file type
        return Member(name, size, _dos_time(date, time), _refused(name, kind, size, packed, bool(flags & 1),
                                                                  self.limits))

    def _check_overlaps(self) -> None:
        """The non-recursive zip bomb: entries whose bytes overlap (many names, one compressed kernel)."""
        ranges = sorted(self._ranges)
        for (start, end, name), (after, _, other) in zip(ranges, ranges[1:] + [(self._start, 0, "")]):
            self._bounds[start] = after
            if end > after:
                against = f"member {other!r}" if other else "the central directory"
                raise MediaError(f"{self.name!r}: member {name!r} overlaps {against} in the file (zip bomb "
                                 "guard): the archive is not read")

    @contextmanager
    def _open(self, member: str) -> Iterator[BinaryIO]:
        entry = self._entries[member]
        self.stream.seek(entry.offset)
        header = _LOCAL.unpack(self.stream.read(_LOCAL.size))
        name_len, extra_len = header[9], header[10]
        if header[0] != b"PK\x03\x04" or self.stream.read(name_len) != entry.raw_name:
            raise zipfile.BadZipFile("its local header does not match the central directory")
        start = entry.offset + _LOCAL.size + name_len + extra_len
        if start + entry.packed > self._bounds[entry.offset]:
            raise MediaError(f"{self.name!r}: member {member!r} overlaps another in the file (zip bomb guard)")
        self.stream.seek(start)
        info = zipfile.ZipInfo(member)
        info.compress_type, info.compress_size, info.CRC, info.flag_bits = entry.method, entry.packed, entry.crc, \
            entry.flags
        info.file_size = self._first[member].size
        with zipfile.ZipExtFile(self.stream, "r", info) as handle:
            yield handle  # type: ignore[misc]


def _zip64(extra: bytes, size: int, packed: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset with the zip64 extra field's 64-bit values where the 32-bit ones are full."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            values, field = [size, packed, offset], at + 4
            for i, value in enumerate(values):
                if value == 0xFFFFFFFF and field + 8 <= at + 4 + length:
                    values[i] = struct.unpack_from("<Q", extra, field)[0]
                    field += 8
            return values[0], values[1], values[2]
        at += 4 + length
    return size, packed, offset


def _dos_time(date: int, time: int) -> float:
    month = min(max((date >> 5) & 0xF, 1), 12)
    return float(calendar.timegm(((date >> 9) + 1980, month, date & 0x1F, time >> 11, (time >> 5) & 0x3F,
                                  (time & 0x1F) * 2, 0, 0, 0)))


# -- tar: the member headers, one pass -------------------------------------------------------------

class _Tar(Archive):
    def __init__(self, stream: BinaryIO, name: str, limits: ArchiveLimits, archive_bytes: int) -> None:
        super().__init__(name, limits, archive_bytes)
        self.stream = stream
        self.archive = tarfile.open(fileobj=stream, mode="r:*")
        self._infos: dict[str, tarfile.TarInfo] = {}  # first header of each name

    def _consumed(self) -> int:
        return max(self.stream.tell(), 1)  # compressed bytes read so far

    def _inflated(self, entry: Member) -> int:
        # the stream has passed the members before this header, not this one's data: its own ratio is
        # checked as it is read (``_RatioCapped``), so a large first member of a tar is not refused unread
        return self._total - max(entry.size, 0)

    def _next(self) -> Member | None:
        info = self.archive.next()
        if info is None:
            return None
        if info.isdir():
            return Member(info.name, -1, 0.0)
        self._infos.setdefault(info.name, info)
        kind = 0 if info.isreg() else stat.S_IFLNK
        return Member(info.name, info.size, float(info.mtime), _refused(info.name, kind, info.size, -1, False,
                                                                        self.limits))

    @contextmanager
    def _open(self, member: str) -> Iterator[BinaryIO]:
        handle = self.archive.extractfile(self._infos[member])
        if handle is None:
            raise MediaError(f"{self.name + SEPARATOR + member!r}: a link or special file, not a regular file")
        with handle:
            yield _RatioCapped(handle, self.stream, self.limits.max_ratio, self.name + SEPARATOR + member)


class _RatioCapped:
    """A compressed tar member's reader that fails once its bytes outgrow the compressed bytes read for
    them past the ratio cap (a tar's headers give no packed size); read in chunks, so it stops early."""

    def __init__(self, handle: BinaryIO, stream: BinaryIO, ratio: float, name: str) -> None:
        self.handle, self.stream, self.ratio, self.name = handle, stream, ratio, name
        self.start, self.count = stream.tell(), 0

    def read(self, n: int = -1) -> bytes:
        chunks, want = [], n if n is not None and n >= 0 else 1 << 62
        while want > 0:
            data = self.handle.read(min(want, RATIO_FLOOR))
            if not data:
                break
            self.count += len(data)
            packed = max(self.stream.tell() - self.start, 1)
            if self.count >= RATIO_FLOOR and self.count > self.ratio * packed:
                raise MediaError(f"{self.name!r}: compression ratio over {self.ratio:.0f}:1 ({self.count} bytes "
                                 f"from {packed}; zip bomb guard)")
            chunks.append(data)
            want -= len(data)
        return b"".join(chunks)


class _Capped:
    """Reads at most ``size`` bytes; more data than that is a lying header (a bomb), an error."""

    def __init__(self, handle: BinaryIO, size: int, name: str) -> None:
        self.handle, self.size, self.left, self.name = handle, size, size, name

    def read(self, n: int = -1) -> bytes:
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        data = self.handle.read(want) if want > 0 else b""
        if len(data) > self.left:
            raise MediaError(f"{self.name!r}: more bytes than its header gives (zip bomb guard)")
        self.left -= len(data)
        return data


def split_member(source: str) -> tuple[str, str] | None:
    """(archive source, member name) of an archive member's source, else ``None``: the split is at the
    last separator that follows an archive's name (member names never hold one).

    Example:
        >>> split_member("s3://b/a.zip!/in.tar!/doc.pdf"), split_member("/data/a.pdf")
        (('s3://b/a.zip!/in.tar', 'doc.pdf'), None)
    """
    at = len(source)
    while (at := source.rfind(SEPARATOR, 0, at)) > 0:
        if archive_format(source[:at]) is not None:
            return source[:at], source[at + len(SEPARATOR):]
    return None


def depth(source: str) -> int:
    """Archive levels above a source: 0 for a file, 1 for a member of an archive, 2 inside a nested one."""
    levels = 0
    while (split := split_member(source)) is not None:
        source, levels = split[0], levels + 1
    return levels


def outermost(source: str) -> str:
    """The file or object a source lies in: itself, or for an archive member its outermost archive."""
    while (split := split_member(source)) is not None:
        source = split[0]
    return source
