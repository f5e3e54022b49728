"""Zip and tar archives: their members are indexed as files, named ``archive.zip!/dir/member.pdf``.

Every cap is checked from the archive's directory (zip) or member headers (tar) before a byte of a
member is extracted: the number of members, their total uncompressed size, the compression ratio
(zip bombs), the nesting depth (archives inside archives) and the member names (absolute paths and
``..`` are refused). A member over a cap is refused alone with the reason; a cap on the whole
archive (members, total size, tar ratio) stops the listing there and fails the archive with the
reason, while the members listed before it are still indexed. Extraction checks again: a member
that inflates past the size its header gave is cut off and fails.
"""

from __future__ import annotations

import calendar
import stat
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Literal

from ..errors import InputError, MediaError

__all__ = ["ArchiveLimits", "Member", "SEPARATOR", "archive_format", "list_members", "open_member", "split_member",
           "depth"]

Format = Literal["zip", "tar"]
SEPARATOR = "!/"  # archive source + SEPARATOR + member name
_SUFFIXES: dict[str, Format] = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar",
                                ".tbz2": "tar", ".tar.xz": "tar", ".txz": "tar"}
RATIO_FLOOR = 1 << 20  # uncompressed bytes below which the ratio is not checked (small files compress well)


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on archives, checked before extraction.

    Attributes:
        max_members: entries listed per archive (directories included); the rest are not indexed.
        max_total_bytes: uncompressed bytes of the members listed; members past it are not indexed.
        max_ratio: most uncompressed bytes per compressed byte, of a zip member or of a whole
            compressed tar (checked once past 1 MiB uncompressed).
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


def list_members(stream: BinaryIO, fmt: Format, name: str, limits: ArchiveLimits,
                 archive_bytes: int) -> tuple[list[Member], str | None]:
    """The archive's file members, in order, and the archive's own error (``None`` if none).

    Members refused alone (unsafe name, link or special file, zip ratio) come with an ``error``;
    a cap on the whole archive ends the list and is the archive's error. Directories are not listed.

    Raises:
        MediaError: not a readable archive of that format.
    """
    try:
        if fmt == "zip":
            return _zip_members(stream, name, limits)
        return _tar_members(stream, name, limits, archive_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError) as exc:
        raise MediaError(f"{name!r}: not a readable {fmt} archive ({type(exc).__name__}: {exc})") from None


def _zip_members(stream: BinaryIO, name: str, limits: ArchiveLimits) -> tuple[list[Member], str | None]:
    with zipfile.ZipFile(stream) as archive:
        infos = archive.infolist()
    out: list[Member] = []
    total = 0
    for count, info in enumerate(infos, 1):
        if count > limits.max_members:
            return out, _over_members(len(infos), limits)
        if info.is_dir():
            continue
        total += info.file_size
        if total > limits.max_total_bytes:
            return out, _over_total(limits)
        mtime = float(calendar.timegm((*info.date_time, 0, 0, 0)))
        error = _unsafe(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer gave no file type
        if error is None and kind and kind != stat.S_IFREG:
            error = "a link or special file, not a regular file"
        if error is None and info.file_size >= RATIO_FLOOR and \
                info.file_size > limits.max_ratio * max(info.compress_size, 1):
            error = (f"compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1, over the cap of "
                     f"{limits.max_ratio:.0f}:1 (zip bomb guard)")
        if error is None and info.flag_bits & 0x1:
            error = "encrypted member (password-protected)"
        out.append(Member(info.filename, info.file_size, mtime, error))
    return out, None


def _tar_members(stream: BinaryIO, name: str, limits: ArchiveLimits,
                 archive_bytes: int) -> tuple[list[Member], str | None]:
    out: list[Member] = []
    total = count = 0
    with tarfile.open(fileobj=stream, mode="r:*") as archive:
        while (info := archive.next()) is not None:
            count += 1
            if count > limits.max_members:
                return out, _over_members(None, limits)
            if info.isdir():
                continue
            total += info.size
            if total > limits.max_total_bytes:
                return out, _over_total(limits)
            read = max(stream.tell(), 1)  # compressed bytes consumed so far
            if total >= RATIO_FLOOR and total > limits.max_ratio * min(read, archive_bytes or read):
                return out, (f"compression ratio over {limits.max_ratio:.0f}:1 ({total} bytes from {read}; "
                             "zip bomb guard): the members after it are not indexed")
            error = _unsafe(info.name)
            if error is None and not info.isreg():
                error = "a link or special file, not a regular file"
            out.append(Member(info.name, info.size, float(info.mtime), error))
    return out, None


def _over_members(count: int | None, limits: ArchiveLimits) -> str:
    listed = f"{count} members" if count is not None else "more members"
    return f"{listed} than the cap of {limits.max_members}: only the first {limits.max_members} are indexed"


def _over_total(limits: ArchiveLimits) -> str:
    return (f"members larger than {limits.max_total_bytes} bytes uncompressed in total: "
            "the members after the cap are not indexed")


@contextmanager
def open_member(stream: BinaryIO, fmt: Format, name: str, member: str, limits: ArchiveLimits) -> Iterator[_Capped]:
    """A reader of one member's bytes (``size``: as its header gives), checked again from its header
    (name, type, ratio); it refuses to read past that size.

    Raises:
        MediaError: no such member, or the member breaks a cap.
    """
    where = f"{name}{SEPARATOR}{member}"
    error = _unsafe(member)
    if error:
        raise MediaError(f"{where!r}: {error}")
    try:
        if fmt == "zip":
            with zipfile.ZipFile(stream) as archive:
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise MediaError(f"{where!r}: no such member in the archive") from None
                size = info.file_size
                if size >= RATIO_FLOOR and size > limits.max_ratio * max(info.compress_size, 1):
                    raise MediaError(f"{where!r}: compression ratio over {limits.max_ratio:.0f}:1 (zip bomb guard)")
                with archive.open(info) as handle:
                    yield _Capped(handle, size, where)
        else:
            with tarfile.open(fileobj=stream, mode="r:*") as archive:
                try:
                    info = archive.getmember(member)
                except KeyError:
                    raise MediaError(f"{where!r}: no such member in the archive") from None
                handle = archive.extractfile(info) if info.isreg() else None
                if handle is None:
                    raise MediaError(f"{where!r}: a link or special file, not a regular file")
                with handle:
                    yield _Capped(handle, info.size, where)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError, NotImplementedError, ValueError,
            OSError) as exc:
        raise MediaError(f"{where!r}: cannot extract ({type(exc).__name__}: {exc})") from None


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
