"""``vlsearch search``: two-stage search of a collection."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError, ServerUnreachable
from ..grounding import lines_label
from .common import command, is_name, model_arguments, model_options, resident_arguments, shown
from .resident import find


def register(commands: argparse._SubParsersAction) -> None:
    p = command(commands, "search", help="search a collection",
                            description="Embed the query, take the nearest items, rerank them.")
    p.add_argument("query", nargs="?", help="query text")
    p.add_argument("--image", metavar="FILE", help="query image (alone or with the text)")
    p.add_argument("--like", metavar="ID", help="find items like this item of the collection")
    p.add_argument("--collection", "-c", default="default", help="collection name or directory (default: default)")
    p.add_argument("--instruction", help="query instruction (default: the collection's)")
    p.add_argument("--top-k", "-k", type=int, default=10, help="results (default 10)")
    p.add_argument("--candidates", type=int, default=50, help="items reranked (default 50)")
    p.add_argument("--no-rerank", action="store_true", help="vector similarity only")
    p.add_argument("--mode", choices=["dense", "lexical", "hybrid"],
                   help="dense (vectors), lexical (BM25 over text, OCR text and file names) or hybrid (both, "
                        "reciprocal-rank fusion); default: hybrid when the collection has text")
    p.add_argument("--weights", metavar="D,L", help="dense and lexical weights of the hybrid fusion (default 1,1)")
    p.add_argument("--where", metavar="EXPR",
                   help="filter, e.g. \"modality = 'pdf_page'\" or \"text LIKE '%%invoice%%'\"")
    p.add_argument("--rerank-pixels", type=int, metavar="N",
                   help="the most pixels of a page or image as the reranker sees it (default 1843200, the official "
                        "reranker's); fewer rerank faster (512x32x32 = 524288: about 5x faster)")
    p.add_argument("--moments", action="store_true",
                   help="also find each video result's best few seconds (one embedder forward per window)")
    p.add_argument("--dense-regions", action="store_true",
                   help="also mark each page's or image's most query-like patches (an approximation; one embedder "
                        "forward per result; in-process only)")
    p.add_argument("--rerank-budget", type=float, metavar="SECONDS",
                   help="rerank the best candidates that fit in this time, the rest keep their first-stage order "
                        "(marked not reranked); 0: no limit (default: 6 when the reranker runs on a CPU, else 0)")
    p.add_argument("--rerank-inputs", choices=["full", "cheap"],
                   help="cheap: a mostly-text page is reranked on its text layer or OCR text, other pictures at "
                        "262144 pixels (default: cheap when the reranker runs on a CPU, else full)")
    p.add_argument("--json", action="store_true", help="JSON output")
    model_arguments(p)
    resident_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = {"image": args.image, "top_k": args.top_k, "candidates": args.candidates, "rerank": not args.no_rerank,
               "where": args.where, "instruction": args.instruction, "like": args.like, "mode": args.mode,
               "weights": _weights(args.weights), "rerank_budget": args.rerank_budget,
               "rerank_inputs": args.rerank_inputs, "timings": {}, **({"moments": True} if args.moments else {}),
               **({"dense_regions": True} if args.dense_regions else {})}
    results, served = None, "in-process"
    # the server has its own models: asking for others, or a collection by path, means in-process
    local_only = (args.no_server or not is_name(args.collection) or args.model or args.reranker or args.device
                  or args.adapter or args.reranker_adapter or args.rerank_pixels or args.dense_regions)
    server = None if local_only else find(args.server)
    if server is not None:
        from ..integrations.common import RemoteCollection

        try:
            results = RemoteCollection(server.url, args.collection, api_key=server.key).search(args.query, **options)
            served = f"the server at {server.url}"
        except ServerUnreachable as exc:
            print(shown(f"vlsearch: {exc}; searching in-process"), file=sys.stderr)
    if results is None:
        from ..collection import Collection

        collection = Collection(args.collection, model=args.model, reranker=args.reranker, create=False,
                                model_options=model_options(args), adapter=args.adapter,
                                reranker_adapter=args.reranker_adapter, rerank_pixels=args.rerank_pixels)
        results = collection.search(args.query, **options)
    print(shown(f"vlsearch: searched {args.collection!r} {served}{_took(options['timings'], results)}"),
          file=sys.stderr)
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2)
        print()
        return 0
    if not results:
        print("no results", file=sys.stderr)
    for r in results:
        where = f"p.{r.page}" if r.page is not None else (
            f"{_clock(r.start)}-{_clock(r.end)}" if r.start is not None else "")
        moment = f"moment {_clock(r.moment['start'])}-{_clock(r.moment['end'])}" if r.moment else ""
        where = ", ".join(part for part in (where, lines_label(r.regions), moment) if part)  # "p.3, lines 12-14"
        snippet = " ".join(r.text.split())[:100]
        scores = f"{r.score:.3f}" + "".join(f" ({name} {value:.3f})" for name, value in (
            ("vector", r.vector_score), ("bm25", r.lexical_score)) if value is not None and value != r.score)
        print(shown(f"{r.rank:>3}  {scores}  {r.source} {where}".rstrip()))
        print(shown(f"     {r.modality} {r.id}" + (f"  {snippet}" if snippet else "")
                    + (f"  [{r.note}]" if r.note else "")))
    return 0


def _took(timings: dict[str, float], results: list) -> str:
    """", query embedded in 0.41 s, store 0.01 s, rerank 7.9 s (8 of 10 shown reranked)" from a search's timings."""
    if not timings:
        return ""
    parts = [f"{label} {timings[key]:.2f} s" for key, label in (("embed", "query embedded in"), ("search", "store"),
                                                                ("rerank", "rerank")) if key in timings]
    reranked = sum(r.reranked for r in results)
    shown = f" ({reranked} of {len(results)} shown reranked)" if timings.get("rerank", 0) > 0.001 else ""
    return ", " + ", ".join(parts) + shown


def _weights(text: str | None) -> tuple[float, float]:
    if not text:
        return 1.0, 1.0
    try:
        dense, lexical = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--weights takes two numbers, dense and lexical, as D,L; not {text!r}") from None
    return dense, lexical


def _clock(seconds: float | None) -> str:
    seconds = seconds or 0.0
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"
