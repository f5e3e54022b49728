"""Errors as HTTP answers: a status and a JSON body, never a traceback or a memory address.

Body: ``{"error": {"message": ..., "type": ..., "code": ..., "request_id": ...}}`` (the
OpenAI error shape, with the request id added).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import (CollectionNotFound, FetchError, InputError, MediaError, ModelError, Overloaded, StoreError,
                      VlsearchError)

_ADDRESS = re.compile(r"<([A-Za-z_][\w.]*) object at 0x[0-9a-fA-F]+>|\bat 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")


class APIError(Exception):
    """An answer decided by the server itself (auth, limits, refused paths, busy ...)."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",  # noqa: A002
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.headers = headers or {}


def scrub(message: str, limit: int = 2000) -> str:
    """Drop memory addresses (``<X object at 0x7f..>``) and cap the length of a message."""
    message = _ADDRESS.sub(lambda m: f"<{m.group(1)}>" if m.group(1) else "", message)
    return message if len(message) <= limit else message[:limit] + "..."


def is_oom(exc: BaseException) -> bool:
    """A device or host out-of-memory error, raised by torch or reported in a ModelError."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or type(exc).__name__ == "OutOfMemoryError"


def classify(exc: BaseException) -> tuple[int, str, str, str] | None:
    """(status, type, code, message) for an expected error; ``None`` for an internal one."""
    if isinstance(exc, APIError):
        return exc.status, exc.type, exc.code or _default_code(exc.status), exc.message
    if isinstance(exc, VlsearchError):
        message = scrub(str(exc))
        if isinstance(exc, FetchError):
            return 400, "invalid_request_error", "url_refused", message
        if isinstance(exc, MediaError):
            return 400, "invalid_request_error", "invalid_media", message
        if isinstance(exc, InputError):
            return 400, "invalid_request_error", "invalid_input", message
        if isinstance(exc, CollectionNotFound):
            return 404, "not_found_error", "collection_not_found", message
        if isinstance(exc, StoreError):
            return 409, "conflict_error", "collection_conflict", message
        if isinstance(exc, Overloaded):
            return 503, "service_unavailable", exc.code, message
        if isinstance(exc, ModelError) and is_oom(exc):
            return 503, "service_unavailable", "out_of_memory", "the model ran out of memory; retry with fewer inputs"
        if isinstance(exc, ModelError):
            return 500, "model_error", "model_error", message
        return 400, "invalid_request_error", "invalid_input", message
    if is_oom(exc):
        return 503, "service_unavailable", "out_of_memory", "the model ran out of memory; retry with fewer inputs"
    return None


def _default_code(status: int) -> str:
    return {400: "invalid_input", 401: "invalid_api_key", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 422: "invalid_request",
            429: "rate_limited", 503: "unavailable"}.get(status, "error")


def error_body(message: str, type: str, code: str, request_id: str | None = None) -> dict[str, Any]:  # noqa: A002
    """The JSON error object."""
    body: dict[str, Any] = {"message": scrub(message), "type": type, "code": code}
    if request_id:
        body["request_id"] = request_id
    return {"error": body}


def status_type(status: int) -> str:
    """The error ``type`` for an HTTP status raised by the framework (404 route, 405 ...)."""
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            409: "conflict_error", 503: "service_unavailable"}.get(status, "invalid_request_error"
                                                                     if status < 500 else "internal_error")
