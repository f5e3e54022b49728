"""``vlsearch mcp``: the collections as tools for agents, over MCP (stdio or streamable HTTP).

Needs ``pip install 'vlsearch[mcp]'`` (the official MCP SDK and the server extra); without it a
``MissingExtraError`` names that line. The server is built in ``server``, its answers in ``content``.

Example:
    >>> from vlsearch.mcp import run_stdio
    >>> run_stdio(ServerConfig(collections_roots=(Path("~/papers").expanduser(),)))
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingExtraError
from ..server.config import ServerConfig

__all__ = ["create_mcp_server", "http_app", "run_stdio", "run_http"]


def _server_module() -> Any:
    import importlib

    try:
        importlib.import_module("mcp.server.mcpserver")  # the SDK, before our module imports it
    except ImportError as exc:
        raise MissingExtraError("mcp", "mcp") from exc
    from . import server

    return server


def __getattr__(name: str) -> Any:
    """``create_mcp_server`` and ``http_app`` import the MCP SDK on first use."""
    if name in ("create_mcp_server", "http_app"):
        return getattr(_server_module(), name)
    raise AttributeError(f"module 'vlsearch.mcp' has no attribute {name!r}")


def run_stdio(config: ServerConfig) -> None:
    """Serve over stdin/stdout until the client closes them (the client starts this process)."""
    import anyio

    mcp, tools = _server_module().create_mcp_server(config)
    try:
        anyio.run(mcp.run_stdio_async)
    finally:
        tools.close()


def run_http(config: ServerConfig, log_level: str = "info") -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` with uvicorn, under the HTTP server's rules."""
    import uvicorn

    from ..server.serving import uvicorn_config

    module = _server_module()
    mcp, tools = module.create_mcp_server(config)
    try:
        app = module.http_app(mcp, config)
        uvicorn.Server(uvicorn_config(app, config, host=config.host, port=config.port, log_level=log_level)).run()
    finally:
        tools.close()
