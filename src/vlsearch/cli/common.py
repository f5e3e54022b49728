"""What the command modules share: exit codes, model options, and parsers that take no abbreviations."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..models.precision import DTYPES

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def command(commands: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command parser. Options must be spelled out: ``--mode`` is never taken for ``--model``."""
    return commands.add_parser(name, allow_abbrev=False, **kwargs)


def model_arguments(parser: argparse.ArgumentParser, reranker: bool = True) -> None:
    """--model / --reranker (else $VLSEARCH_EMBEDDER / $VLSEARCH_RERANKER), --device, --dtype."""
    parser.add_argument("--model", help="embedding model: hub id, directory or server URL (default: "
                                        "$VLSEARCH_EMBEDDER, else the collection's model, else "
                                        "Qwen/Qwen3-VL-Embedding-2B)")
    parser.add_argument("--adapter", metavar="DIR",
                        help="LoRA adapter of the embedding model (vlsearch tune), merged in as it loads; part of "
                             "the model's fingerprint (default: the one the collection recorded, if any)")
    if reranker:
        parser.add_argument("--reranker", help="reranking model (default: $VLSEARCH_RERANKER, else "
                                               "Qwen/Qwen3-VL-Reranker-2B)")
        reranker_adapter_argument(parser)
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: the first GPU if any)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="model precision: auto ($VLSEARCH_DTYPE, else bfloat16 on a GPU or on a CPU with bfloat16 "
                             "instructions, else float32); int8: int8 linear layers on a CPU (least memory)")


def reranker_adapter_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reranker-adapter", metavar="DIR", help="LoRA adapter of the reranking model (vlsearch tune)")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"device": args.device, "dtype": args.dtype}


def resident_arguments(parser: argparse.ArgumentParser) -> None:
    """--server / --no-server: use a running vlsearch server (models stay loaded), or not."""
    parser.add_argument("--server", metavar="URL",
                        help="a running vlsearch server to use (default: $VLSEARCH_SERVER, else the one "
                             "`vlsearch serve --detach` registered; key from $VLSEARCH_API_KEY); else in-process")
    parser.add_argument("--no-server", action="store_true", help="work in-process, even when a server runs")


#: what a terminal acts on rather than shows: C0 controls (ESC, CR, LF, BEL ...), DEL, C1 controls (CSI, OSC ...),
#: line and paragraph separators, and the Unicode bidi controls that reorder what follows them
_OTHERS = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(rf"[\x00-\x1f{_OTHERS}]")
_CONTROLS_BUT_LF = re.compile(rf"[\x00-\x09\x0b-\x1f{_OTHERS}]")


def shown(text: object, lines: bool = False) -> str:
    """``text`` safe to print for a human: control characters written as escapes (``\\x1b``, ``\\u202e``),
    so a file name, member name or snippet can neither drive the terminal (retitle it, move the cursor,
    rewrite a line) nor reorder what is shown. ``lines`` keeps line feeds (a multi-line report).
    ``--json`` output is never passed through here.

    Example:
        >>> shown("ok\\x1b]0;PWNED\\x07.txt")
        'ok\\\\x1b]0;PWNED\\\\x07.txt'
    """
    return (_CONTROLS_BUT_LF if lines else _CONTROLS).sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_name(collection: str) -> bool:
    """Whether a collection is given by name (a server knows it) rather than by path."""
    import os

    return os.sep not in collection and not collection.startswith(".")
