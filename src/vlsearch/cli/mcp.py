"""``vlsearch mcp``: the MCP server for agents (needs ``pip install 'vlsearch[mcp]'``)."""

from __future__ import annotations

import argparse
import sys

from .common import command
from .serve import netloc, server_arguments, server_config


def register(commands: argparse._SubParsersAction) -> None:
    p = command(
        commands, "mcp", help="run the MCP server for agents (stdio, or streamable HTTP at /mcp)",
        description="Serve the collections as MCP tools: list_collections, collection_info, search, get_item, "
                    "ingest and job_status. --transport stdio (the default) is for an agent that starts this "
                    "command; --transport http serves http://HOST:PORT/mcp with the HTTP server's rules "
                    "(API key, allowed roots, size caps, no URL inputs unless allowed).")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default) or http (streamable HTTP)")
    server_arguments(p, port=8001)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = server_config(args, binds=args.transport == "http")
    if isinstance(config, int):
        return config
    from ..mcp import run_http, run_stdio

    if args.transport == "stdio":
        run_stdio(config)  # stdout carries the protocol: messages go to stderr
        return 0
    print(f"vlsearch: MCP on http://{netloc(args.host)}:{args.port}/mcp "
          f"(API key {'required' if config.api_keys else 'not required'})", file=sys.stderr)
    run_http(config, log_level=args.log_level)
    return 0
