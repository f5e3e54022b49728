"""``vlsearch eval``: retrieval benchmarks on the production path, with and without the reranker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .common import command, model_arguments, model_options, reranker_adapter_argument, resident_arguments


def register(commands: argparse._SubParsersAction) -> None:
    p = command(
        commands, "eval", help="score retrieval benchmarks (ViDoRe, JinaVDR, MMEB-V2, MTEB, your own folder)",
        description="Embed each task's corpus and queries, rank with the vector store (exact search), optionally "
                    "rerank, and write results.json, report.md and one TREC run file per configuration.")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="registered task names (--list) or dataset directories")
    p.add_argument("--list", action="store_true", help="list the registered tasks and published averages, then exit")
    p.add_argument("--rerank-top", type=int, default=100, help="documents reranked per query (default 100)")
    p.add_argument("--dim", default=None, metavar="D[,D...]", help="Matryoshka dimensions (default: the model's)")
    p.add_argument("--mode", default="dense", metavar="M[,M...]",
                   help="first-stage modes: dense, lexical (BM25 over the documents' text), hybrid; comma-separated, "
                        "each also reranked with --reranker (default dense)")
    p.add_argument("--precision", default="float32", metavar="P[,P...]",
                   help="float32, int8, ubinary, comma-separated (default float32)")
    p.add_argument("--output", "-o", default="eval-results", help="output directory (default ./eval-results)")
    p.add_argument("--limit-queries", type=int, metavar="N", help="only the first N judged queries of each task")
    p.add_argument("--depth", type=int, default=100, help="documents ranked per query (default 100)")
    p.add_argument("--cache-dir", help="embedding cache (default $VLSEARCH_HOME/eval-cache)")
    p.add_argument("--data-dir", help="local copies of registered datasets (default $VLSEARCH_EVAL_DATA)")
    p.add_argument("--media-root", help="images/videos of MMEB tasks (default: the dataset directory)")
    p.add_argument("--queries", help="queries file (jsonl/tsv) of a folder task")
    p.add_argument("--qrels", help="qrels file (tsv/TREC) of a folder task")
    p.add_argument("--language", help="only queries in this language (ViDoRe v2/v3 'language' column, e.g. english)")
    p.add_argument("--chunk-size", type=int, default=256, help="items embedded per cached chunk (default 256)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary")
    model_arguments(p, reranker=False)
    p.add_argument("--reranker", help="reranking model (hub id or directory); none by default")
    resident_arguments(p)
    reranker_adapter_argument(p)
    p.set_defaults(run=run)


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--dim takes integers separated by commas, not {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..eval.runner import EvalOptions, run_eval
    from ..models.loading import embedder_name
    from .resident import find

    if args.list:
        return list_tasks()
    if not args.tasks:
        raise InputError("give at least one TASK (registered name or directory); --list shows the registered ones")
    if (args.queries or args.qrels) and len(args.tasks) != 1:
        raise InputError("--queries/--qrels describe one folder task; give exactly one TASK")
    options = EvalOptions(
        output=Path(args.output),
        model=embedder_name(args.model),
        reranker=args.reranker, rerank_top=args.rerank_top, dims=_ints(args.dim),
        precisions=[p.strip() for p in args.precision.split(",") if p.strip()], depth=args.depth,
        modes=[m.strip() for m in args.mode.split(",") if m.strip()],
        limit_queries=args.limit_queries, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        media_root=Path(args.media_root) if args.media_root else None,
        queries=Path(args.queries) if args.queries else None, qrels=Path(args.qrels) if args.qrels else None,
        language=args.language,
        chunk_size=args.chunk_size, quiet=args.quiet, model_options=model_options(args), adapter=args.adapter,
        reranker_adapter=args.reranker_adapter)
    embedder = None
    server = None if args.no_server or args.model or args.device or args.adapter else find(args.server)
    if server is not None:  # the server's loaded embedder; the reranker, when asked for, loads here
        from ..models.remote import RemoteEmbedder

        embedder = RemoteEmbedder(server.url, api_key=server.key)
        options.model = server.url
        print(f"vlsearch: embedding with the server at {server.url}", file=sys.stderr)
    results = run_eval(args.tasks, options, embedder=embedder)
    if not args.quiet:
        print((Path(args.output) / "report.md").read_text(encoding="utf-8"))
    return 0 if results["tasks"] else 1


def list_tasks() -> int:
    from ..eval.registry import AGGREGATES, TASKS

    print(f"{'task':40} {'metric':8} source")
    for spec in TASKS.values():
        source = spec.hub + (f" ({spec.config})" if spec.config else "") + (f" [{spec.language or spec.lang_dir}]"
                                                                          if spec.language or spec.lang_dir else "")
        print(f"{spec.name:40} {spec.metric:8} {source}")
    print("\npublished averages (QwenLM/Qwen3-VL-Embedding README):", file=sys.stdout)
    for agg in AGGREGATES:
        scores = ", ".join(f"{m} {v}" for m, v in agg.published.items())
        print(f"  {agg.name} [{agg.metric}, {agg.n_tasks or '?'} datasets]: {scores}")
    return 0
