"""The ``vlsearch`` command: one module per command group, errors translated here only."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import InputError, VlsearchError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def model_arguments(parser: argparse.ArgumentParser, reranker: bool = True) -> None:
    """--model / --reranker (also $VLSEARCH_EMBEDDER / $VLSEARCH_RERANKER), --device, --dtype."""
    parser.add_argument("--model", default=os.environ.get("VLSEARCH_EMBEDDER"),
                        help="embedding model: hub id or directory (env VLSEARCH_EMBEDDER; default: the "
                             "collection's model, else Qwen/Qwen3-VL-Embedding-2B)")
    if reranker:
        parser.add_argument("--reranker", default=os.environ.get("VLSEARCH_RERANKER"),
                            help="reranking model (env VLSEARCH_RERANKER; default Qwen/Qwen3-VL-Reranker-2B)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: the first GPU if any)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])


def model_options(args: argparse.Namespace) -> dict:
    return {"device": args.device, "dtype": args.dtype}


def build_parser() -> argparse.ArgumentParser:
    from . import eval as evaluate
    from . import index, manage, parity, search, serve

    parser = argparse.ArgumentParser(
        prog="vlsearch", description="Multimodal search over folders of PDFs, images, videos and text "
                                     "with Qwen3-VL-Embedding and Qwen3-VL-Reranker.")
    parser.add_argument("--version", action="version", version=f"vlsearch {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (index, search, manage, serve, evaluate, parity):
        module.register(commands)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 3 some files failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except InputError as exc:
        print(f"vlsearch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VlsearchError as exc:
        print(f"vlsearch: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vlsearch: interrupted", file=sys.stderr)
        return 130
