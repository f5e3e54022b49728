"""Serving the app with uvicorn: slow or silent clients are disconnected, connections are capped.

uvicorn closes an idle keep-alive connection, but a connection that never completes its request
headers (a "slowloris" client) is kept forever. ``HeaderTimeout`` closes a connection whose
request headers have not all arrived ``read_timeout`` seconds after it opened, or after its
previous response. The request body has its own read timeout in the gate (``middleware.Gate``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServerConfig


class HeaderTimeout(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    read_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_cycle: Any = None
        self._arm()

    def _arm(self) -> None:
        self._waiting_cycle = self.cycle  # the request before the one awaited (None at first)
        self._header_timer = self.loop.call_later(self.read_timeout, self._expire)

    def _expire(self) -> None:
        if self.cycle is self._waiting_cycle and not self.transport.is_closing():
            self.transport.close()  # no complete request headers in time

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not self._waiting_cycle:  # a new request's headers are in
            self._header_timer.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._header_timer.cancel()
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer.cancel()
        super().connection_lost(exc)


def uvicorn_config(app: Any, config: ServerConfig, **options: Any) -> Config:
    """The uvicorn configuration of ``vlsearch serve``: the header deadline and the connection cap."""
    protocol = type("VlsearchProtocol", (HeaderTimeout,), {"read_timeout": config.read_timeout})
    return Config(app, http=protocol, limit_concurrency=config.max_connections,
                  timeout_keep_alive=min(5, int(config.read_timeout) or 1), **options)
