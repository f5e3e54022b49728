#!/usr/bin/env python
"""Ingestion throughput and memory: PDF pages/s and video seconds/s, and the main process's peak RSS.

Each variant indexes the same corpus into a fresh collection, in a process of its own (so that
its peak RSS is its own), after one untimed warm-up run in that process:
  in-process   - workers=0: decode, then embed, one after the other
  overlapped   - workers=N: worker processes render and decode while the model embeds
  count window - overlapped, with what is held ahead bounded by item counts alone (the window of
                 vlsearch 0.1: 4 x max_batch_size encoded inputs, 64 decoded pieces)
Peak RSS is the process's high-water mark (VmHWM) less its RSS once the model is loaded.

Example (CPU, tiny random checkpoint):
    python bench/bench_ingest.py --pages 120 --video-seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlsearch.collection import Collection  # noqa: E402
from vlsearch.ingest import ExtractOptions  # noqa: E402
from vlsearch.testing import build_checkpoint, gradient_image, write_video  # noqa: E402


def write_pdf(path: Path, pages: int) -> Path:
    """A PDF of picture pages (Pillow), each page different."""
    images = [gradient_image(850, 1100, seed=i) for i in range(pages)]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=100)
    return path


def rss_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of this process, in KiB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    """One variant in this process: warm up, then index; print seconds, items and memory as JSON."""
    from vlsearch import Embedder

    counted = args.variant == "count window"
    embedder = Embedder(args.model, device=args.device, **({"prefetch_bytes": None} if counted else {}))
    model_seconds = [0.0]
    embed = embedder.embed

    def timed_embed(*a: object, **k: object) -> object:  # the time the model path takes, of the whole run
        started = time.perf_counter()
        try:
            return embed(*a, **k)
        finally:
            model_seconds[0] += time.perf_counter() - started

    embedder.embed = timed_embed  # type: ignore[method-assign]
    options = ExtractOptions(segment_seconds=10.0, max_pixels=args.max_pixels)
    workers = 0 if args.variant == "in-process" else args.workers  # None: the library's default
    home = Path(args.work)

    def index(name: str) -> tuple[float, int]:
        collection = Collection(str(home / name), model=args.model, loaded_embedder=embedder)
        started = time.perf_counter()
        report = collection.add([args.corpus], workers=workers, options=options, progress=False,
                                **({"batch_bytes": None} if counted else {}))
        assert not report.failed, report.summary()
        return time.perf_counter() - started, report.items

    index("warm")
    loaded, model_seconds[0] = rss_kib("VmRSS"), 0.0
    seconds, items = index("timed")
    print(json.dumps({"seconds": seconds, "items": items, "peak_mib": (rss_kib("VmHWM") - loaded) / 1024,
                      "loaded_mib": loaded / 1024, "model_share": model_seconds[0] / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="model directory (default: a tiny random checkpoint)")
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--video-seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: from the cores)")
    parser.add_argument("--max-pixels", type=int, default=1843200, help="pixel budget of a rendered page")
    parser.add_argument("--device")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("variant", "model", "corpus", "work"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="vlsearch-bench-ingest-"))
    model = args.checkpoint or str(build_checkpoint(work / "tiny"))
    rows = {}
    for kind in ("pdf", "video"):
        corpus = work / f"corpus-{kind}"
        corpus.mkdir()
        if kind == "pdf":
            write_pdf(corpus / "doc.pdf", args.pages)
            amount, unit = args.pages, "pages/s"
        else:
            write_video(corpus / "clip.mp4", frames=args.video_seconds * 24, fps=24, size=(640, 360))
            amount, unit = args.video_seconds, "video s/s"
        for variant in ("in-process", "overlapped", "count window"):
            command = [sys.executable, __file__, "--child", "--variant", variant, "--model", model,
                       "--corpus", str(corpus), "--work", str(work / f"{kind}-{variant.replace(' ', '-')}"),
                       *(["--workers", str(args.workers)] if args.workers is not None else []),
                       "--max-pixels", str(args.max_pixels),
                       *(["--device", args.device] if args.device else [])]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows[(kind, variant)] = {**row, "rate": amount / row["seconds"], "unit": unit}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"model {model if args.checkpoint else 'tiny random'}, page budget {args.max_pixels} px, "
          f"{args.workers if args.workers is not None else 'default'} workers")
    print(f"{'corpus':8} {'variant':13} {'seconds':>8} {'items':>6} {'rate':>9}  {'unit':11} {'vs in-proc':>10} "
          f"{'peak RSS MiB':>13} {'model share':>12}  bound by")
    for (kind, variant), row in rows.items():
        ratio = rows[(kind, "in-process")]["seconds"] / row["seconds"]
        bound = "model" if row["model_share"] >= 0.8 else "decoding"
        print(f"{kind:8} {variant:13} {row['seconds']:8.2f} {row['items']:6d} {row['rate']:9.2f}  {row['unit']:11} "
              f"{ratio:9.2f}x {row['peak_mib']:13.0f} {row['model_share']:11.0%}  {bound}")
    print("model share: the part of the run spent in Embedder.embed; with decoding in worker processes, a run "
          "whose model share is near 100% is bound by the model, one far below it by decoding")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k}/{v}": r for (k, v), r in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
