"""``vlsearch tune``: LoRA adapters for both models, trained on a collection or a task, with the gain measured."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .common import command


def register(commands: argparse._SubParsersAction) -> None:
    p = command(
        commands, "tune", help="adapt the embedder and the reranker to your data with LoRA (pip install "
                               "'vlsearch[tune]')",
        description="Train LoRA adapters on (query, relevant document) judgments, with hard negatives mined from "
                    "the collection's own index; --eval measures the held-out queries before and after. A re-run "
                    "with the same OUTPUT resumes from the last checkpoint. With --merge and --adapter alone, "
                    "write a checkpoint with an adapter merged in.")
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="an eval task directory (BEIR, folder + --queries/--qrels ...) or registered task")
    p.add_argument("--collection", "-c", help="train on this collection's items (with --queries and --qrels)")
    p.add_argument("--queries", help="queries file (jsonl/tsv)")
    p.add_argument("--qrels", help="qrels file (qid doc grade, or TREC); with a collection, documents are record "
                                   "ids, source paths (relative to the qrels file) or 'file.pdf#page=N'")
    p.add_argument("--output", "-o", required=True, help="run directory: adapters, checkpoints, report.md")
    p.add_argument("--model", help="embedding model to adapt (default: the collection's, $VLSEARCH_EMBEDDER, "
                                   "Qwen/Qwen3-VL-Embedding-2B)")
    p.add_argument("--reranker",
                   help="reranking model to adapt (default: $VLSEARCH_RERANKER, Qwen/Qwen3-VL-Reranker-2B)")
    p.add_argument("--only", choices=["embedder", "reranker"], help="train one model only")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=1, help="passes over the training queries (default 1)")
    g.add_argument("--max-steps", type=int, metavar="N", help="train N steps (instead of --epochs)")
    g.add_argument("--batch-size", type=int, default=16, help="queries per step (default 16)")
    g.add_argument("--negatives", type=int, default=3, help="mined hard negatives per query and step (default 3)")
    g.add_argument("--mine-depth", type=int, default=30,
                   help="nearest non-relevant documents kept per query (default 30)")
    g.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    g.add_argument("--warmup", type=float, default=0.1, help="share of the steps warming up (default 0.1)")
    g.add_argument("--rank", type=int, default=32, help="LoRA rank (default 32)")
    g.add_argument("--alpha", type=float, default=32, help="LoRA alpha (default 32)")
    g.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout (default 0)")
    g.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature (default 0.05)")
    g.add_argument("--matryoshka", metavar="D[,D...]",
                   help="sum the embedder's loss over these dimensions ('full': the model's), e.g. 64,256,1024,full")
    g.add_argument("--no-gradient-checkpointing", action="store_true", help="keep activations (faster, more memory)")
    g.add_argument("--save-every", type=int, default=50, help="steps between checkpoints (default 50)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of the queries held out (default 0.2)")
    g.add_argument("--seed", type=int, default=0, help="split, initialisation and sampling seed (default 0)")
    g.add_argument("--restart", action="store_true", help="discard what an earlier run left in OUTPUT")
    p.add_argument("--eval", action="store_true",
                   help="evaluate the held-out queries before and after (nDCG@10, Recall@10/100, with and without "
                        "the reranker) into OUTPUT/report.md")
    p.add_argument("--rerank-top", type=int, default=100, help="documents reranked per query in --eval (default 100)")
    p.add_argument("--merge", action="store_true", help="also write each model with its adapter merged in")
    p.add_argument("--adapter", metavar="DIR", help="with --merge and no training data: the adapter to merge")
    p.add_argument("--device", help="cuda, cuda:1, cpu ... (default: the first GPU if any)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars with loss and learning rate (default: on a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="no messages")
    p.set_defaults(run=run)


def _dims(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(0 if v.strip() == "full" else int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--matryoshka takes integers or 'full' separated by commas, not {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..tune import TrainOptions, TuneOptions, from_collection, from_task, tune

    output = Path(args.output).expanduser()
    if args.adapter:
        if not args.merge or args.task or args.collection:
            raise InputError("--adapter names an adapter to merge: give it with --merge and no training data")
        return merge_only(args, output)
    if bool(args.task) == bool(args.collection):
        raise InputError("give either a TASK directory or --collection NAME with --queries and --qrels")
    if args.collection:
        if not (args.queries and args.qrels):
            raise InputError("--collection needs --queries and --qrels")
        from ..collection import Collection

        data = from_collection(Collection(args.collection, create=False), args.queries, args.qrels)
    else:
        data = from_task(args.task, queries=args.queries, qrels=args.qrels)
    train = TrainOptions(rank=args.rank, alpha=args.alpha, dropout=args.dropout, epochs=args.epochs,
                         max_steps=args.max_steps, batch_size=args.batch_size, negatives=args.negatives, lr=args.lr,
                         warmup=args.warmup, temperature=args.temperature, matryoshka=_dims(args.matryoshka),
                         gradient_checkpointing=not args.no_gradient_checkpointing, save_every=args.save_every,
                         seed=args.seed)
    result = tune(data, TuneOptions(
        output=output, model=args.model, reranker=args.reranker,
        stages=(args.only,) if args.only else ("embedder", "reranker"), train=train,
        val_fraction=args.val_fraction, mine_depth=args.mine_depth, evaluate=args.eval, rerank_top=args.rerank_top,
        merge=args.merge, restart=args.restart, device=args.device, dtype=args.dtype, progress=args.progress,
        quiet=args.quiet))
    if not args.quiet:
        print(result.report.read_text(encoding="utf-8"))
    return 0


def merge_only(args: argparse.Namespace, output: Path) -> int:
    """Write the base model with ``--adapter`` merged in (base: --model, else the one the adapter records)."""
    from ..models.adapters import merge_checkpoint, read_adapter

    info = read_adapter(args.adapter)
    base = args.model or info.base_model
    if not base:
        raise InputError(f"adapter {info.path} does not record its base model: give --model")
    merge_checkpoint(base, info.path, output)
    if not args.quiet:
        print(f"vlsearch: wrote {output} ({base} with adapter {info.path} merged in)", file=sys.stderr)
    return 0
