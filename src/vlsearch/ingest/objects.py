"""Objects in buckets (Amazon S3 and S3-compatible stores, Google Cloud Storage, Azure Blob Storage)
through fsspec.

Credentials come only from each cloud's own chain, which its fsspec library reads: for S3 the
``AWS_*`` environment variables (``AWS_ENDPOINT_URL`` for S3-compatible servers), ``~/.aws`` files
and instance roles; for GCS ``GOOGLE_APPLICATION_CREDENTIALS`` and the metadata server; for Azure
``AZURE_STORAGE_*`` variables and ``DefaultAzureCredential``. vlsearch takes none on its command line.

Every failure is a ``MediaError`` whose message names the object (or bucket) and says why in words:
no such bucket, no such object, access denied, credentials refused or expired, a network error.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Iterator

from ..errors import MediaError, MissingExtraError
from .entries import Found, kind_of

__all__ = ["STORES", "ObjectInfo", "store_of", "list_objects", "object_info", "open_object", "object_digest",
           "reason"]

#: URI scheme -> (fsspec protocol, Python package, vlsearch extra)
STORES: dict[str, tuple[str, str, str]] = {
    "s3": ("s3", "s3fs", "s3"),
    "gs": ("gcs", "gcsfs", "gcs"),
    "gcs": ("gcs", "gcsfs", "gcs"),
    "az": ("az", "adlfs", "azure"),
    "abfs": ("abfs", "adlfs", "azure"),
}
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCSFS_", "STORAGE_EMULATOR_HOST", "AZURE_", "FSSPEC_")
_BLOCK = 8 << 20  # read-ahead of a download
_filesystems: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object: its URI, size, modification time and version tag."""

    source: str
    size: int
    mtime: float
    etag: str


def store_of(source: str) -> str | None:
    """The URI scheme of an object source (``"s3"``, ``"gs"``, ``"az"`` ...), else ``None``.

    Example:
        >>> store_of("s3://bucket/a.pdf"), store_of("/data/a.pdf")
        ('s3', None)
    """
    scheme, sep, _ = source.partition("://")
    return scheme.lower() if sep and scheme.lower() in STORES else None


def object_digest(etag: str) -> str:
    """The content fingerprint recorded for an object: a SHA-256 of its version tag (no download)."""
    return hashlib.sha256(f"etag\x1f{etag}".encode()).hexdigest()


def _filesystem(scheme: str) -> Any:
    """One fsspec filesystem per process and credentials environment (a changed environment, e.g.
    refreshed keys, gets a new one); listings are never cached."""
    protocol, package, extra = STORES[scheme]
    try:
        importlib.import_module(package)
    except ImportError:
        raise MissingExtraError(package, extra) from None
    import fsspec

    key = (protocol, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES))))
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            fs = _filesystems[key] = fsspec.filesystem(protocol, skip_instance_cache=True,
                                                       use_listings_cache=False)
    return fs


def _split(source: str) -> tuple[str, str, str]:
    """(scheme, path for fsspec, the URI prefix as written) of an object source."""
    scheme = store_of(source)
    if scheme is None:
        raise MediaError(f"{source!r}: not an object URI ({', '.join(f'{s}://' for s in STORES)})")
    prefix, _, path = source.partition("://")
    return scheme, path.strip("/"), prefix + "://"


def _mtime(info: dict[str, Any]) -> float:
    for key in ("LastModified", "last_modified", "updated", "mtime", "creation_time"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def _etag(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "generation", "content_md5"):
        value = info.get(key)
        if value:
            return str(value.hex() if isinstance(value, (bytes, bytearray)) else value).strip('"')
    return ""


def list_objects(root: str) -> Iterator[Found]:
    """The objects under a bucket, prefix or single object URI, sorted by key.

    A listing that fails (no such bucket, access denied, bad credentials, network) yields one
    ``Found`` for the root with the reason and ``folder=True``; a prefix without objects too.
    Folder markers (keys ending in ``/``) are skipped.
    """
    scheme, base, prefix = _split(root)
    if not base:
        yield Found(root, None, error="name a bucket: " + f"{prefix}BUCKET[/PREFIX]", folder=True)
        return
    try:
        listed = _filesystem(scheme).find(base, detail=True)
    except MissingExtraError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure becomes the root's reason
        yield Found(root, None, error=reason(exc, "no such bucket"), relative="", folder=True)
        return
    if not listed:
        yield Found(root, None, error="no objects under this prefix", folder=True)
        return
    for name in sorted(listed):
        info = listed[name]
        if info.get("type", "file") != "file" or name.endswith("/"):
            continue
        name = name.strip("/")
        relative = name[len(base) + 1:] if name.startswith(base + "/") else name.rsplit("/", 1)[-1]
        source = prefix + name
        yield Found(source, kind_of(source), int(info.get("size") or 0), _mtime(info), relative=relative,
                    etag=_etag(info))


def object_info(source: str) -> ObjectInfo:
    """The object's size, time and tag now (one request).

    Raises:
        MediaError: it cannot be reached (the reason in words).
    """
    scheme, path, _ = _split(source)
    try:
        info = _filesystem(scheme).info(path)
    except MissingExtraError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MediaError(f"{source!r}: {reason(exc, 'no such object (deleted?)')}") from None
    if info.get("type", "file") != "file":
        raise MediaError(f"{source!r}: not an object (a prefix or a bucket)")
    return ObjectInfo(source, int(info.get("size") or 0), _mtime(info), _etag(info))


@contextmanager
def open_object(source: str, digest: str | None = None) -> Iterator[tuple[BinaryIO, ObjectInfo]]:
    """A seekable reader of an object and what the store says about it. With ``digest`` (the
    fingerprint recorded at listing) an object whose tag changed since is refused.

    Raises:
        MediaError: the object is missing, changed, or cannot be read (also from ``read``).
    """
    info = object_info(source)
    if digest and info.etag and object_digest(info.etag) != digest:
        raise MediaError(f"{source!r}: the object changed since it was listed (another version now)")
    scheme, path, _ = _split(source)
    try:
        handle = _filesystem(scheme).open(path, "rb", block_size=_BLOCK, cache_type="readahead", size=info.size)
    except Exception as exc:  # noqa: BLE001
        raise MediaError(f"{source!r}: {reason(exc, 'no such object (deleted since it was listed?)')}") from None
    try:
        yield _Reader(handle, source, info), info
    finally:
        try:
            handle.close()
        except Exception:  # noqa: BLE001 - closing a reader whose connection broke
            pass


class _Reader:
    """A store file whose failures are ``MediaError`` naming the object."""

    def __init__(self, handle: Any, source: str, info: ObjectInfo) -> None:
        self.handle, self.source, self.info = handle, source, info

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.handle, name)(*args)
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise MediaError(f"{self.source!r}: {reason(exc, 'deleted while being read')}") from None

    def read(self, n: int = -1) -> bytes:
        return self._call("read", n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._call("seek", offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


_CODES = {
    "NoSuchBucket": "no such bucket",
    "NoSuchKey": "no such object",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "AccountProblem": "access denied (account problem)",
    "InvalidAccessKeyId": "credentials refused (unknown access key)",
    "SignatureDoesNotMatch": "credentials refused (wrong secret key)",
    "InvalidClientTokenId": "credentials refused (unknown access key)",
    "ExpiredToken": "credentials expired (refresh the session token)",
    "ExpiredTokenException": "credentials expired (refresh the session token)",
    "TokenRefreshRequired": "credentials expired (refresh the session token)",
    "InvalidToken": "credentials expired or invalid (the session token is refused)",
    "RequestExpired": "credentials expired or the clock is wrong (request expired)",
}


def reason(exc: BaseException, missing: str) -> str:
    """Why a store call failed, in words (``missing``: what a plain "not found" means here)."""
    for error in _chain(exc):
        response = getattr(error, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code in _CODES:
            return _CODES[code]
        if code in ("404", "NotFound"):
            return missing
        if code:
            message = response.get("Error", {}).get("Message") or ""
            return f"the store refused the request ({code}{': ' + message if message else ''})"
    names = {type(e).__name__ for e in _chain(exc)}
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if "credentials" in text and "expired" in text:  # e.g. a credentials provider that hands out expired keys
        return "credentials expired (the cloud's credential chain gave expired ones: refresh them)"
    if names & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "CredentialUnavailableError",
                "ClientAuthenticationError"}:
        return "no usable credentials (set them the cloud's usual way: environment, config files or an instance role)"
    if names & {"EndpointConnectionError", "ConnectionClosedError", "ClientConnectorError", "ClientPayloadError",
                "ServerDisconnectedError", "ReadTimeoutError", "ConnectTimeoutError", "ConnectionError",
                "TimeoutError", "ConnectionResetError", "ConnectionRefusedError", "IncompleteReadError",
                "ResponseStreamingError", "ServiceRequestError"}:
        return f"network error ({type(exc).__name__}: {str(exc)[:200]})"
    if isinstance(exc, FileNotFoundError):
        return missing if "bucket" not in str(exc).lower() else "no such bucket"
    if isinstance(exc, PermissionError):
        return "access denied"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
