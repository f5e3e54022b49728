"""The gate every HTTP request passes: request id, browser checks, API key, body caps and read
timeout, metrics, last-resort errors.

A plain ASGI middleware (no buffering): the body cap is checked from ``Content-Length``
before anything is read, and again while the body streams in (chunked uploads); a client that
pauses longer than the read timeout while sending its body is answered 408.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException

from .auth import KeyChecker, needs_key, refusal
from .errors import classify, error_body
from .metrics import Metrics, route_label

log = logging.getLogger("vlsearch.server")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """The request body passed its cap while streaming in (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class ReadTimeout(HTTPException):
    """The client paused longer than the read timeout while sending its body (408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body stalled for more than {seconds:g} s")


class Gate:
    """ASGI middleware; see the module docstring.

    Args:
        app: the wrapped ASGI app.
        keys: API key checker.
        metrics: where requests are counted and timed.
        max_body: cap of ordinary bodies; max_upload: cap of bodies to ``is_upload`` paths.
        is_upload: which paths take uploads.
        allowed_hosts: ``Host`` values served besides loopback names (see ``auth.refusal``).
        read_timeout: the longest pause while a body streams in, in seconds.
    """

    def __init__(self, app: Any, *, keys: KeyChecker, metrics: Metrics, max_body: int, max_upload: int,
                 is_upload: Callable[[str], bool], allowed_hosts: frozenset[str] = frozenset(),
                 read_timeout: float = 30.0) -> None:
        self.app, self.keys, self.metrics = app, keys, metrics
        self.max_body, self.max_upload, self.is_upload = max_body, max_upload, is_upload
        self.allowed_hosts, self.read_timeout = allowed_hosts, read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper, request_id, state)
        finally:
            self.metrics.request(route_label(scope), scope.get("method", ""), int(state["status"]),
                                 time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str, state: dict) -> None:
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = refusal(scope.get("method", "GET"), headers, self.keys.enabled, self.allowed_hosts)
        if refused is not None:
            await reply(send, 403, refused[1], "permission_error", refused[0], request_id)
            return
        if self.keys.enabled and needs_key(path) and not self.keys.allowed(headers):
            await reply(send, 401, "missing or invalid API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')",
                        "authentication_error", "invalid_api_key", request_id, {"www-authenticate": "Bearer"})
            return
        limit = self.max_upload if self.is_upload(path) else self.max_body
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await reply(send, 400, "invalid Content-Length header", "invalid_request_error", "invalid_input",
                            request_id)
                return
            if int(declared) > limit:
                await reply(send, 413, f"request body larger than {limit} bytes (Content-Length {int(declared)})",
                            "invalid_request_error", "payload_too_large", request_id, {"connection": "close"})
                return
        seen, body_done = 0, False

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # later receives wait for a disconnect (streamed answers): no timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                raise ReadTimeout(self.read_timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        try:
            await self.app(scope, limited_receive, send)
        except Exception as exc:  # noqa: BLE001 - the last resort: answer, log, keep serving
            if state["started"]:
                log.exception("error after the response started (request %s)", request_id)
                return
            if isinstance(exc, HTTPException):
                code = {413: "payload_too_large", 408: "request_timeout"}.get(exc.status_code, "error")
                await reply(send, exc.status_code, str(exc.detail), "invalid_request_error", code, request_id,
                            {"connection": "close"} if exc.status_code in (408, 413) else None)
                return
            known = classify(exc)
            if known is None:
                log.exception("internal error (request %s)", request_id)
                await reply(send, 500, f"internal error (request id {request_id})", "internal_error",
                            "internal_error", request_id)
            else:
                status, kind, code, message = known
                await reply(send, status, message, kind, code, request_id)


async def reply(send: Send, status: int, message: str, kind: str, code: str, request_id: str | None,
                headers: dict[str, str] | None = None) -> None:
    """Send a JSON error response."""
    body = json.dumps(error_body(message, kind, code, request_id)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
