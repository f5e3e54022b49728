"""The ``vlsearch`` command: one module per command group, errors translated here only."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import InputError, VlsearchError
from .common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, shown

def build_parser() -> argparse.ArgumentParser:
    from . import eval as evaluate
    from . import index, manage, mcp, parity, search, serve, tune, watch

    parser = argparse.ArgumentParser(
        prog="vlsearch", allow_abbrev=False,
        description="Multimodal search over folders and buckets of PDFs, Office documents, images, videos and text "
                    "with Qwen3-VL-Embedding and Qwen3-VL-Reranker.")
    parser.add_argument("--version", action="version", version=f"vlsearch {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (index, watch, search, manage, serve, mcp, evaluate, tune, parity):
        module.register(commands)
    return parser


def _version() -> str:
    from ..version import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 3 some files failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed (serve --detach passes them on)
    try:
        return int(args.run(args) or EXIT_OK)
    except InputError as exc:
        print(shown(f"vlsearch: error: {exc}", lines=True), file=sys.stderr)
        return EXIT_USAGE
    except VlsearchError as exc:
        print(shown(f"vlsearch: error: {exc}", lines=True), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vlsearch: interrupted", file=sys.stderr)
        return 130
