#!/usr/bin/env python
"""Training throughput of ``vlsearch tune``: samples/s (and peak GPU memory) of the embedder and
reranker LoRA steps, with gradient checkpointing (the default) against without it, in one run.

A sample is one training query with its positive and its mined negatives (embedder: InfoNCE over
the batch; reranker: one pair per document). Each variant loads the model, adds LoRA (r = alpha = 32),
and runs the real training loop (``vlsearch.tune.loop.train``) for ``--warmup`` + ``--steps`` steps;
the time of the last ``--steps`` steps is read from the loop's own log. The corpus is small enough
for every input to be encoded (and cached) during the warm-up, so the timed steps measure the model.

Example (CPU, tiny random checkpoint, ~2 minutes on 2 cores):
    python bench/bench_tune.py
GPU numbers of the issue (random weights with the real Qwen3-VL-2B shapes built on the machine, bf16,
1,120 x 1,120 images = 1,225 vision tokens, ~1,280 tokens per document; under 8 minutes on one H200):
    python bench/bench_tune.py --gpu-suite --checkpoint /tmp/vl2b --json /tmp/tune-gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally

WORDS = "red green blue chart page table revenue figure summary report dog beach cat video text".split()


def workload(n: int, side: int, seed: int = 0) -> Any:
    """``n`` text queries, each relevant to one of ``n`` images of ``side`` x ``side`` pixels."""
    from PIL import Image

    from vlsearch.eval.datasets import RetrievalTask

    rng = np.random.default_rng(seed)
    corpus, queries, qrels = {}, {}, {}
    for i in range(n):
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # blocks: structure at any size
        image = Image.fromarray(pixels).resize((side, side), Image.NEAREST)
        corpus[f"d{i}"] = {"image": image}
        queries[f"q{i}"] = {"text": " ".join(rng.choice(WORDS, 12))}
        qrels[f"q{i}"] = {f"d{i}": 1}
    return RetrievalTask("bench", corpus, queries, qrels)


def run_variant(stage: str, path: Path, task: Any, args: argparse.Namespace, checkpointing: bool,
                folder: Path) -> dict[str, Any]:
    import torch

    from vlsearch import Embedder, Reranker
    from vlsearch.tune.loop import TrainOptions, train
    from vlsearch.tune.objectives import EmbedderObjective, RerankerObjective

    ids = list(task.queries)
    negatives = {q: [d for d in task.corpus if d not in task.qrels[q]][:8] for q in ids}
    options = TrainOptions(batch_size=args.batch_size, negatives=args.negatives, max_steps=args.warmup + args.steps,
                           save_every=10**9, gradient_checkpointing=checkpointing, warmup=0.0, lr=1e-5,
                           batch_tokens=args.batch_tokens)
    cls, objective_cls = (Embedder, EmbedderObjective) if stage == "embedder" else (Reranker, RerankerObjective)
    model = cls(path, device=args.device, dtype=args.dtype, batch_invariant=False)
    cuda = model.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    objective = objective_cls(model, task, ids, [], negatives, options)
    row: dict[str, Any] = {"stage": stage, "checkpointing": checkpointing}
    try:
        result = train(objective, options, folder, digest=f"{stage}-{checkpointing}", progress=False)
    except RuntimeError as exc:  # out of memory without checkpointing is a result, not a failure
        if "out of memory" not in str(exc).lower():
            raise
        row["error"] = "out of memory"
        result = None
    if result is not None:
        times = {e["step"]: e["seconds"] for e in result.history if "loss" in e}
        seconds = times[args.warmup + args.steps] - times[args.warmup]
        row.update(seconds=seconds, samples_per_s=args.steps * args.batch_size / seconds,
                   loss_first=result.history[0]["loss"], finite=all(np.isfinite(e["loss"]) for e in result.history
                                                                    if "loss" in e))
    if cuda:
        torch.cuda.synchronize()
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del objective, model
    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median samples/s (an out-of-memory run stands for all)."""
    failed = [r for r in rows if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(rows, key=lambda r: r["samples_per_s"])
    return {**ordered[len(ordered) // 2], "runs": len(rows), "all_samples_per_s": [r["samples_per_s"] for r in rows]}


def machine(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    import torch
    import transformers

    import vlsearch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "vlsearch": vlsearch.__version__, "device": device,
            "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu,
            "size": args.size, "weights_bytes": sum(p.stat().st_size for p in path.glob("*.safetensors"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["tiny", "2b-shallow", "2b"], default=None,
                        help="checkpoint shapes (default tiny; 2b with --gpu-suite)")
    parser.add_argument("--checkpoint", type=Path, help="reuse this checkpoint directory (built there when empty)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16")
    parser.add_argument("--image", type=int, default=None, help="image side in pixels (default 448; 1120 on GPU)")
    parser.add_argument("--batch-size", type=int, default=8, help="queries per step (default 8)")
    parser.add_argument("--negatives", type=int, default=1, help="mined negatives per query (default 1)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="padded tokens per forward chunk")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3; 2 on GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 6; 4 on GPU)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of all variants, median reported "
                                                                  "(default 3; 1 on GPU)")
    parser.add_argument("--gpu-suite", action="store_true",
                        help="the issue's GPU numbers (2B, bf16, 1,280-token images)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    suite = args.gpu_suite
    args.size = args.size or ("2b" if suite else "tiny")
    args.image = args.image or (1120 if suite else 448)
    args.warmup = args.warmup if args.warmup is not None else (2 if suite else 3)
    args.steps = args.steps or (4 if suite else 6)
    args.repeats = args.repeats or (1 if suite else 3)
    if suite:
        args.device = args.device or "cuda"

    from vlsearch.testing import build_checkpoint

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlsearch-bench-tune-") as tmp:
        path = args.checkpoint or Path(tmp) / f"ckpt-{args.size}"
        if not any(path.glob("*.safetensors")):
            print(f"building a random {args.size} checkpoint in {path} ...", flush=True)
            build_checkpoint(path, size=args.size, seed=0, tie_word_embeddings=True)  # the 2B models tie
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
        # every input is seen in the warm-up: 2 batches per epoch
        task = workload(2 * args.batch_size, args.image)
        info = machine(args, path)
        runs: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for round_ in range(args.repeats):  # variants take turns, so drift affects them alike
            for stage in ("embedder", "reranker"):
                for checkpointing in (True, False):
                    row = run_variant(stage, path, task, args, checkpointing,
                                      Path(tmp) / f"run-{round_}-{stage}-{checkpointing}")
                    runs.setdefault((stage, checkpointing), []).append(row)
                    print(json.dumps(row), flush=True)
        rows = [median_row(found) for found in runs.values()]
    print(f"\n{info['device_name']}, {info['size']} checkpoint, dtype {args.dtype}, torch {info['torch']}; "
          f"batch {args.batch_size} queries, {args.negatives} negative(s) each, {args.image}x{args.image} images; "
          f"{args.steps} timed steps after {args.warmup}, median of {args.repeats}")
    print(f"{'model':10} {'checkpointing':>13} {'seconds':>9} {'samples/s':>10} {'vs none':>8} {'peak GiB':>9}")
    ok = True
    for row in rows:
        base = next(r for r in rows if r["stage"] == row["stage"] and not r["checkpointing"])
        ratio = (row["samples_per_s"] / base["samples_per_s"]) if "samples_per_s" in row and "samples_per_s" in base \
            else None
        peak = f"{row['peak_gib']:.1f}" if "peak_gib" in row else "-"
        if "error" in row:
            print(f"{row['stage']:10} {str(row['checkpointing']):>13} {row['error']:>30} {peak:>9}")
            ok = ok and not row["checkpointing"]  # checkpointing must fit
            continue
        ok = ok and row["finite"]
        print(f"{row['stage']:10} {str(row['checkpointing']):>13} {row['seconds']:9.2f} {row['samples_per_s']:10.2f} "
              f"{(f'{ratio:.2f}x' if ratio else '-'):>8} {peak:>9}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
