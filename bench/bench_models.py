#!/usr/bin/env python
"""Throughput of Embedder.embed and Reranker.score: packed execution against today's padded path and two baselines.

Variants, all on the same items and the same loaded weights:
  ours    - the defaults: length-sorted batches under a token budget packed into one row without
            padding, attention per sequence, batch-invariant GEMMs (one input per product)
  plain   - the same packed batches on the plain linear layers (batch_invariant=False): one GEMM
            per batch, what invariance costs
  padded  - the padded path of before (packed=False): rows padded to the batch's longest input
  a       - one item per forward (max_batch_size=1)
  b       - one padded batch of everything (max_batch_size=n, batch_tokens=1e9, plain "sdpa" and linears)

Each table is measured twice: end to end (files in, vectors out: decoding and preprocessing on
the encoding threads overlap the model) and the model alone (inputs encoded once beforehand).
"tok eff" is the language model's real tokens / computed tokens (padding included).

Example (CPU, tiny random checkpoint, ~3 minutes on 2 cores):
    python bench/bench_models.py --json /tmp/bench.json
GPU numbers of the issue (random weights with the real Qwen3-VL-2B shapes, bf16; bench/gpu_suite.sh):
    python bench/bench_models.py --gpu-suite --checkpoint /tmp/vl2b
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vlsearch.testing import gradient_image, write_video  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally

WORDS = ("query document page chart video image text search retrieve relevant candidates answer "
         "dog beach cat table figure report summary section revenue model").split()


# ---------------------------------------------------------------- media and workloads

IMAGE_SIZES = [(64, 48), (160, 120), (320, 240), (300, 120), (640, 480), (900, 700)]
PAGE_SIZES = [(600, 850), (450, 1300)]  # PDF-page-like: portrait A4, long scroll


def text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, int(rng.integers(3, 80))))


def mixed_items(n: int, media: Path, seed: int = 0, video_every: int = 25) -> list[dict[str, Any]]:
    """Texts, images, tall pages and videos in a fixed interleaved order (at least one video, none
    with ``video_every=0``)."""
    rng = np.random.default_rng(seed)
    video = write_video(media / "clip.mp4", frames=48, size=(160, 120)) if video_every else None
    items = []
    for i in range(n):
        if video and (i % video_every == video_every // 2 or (n < video_every and i == n // 2)):
            items.append({"video": str(video)})
        elif i % 5 in (0, 2):
            items.append({"text": text(rng)})
        elif i % 5 == 4:
            w, h = PAGE_SIZES[i % len(PAGE_SIZES)]
            items.append({"image": save(media, w, h, seed + i)})
        else:
            w, h = IMAGE_SIZES[i % len(IMAGE_SIZES)]
            items.append({"image": save(media, w, h, seed + i)})
    return items


def mixed_documents(n: int, media: Path, size: tuple[int, int] | None = None, seed: int = 1000) -> list[dict[str, Any]]:
    """Half texts, half images (one fixed size, or the mixed sizes and pages)."""
    rng = np.random.default_rng(seed)
    sizes = [size] if size else IMAGE_SIZES + PAGE_SIZES
    return [{"text": text(rng)} if i % 2 == 0 else {"image": save(media, *sizes[i // 2 % len(sizes)], seed + i)}
            for i in range(n)]


def save(media: Path, w: int, h: int, seed: int) -> str:
    path = media / f"img{seed}_{w}x{h}.png"
    gradient_image(w, h, seed).save(path)
    return str(path)


# ---------------------------------------------------------------- models and variants

class Models:
    """One loaded model per (class, construction options). Variants set the attributes that
    ``Qwen3VLBase`` reads on every call (batch budget, packing, batch invariance), all of them
    each time, so the weights are loaded once and no variant inherits another's settings."""

    def __init__(self, path: Path, device: str | None, dtype: str) -> None:
        self.path, self.device, self.dtype, self.cache = path, device, dtype, {}

    def get(self, cls: type, options: dict[str, Any], attributes: dict[str, Any]):
        key = (cls.__name__, tuple(sorted(options.items())))
        if key not in self.cache:
            model = cls(self.path, device=self.device, dtype=self.dtype, **options)
            self.cache[key] = (model, {name: getattr(model, name) for name in ATTRIBUTES})
        model, defaults = self.cache[key]
        for name in ATTRIBUTES:
            setattr(model, name, attributes.get(name, defaults[name]))
        return model


ATTRIBUTES = ("batch_tokens", "max_batch_size", "packed", "batch_invariant")
OURS, PLAIN, PADDED, A, B = "ours", "plain linears", "padded (before)", "a: 1/forward", "b: 1 padded batch"
BASELINES = (PADDED, PLAIN, A, B)


def variants(n: int, gpu_suite: bool) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, constructor options, attributes); attributes not named keep the library default."""
    out = [(OURS, {}, {}), (PLAIN, {}, {"batch_invariant": False}), (PADDED, {}, {"packed": False}),
           (A, {}, {"max_batch_size": 1})]
    if not gpu_suite:  # the GPU numbers compare against today's path and one per forward only
        out.append((B, {"attn_implementation": "sdpa", "batch_invariant": False},
                    {"batch_tokens": 10**9, "max_batch_size": n, "batch_invariant": False}))
    return out


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def measure(run: Callable[[Any], Any], models: Models, cls: type, n: int, gpu_suite: bool,
            repeats: int) -> tuple[dict[str, list[float]], dict[str, Any], dict[str, dict[str, Any]]]:
    """One untimed warm-up per variant, then ``repeats`` rounds, variants interleaved in each
    round so that drift (thermal, caches) hits all of them alike. Returns times, outputs and,
    per variant, the token efficiency and peak GPU memory of its runs."""
    import torch

    specs = variants(n, gpu_suite)
    outputs, times, extra = {}, {name: [] for name, *_ in specs}, {}
    for name, *options in specs:
        outputs[name] = run(models.get(cls, *options))
    for _ in range(repeats):
        for name, *options in specs:
            model = models.get(cls, *options)
            model.token_counts.reset()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            run(model)
            sync()
            times[name].append(time.perf_counter() - start)
            extra[name] = {"token_efficiency": model.token_counts.efficiency, "peak_gib": peak_gib()}
    return times, outputs, extra


def report(title: str, unit: str, n: int, times: dict[str, list[float]], outputs: dict[str, Any],
           extra: dict[str, dict[str, Any]], strict: bool) -> dict[str, Any]:
    """Print the table and the consistency checks; return them for the JSON file."""
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{title}: {n} {unit}, median of {len(next(iter(times.values())))} timed runs")
    gpu = any(e["peak_gib"] is not None for e in extra.values())
    print(f"{'variant':<18}{'seconds':>9}{unit + '/s':>11}{'tok eff':>9}" + "".join(f"{'vs ' + SHORT[k]:>11}" for k in BASELINES)
          + (f"{'peak GiB':>10}" if gpu else ""))
    rows = []
    for name, seconds in median.items():
        speedup = {k: median[k] / seconds if k in median else None for k in BASELINES}
        shown = "".join(f"{f'{speedup[k]:.2f}x' if speedup[k] else '-':>11}" for k in BASELINES)
        peak = extra[name]["peak_gib"]
        print(f"{name:<18}{seconds:>9.3f}{n / seconds:>11.2f}{extra[name]['token_efficiency']:>9.2f}{shown}"
              + (f"{peak:>10.1f}" if gpu else ""))
        rows.append({"variant": name, "seconds_median": seconds, "seconds_all": times[name], "per_second": n / seconds,
                     **extra[name], **{f"speedup_vs_{SHORT[k]}": v for k, v in speedup.items()}})
    counts = {k: len(v) for k, v in outputs.items()}
    ours = np.asarray(outputs[OURS], np.float64)
    diffs = {k: float(np.abs(ours - np.asarray(v, np.float64)).max()) for k, v in outputs.items() if k != OURS}
    exact = [k for k in (A, PADDED) if k in diffs]  # batch invariance, and packing equal to padding
    ok = len(set(counts.values())) == 1 and counts[OURS] == n and (not strict or all(diffs[k] == 0 for k in exact))
    print(f"results per variant: {counts}; max |ours - other|: "
          + ", ".join(f"{k}: {d:.3g}" for k, d in diffs.items())
          + (f"  [{'OK' if ok else 'FAIL'}: ours == (a) == padded bit for bit]" if strict
             else f"  [{'OK' if ok else 'FAIL'}: counts]"))
    return {"title": title, "unit": unit, "n": n, "rows": rows, "counts": counts, "max_abs_diff_vs_ours": diffs, "ok": ok}


SHORT = {PADDED: "padded", PLAIN: "plain", A: "(a)", B: "(b)"}


# ---------------------------------------------------------------- machine and main

def machine(args: argparse.Namespace, path: Path, models: Models) -> dict[str, Any]:
    import torch
    import transformers

    import vlsearch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    model, *_ = next(iter(models.cache.values()))
    config = model.model.config.text_config
    device = model.device
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "vlsearch": vlsearch.__version__,
        "device": device, "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu,
        "dtype": str(model.dtype).removeprefix("torch."), "size": args.size,
        "checkpoint": {"path": str(path), "parameters": model.model.num_parameters(), "hidden_size": config.hidden_size,
                       "layers": config.num_hidden_layers,
                       "weights_bytes": sum(p.stat().st_size for p in path.glob("*.safetensors"))},
    }


def profile(model: Any, encoded: list[Any], head: Callable[[Any], Any], path: Path | None) -> str:
    """Operator table (self time, top 25) of one forward pass of ``ours`` over ``encoded``: what limits it."""
    import torch
    from torch.profiler import ProfilerActivity

    cuda = model.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    model.run_encoded(encoded, head)  # warm
    sync()
    with torch.profiler.profile(activities=activities) as prof:
        model.run_encoded(encoded, head)
        sync()
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=25)
    if path:
        path.write_text(table)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["tiny", "2b-shallow", "2b"], default=None, help="checkpoint shapes (default tiny; 2b with --gpu-suite)")
    parser.add_argument("--checkpoint", type=Path, help="reuse this checkpoint directory (built there when empty)")
    parser.add_argument("--device", default=None, help="default: cuda when available (cuda with --gpu-suite), else cpu")
    parser.add_argument("--dtype", default=None, help="auto, float32, bfloat16 (default auto; bfloat16 with --gpu-suite)")
    parser.add_argument("--items", type=int, default=None, help="embedder items (default 150; 64 images with --gpu-suite)")
    parser.add_argument("--documents", type=int, default=None, help="reranker documents (default 60; 100 with --gpu-suite)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant after one warm-up (median reported)")
    parser.add_argument("--stages", default="e2e,model", help="e2e (files to vectors), model (inputs encoded beforehand)")
    parser.add_argument("--gpu-suite", action="store_true", help="the issue's GPU numbers: ~1,280-token images and top-100 reranking")
    parser.add_argument("--profile", type=Path, help="write an operator profile of one batch of ours (model stage) here")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    suite = args.gpu_suite
    args.size = args.size or ("2b" if suite else "tiny")
    args.device = args.device or ("cuda" if suite else None)
    args.dtype = args.dtype or ("bfloat16" if suite else "auto")
    n_items = args.items or (64 if suite else 150)
    n_docs = args.documents or (100 if suite else 60)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]

    from vlsearch import Embedder, Reranker
    from vlsearch.items import as_items
    from vlsearch.models.embedder import _unit_rows
    from vlsearch.testing import build_checkpoint

    with tempfile.TemporaryDirectory(prefix="vlsearch-bench-") as tmp:
        tmp = Path(tmp)
        path = args.checkpoint or tmp / f"ckpt-{args.size}"
        if not (path / "config.json").exists():
            print(f"building a random {args.size} checkpoint in {path} ...", flush=True)
            build_checkpoint(path, size=args.size, seed=0, tie_word_embeddings=True,  # the 2B models tie
                             dtype="bfloat16" if args.dtype == "bfloat16" else "float32")
        media = tmp / "media"
        media.mkdir()
        if suite:  # 1120 x 1120 -> (1120 / 32)^2 = 1225 vision tokens per image
            items = [{"image": save(media, 1120, 1120, i)} for i in range(n_items)]
            docs = mixed_documents(n_docs, media, size=(1120, 1120))
        else:
            items, docs = mixed_items(n_items, media), mixed_documents(n_docs, media)
        query = {"text": "a chart of quarterly revenue in the annual report"}
        models = Models(path, args.device, args.dtype)

        results, info = {}, None
        for cls, unit, n in ((Embedder, "items", n_items), (Reranker, "pairs", n_docs)):
            first = models.get(cls, {}, {})
            if info is None:
                info = machine(args, path, models)
                print(json.dumps(info, indent=1))
            strict = info["dtype"] == "float32"  # exact: ours must equal one per forward and the padded path
            if cls is Embedder:
                name, end_to_end = "Embedder.embed", lambda m: m.embed(items, progress=False)
                encoded = list(first._pool.map(first.encode_item, as_items(items)))
                head, model_only = _unit_rows, lambda m: m.embed_encoded(encoded)
            else:
                name, end_to_end = "Reranker.score (1 query vs N documents)", lambda m: m.score(query, docs, progress=False)
                encoded = list(first._pool.map(lambda thunk: thunk(), first.encode_pairs(query, docs, eager=False)))
                head, model_only = first._head, lambda m: m.score_encoded(encoded)
            key = "embed" if cls is Embedder else "score"
            if "e2e" in stages:
                measured = measure(end_to_end, models, cls, n, suite, args.repeats)
                results[key] = report(name, unit, n, *measured, strict)
            if "model" in stages:
                measured = measure(model_only, models, cls, n, suite, args.repeats)
                results[key + "_model"] = report(name + ", model only (inputs encoded beforehand)", unit, n,
                                                 *measured, strict)
            if args.profile and cls is Embedder:
                print("\n" + profile(models.get(cls, {}, {}), encoded, head, args.profile))
            models.cache.clear()  # free this model before loading the next
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
