"""One error hierarchy for vlsearch.

Every error names what went wrong and, where there is one, the input it concerns.
Only the CLI and the server translate these into exit codes or HTTP statuses.
"""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class VlsearchError(Exception):
    """Base class of every error vlsearch raises on purpose."""


class InputError(VlsearchError, ValueError):
    """An input is malformed: empty item, unknown key, wrong type, bad option."""


class MediaError(VlsearchError):
    """A media input (image, video, PDF, URL) cannot be read or breaks a limit."""


class FetchError(MediaError):
    """A URL cannot or must not be fetched (scheme, private address, size, timeout)."""


class ModelError(VlsearchError):
    """A checkpoint cannot be loaded, or the model failed on a batch."""


class ServerUnreachable(ModelError):
    """A model or vlsearch server cannot be reached, or stopped answering (refused, reset, timed out)."""


class Forbidden(VlsearchError):
    """A server refused the request (HTTP 403): a path outside its roots, a refused origin..."""


class StoreError(VlsearchError):
    """The vector store refused an operation or is inconsistent."""


class CollectionNotFound(StoreError):
    """No collection by that name (or at that path)."""


class Overloaded(VlsearchError):
    """The model cannot take more work now (HTTP 503 in the server).

    Attributes:
        code: why: "queue_full" or "shutting_down".
        retry_after: seconds worth waiting before trying again, when known.
    """

    def __init__(self, message: str, code: str = "queue_full", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.retry_after = code, retry_after


class MissingExtraError(VlsearchError, ImportError):
    """An optional dependency is not installed; the message has the pip line."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'vlsearch[{extra}]'")


def in_context(where: str, err: VlsearchError) -> VlsearchError:
    """A copy of ``err`` (same class) whose message starts with ``where``, e.g. "item 3".

    The copy keeps the bare message in ``reason``.
    """
    new = type(err).__new__(type(err))
    Exception.__init__(new, f"{where}: {err}")
    new.__cause__ = err.__cause__ or err
    new.reason = getattr(err, "reason", str(err))
    return new


def bare(err: VlsearchError) -> VlsearchError:
    """A copy of ``err`` (same class) with its bare message (``reason``), without the name
    ``in_context`` gave it; to name it anew, e.g. ``at_item(offset + err.item, bare(err))``."""
    new = type(err).__new__(type(err))
    Exception.__init__(new, getattr(err, "reason", str(err)))
    new.__cause__ = err.__cause__
    return new


def at_item(index: int, err: VlsearchError) -> VlsearchError:
    """``err`` prefixed with "item {index}"; the index is kept in ``item``."""
    new = in_context(f"item {index}", err)
    new.item = index
    return new


def each_item(values: Iterable[T], fn: Callable[[T], R], where: Callable[[int], str] | None = None) -> list[R]:
    """``[fn(v) for v in values]``; the first ``VlsearchError`` is raised again naming its input
    (``at_item``, or ``where(index)`` when given, e.g. ``lambda i: f"document {i}"``)."""
    out = []
    for index, value in enumerate(values):
        try:
            out.append(fn(value))
        except VlsearchError as exc:
            raise (in_context(where(index), exc) if where else at_item(index, exc)) from None
    return out
