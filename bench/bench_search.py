#!/usr/bin/env python
"""Search latency as a user meets it: p50/p95 of each (path x workload) cell, as ratios to the
in-process command line (the path every search took before the resident server).

Paths:
  CLI in-process   `vlsearch search ... --no-server`, timed as a whole process (imports, model loading)
  CLI via server   `vlsearch search ...` against a `vlsearch serve --detach` server, as a whole process
  HTTP             POST /v1/collections/{name}/search to the same server, from this process
Workloads:
  dense            `--no-rerank --mode dense`
  rerank cold      the top 50 PDF pages reranked, the cache of rebuilt pages emptied before each run
  rerank warm      the same search again: pages come from the cache

The collection is generated: PDF pages with words on them, pictures, and short texts, indexed
once (the time is printed). Example (CPU, tiny random checkpoints):
    python bench/bench_search.py --items 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlsearch.testing import build_checkpoint, gradient_image  # noqa: E402

WORDS = ("revenue quarter invoice contract shipment policy budget forecast audit salary payment "
         "warranty delivery tariff pension mortgage dividend inventory license insurance").split()
QUERY = "quarterly revenue and budget forecast"
PATHS = ("CLI in-process", "CLI via server", "HTTP")
WORKLOADS = ("dense", "rerank cold", "rerank warm")


def phrase(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n))


def write_corpus(root: Path, pages: int, images: int, texts: int, pages_per_pdf: int = 50) -> None:
    """PDFs of pages with text drawn on them (Pillow), PNG pictures, and one-chunk text files."""
    for d in ("pdf", "img", "txt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for start in range(0, pages, pages_per_pdf):
        sheets = []
        for i in range(start, min(pages, start + pages_per_pdf)):
            page = gradient_image(850, 1100, seed=i)
            draw = ImageDraw.Draw(page)
            for line in range(12):
                draw.text((60, 80 + 70 * line), phrase(i + line, 6), fill=(0, 0, 0))
            sheets.append(page)
        sheets[0].save(root / "pdf" / f"doc{start // pages_per_pdf:04d}.pdf", save_all=True,
                       append_images=sheets[1:], resolution=100)
    for i in range(images):
        gradient_image(320 + i % 200, 240 + i % 150, seed=10_000 + i).save(root / "img" / f"pic{i:05d}.png")
    for i in range(texts):
        (root / "txt" / f"note{i:05d}.txt").write_text(phrase(i, 12 + i % 20) + ".\n", encoding="utf-8")


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) < 2:
        return seconds[0], seconds[0]
    q = statistics.quantiles(seconds, n=20, method="inclusive")
    return statistics.median(seconds), q[18]


class Bench:
    def __init__(self, home: Path, embedder: str, reranker: str, repeats: int, rerank_pixels: int | None) -> None:
        self.home, self.repeats = home, repeats
        self.env = {**os.environ, "VLSEARCH_HOME": str(home), "VLSEARCH_EMBEDDER": embedder,
                    "VLSEARCH_RERANKER": reranker}
        self.env.pop("VLSEARCH_SERVER", None)
        self.pixels = ["--rerank-pixels", str(rerank_pixels)] if rerank_pixels else []
        self.state: dict = {}

    def cli(self, workload: str, server: bool) -> None:
        options = (["--no-rerank", "--mode", "dense"] if workload == "dense"
                   else ["--mode", "dense", "--where", "modality = 'pdf_page'", "--candidates", "50"])
        local = [] if server else ["--no-server", *self.pixels]  # the server has its own pixel budget
        command = [sys.executable, "-m", "vlsearch", "search", QUERY, "-c", "bench", "--json", *options, *local]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"search failed: {done.stderr[-2000:]}")
        if ("the server at" in done.stderr) != server:
            raise SystemExit(f"the search took the wrong path: {done.stderr[-500:]}")

    def http(self, workload: str) -> None:
        body = {"query": QUERY, "mode": "dense", "top_k": 10, "thumbnails": False}
        body.update({"rerank": False} if workload == "dense"
                    else {"rerank": True, "candidates": 50, "where": "modality = 'pdf_page'"})
        request = urllib.request.Request(f"{self.state['url']}/v1/collections/bench/search",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.state['key']}"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            json.loads(answer.read())

    def run(self, path: str, workload: str) -> list[float]:
        call = {"CLI in-process": lambda: self.cli(workload, server=False),
                "CLI via server": lambda: self.cli(workload, server=True),
                "HTTP": lambda: self.http(workload)}[path]
        seconds = []
        if workload != "rerank cold":
            call()  # untimed: the warm workloads start warm
        for _ in range(self.repeats):
            if workload == "rerank cold":
                shutil.rmtree(self.home / "cache" / "items", ignore_errors=True)
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
        return seconds

    def serve(self) -> None:
        command = [sys.executable, "-m", "vlsearch", "serve", "--detach", "--port", str(self.port()), *self.pixels]
        subprocess.run(command, env=self.env, check=True)
        self.state = json.loads((self.home / "server.json").read_text())

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "vlsearch", "serve", "--stop"], env=self.env, check=False)

    @staticmethod
    def port() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000, help="items in the collection (1/5 pages, 1/5 pictures)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per cell")
    ap.add_argument("--rerank-pixels", type=int, default=None, help="reranker pixel budget (default: official)")
    ap.add_argument("--checkpoint", default=None, help="embedding model (default: a tiny random one)")
    ap.add_argument("--reranker", default=None, help="reranking model (default: a tiny random one)")
    ap.add_argument("--workdir", default=None, help="kept: corpus and collection are reused when present")
    args = ap.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_search_"))
    embedder = args.checkpoint or str(build_checkpoint(root / "tiny-embedder", seed=0, tie_word_embeddings=True))
    reranker = args.reranker or str(build_checkpoint(root / "tiny-reranker", seed=1, tie_word_embeddings=False))
    home, corpus = root / "home", root / "corpus"
    bench = Bench(home, embedder, reranker, args.repeats, args.rerank_pixels)
    pages = images = args.items // 5
    if not (home / "collections" / "bench").exists():
        write_corpus(corpus, pages, images, args.items - pages - images)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vlsearch", "index", str(corpus), "-c", "bench", "--no-server",
                        "--ocr", "never"], env=bench.env, check=True, stdout=subprocess.DEVNULL)
        print(f"indexed {args.items} items in {time.perf_counter() - started:.0f} s", flush=True)
    cells: dict[tuple[str, str], list[float]] = {}
    bench.serve()
    try:
        for workload in WORKLOADS:
            for path in PATHS:
                cells[(path, workload)] = bench.run(path, workload)
                p50, p95 = percentiles(cells[(path, workload)])
                print(f"  {path:15} {workload:12} p50 {p50:7.3f} s  p95 {p95:7.3f} s", flush=True)
    finally:
        bench.stop()
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"models {'given' if args.checkpoint else 'tiny random'}; {args.items} items; {args.repeats} runs per cell; "
          f"reranker pixels {args.rerank_pixels or 'default (1,843,200)'}")
    print(f"{'path':16}" + "".join(f"{w + ' p50/p95 s':>24}{'ratio':>7}" for w in WORKLOADS))
    for path in PATHS:
        line = f"{path:16}"
        for workload in WORKLOADS:
            p50, p95 = percentiles(cells[(path, workload)])
            base = percentiles(cells[("CLI in-process", workload)])[0]
            line += f"{p50:>14.3f} / {p95:<7.3f}{base / p50:>6.1f}x"
        print(line)
    print("ratio: the in-process command line's p50 over this path's (higher is faster)")


if __name__ == "__main__":
    main()
