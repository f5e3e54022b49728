#!/usr/bin/env python
"""Ingestion throughput: PDF pages/s and video seconds/s, decoding in-process vs in worker processes.

Both variants index the same corpus into fresh collections with the same loaded model:
  in-process  - workers=0: decode, then embed, one after the other
  overlapped  - workers=N: worker processes render and decode while the model embeds

Example (CPU, tiny random checkpoint):
    python bench/bench_ingest.py --pages 120 --video-seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def run(corpus: Path, home: Path, name: str, model: str, workers: int, options: ExtractOptions,
        embedder) -> tuple[float, int]:
    collection = Collection(str(home / name), model=model, loaded_embedder=embedder)  # one model for all variants
    started = time.perf_counter()
    report = collection.add([corpus], workers=workers, options=options, progress=False)
    seconds = time.perf_counter() - started
    assert not report.failed, report.summary()
    return seconds, report.items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="model directory (default: a tiny random checkpoint)")
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--video-seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-pixels", type=int, default=1843200, help="pixel budget of a rendered page")
    parser.add_argument("--device")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlsearch-bench-ingest-"))
    model = args.checkpoint or str(build_checkpoint(work / "tiny"))
    from vlsearch import Embedder

    embedder = Embedder(model, device=args.device)
    options = ExtractOptions(segment_seconds=10.0, max_pixels=args.max_pixels)
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
        run(corpus, work / "warm", f"warm-{kind}", model, args.workers, options, embedder)  # warm-up
        for variant, workers in (("in-process", 0), ("overlapped", args.workers)):
            seconds, items = run(corpus, work / "runs", f"{kind}-{variant}", model, workers, options, embedder)
            rows[(kind, variant)] = {"seconds": seconds, "items": items, "rate": amount / seconds, "unit": unit}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"device {embedder.device}, model {model if args.checkpoint else 'tiny random'}, "
          f"page budget {args.max_pixels} px, {args.workers} workers")
    print(f"{'corpus':8} {'variant':12} {'seconds':>8} {'items':>6} {'rate':>10}  unit        vs in-process")
    for (kind, variant), row in rows.items():
        ratio = rows[(kind, "in-process")]["seconds"] / row["seconds"]
        print(f"{kind:8} {variant:12} {row['seconds']:8.2f} {row['items']:6d} {row['rate']:10.2f}  "
              f"{row['unit']:11} {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k}/{v}": r for (k, v), r in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
