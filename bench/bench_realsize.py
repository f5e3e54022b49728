#!/usr/bin/env python
"""The real 2B pair on a CPU: memory, indexing speed and search latency, per precision mode.

Random weights with the real Qwen3-VL-Embedding-2B and Qwen3-VL-Reranker-2B shapes (speed and
memory do not depend on the values), built once into ``--checkpoint DIR`` (bfloat16 files, as the
published checkpoints are; ~4.3 GB each) and reused. For each mode (``--modes``, float32 first
column: the release before) it starts ``vlsearch serve`` with both models and reports:

- peak RSS of the server process (``VmHWM``), and its RSS after loading;
- ``vlsearch index`` through that server: PDF pages/min and images/min at the default pixel budget;
- ``vlsearch search`` with the defaults through the server (a collection of ~50 short notes,
  a mostly-text page and a picture): the whole command as a user runs it, and the server's own split
  (query embed, ANN, rerank) with how many of the candidates were reranked;
- "before": float32 reranking all 50 candidates at the official pixel budget, extrapolated as 50
  times float32's time to index a page (the reranker has the embedder's shapes; a run would take
  tens of minutes); float32 serves the embedder alone when less than ``--float32-gb`` is free (the
  reranker's memory is then measured alone);
- fidelity against float32 (``vlsearch.testing.fidelity``): embedding cosine, top-10 overlap on a
  synthetic retrieval, largest |delta| of rerank scores.

Example (2 cores: about 25 minutes):
    python bench/bench_realsize.py --checkpoint /tmp/vl2b-pair --json /tmp/realsize.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlsearch.testing import build_checkpoint, fidelity, gradient_image, retrieval_items  # noqa: E402

KEY = "bench-realsize-key-0123456789"
# words the random checkpoints' small tokenizer knows: ~2.8 characters a token (English with Qwen's
# own tokenizer: ~4), so texts cost about what real ones do
WORDS = ("query document page chart video image text answer candidates relevant search system user dog beach cat "
         + " ".join(f"w{i}" for i in range(0, 400, 7))).split()
QUERY = "a chart of w14 w21 on the beach page"


def phrase(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n))


def text_pdf(path: Path, pages: list[str]) -> None:
    """A PDF of A4 pages, each with a picture and a real text layer (pypdfium2's page objects)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument.new()
    for i, text in enumerate(pages):
        page = document.new_page(595, 842)
        picture = pdfium.PdfImage.new(document)
        picture.set_bitmap(pdfium.PdfBitmap.from_pil(gradient_image(400, 300, seed=i)))
        picture.set_matrix(pdfium.PdfMatrix().scale(400, 300).translate(100, 80))
        page.insert_obj(picture)
        for line, start in enumerate(range(0, len(text), 90)):
            obj = raw.FPDFPageObj_NewTextObj(document.raw, b"Helvetica", ctypes.c_float(10))
            encoded = (text[start:start + 90] + "\x00").encode("utf-16-le")
            raw.FPDFText_SetText(obj, (ctypes.c_ushort * (len(encoded) // 2)).from_buffer_copy(encoded))
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 40, 800 - 14 * line)
            raw.FPDFPage_InsertObject(page.raw, obj)
        assert raw.FPDFPage_GenerateContent(page.raw)
        page.close()
    document.save(str(path))
    document.close()


def write_corpus(root: Path, pages: int, images: int, notes: int) -> dict[str, Path]:
    """pages/: mostly-text pages and picture pages alternating; images/: 1024x768 pictures; search/:
    the collection searched (notes, and pages and pictures of their own)."""
    folders = {name: root / name for name in ("pages", "images", "search")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    texts = [phrase(i, 400 if i % 2 == 0 else 6) for i in range(pages)]  # ~3,000 characters, or a caption
    text_pdf(folders["pages"] / "report.pdf", texts)
    text_pdf(folders["search"] / "annual.pdf", [phrase(50, 400)])
    for i in range(images):
        gradient_image(1024, 768, seed=100 + i).save(folders["images"] / f"pic{i}.png")
    gradient_image(1024, 768, seed=200).save(folders["search"] / "pic.png")
    for i in range(notes):
        (folders["search"] / f"note{i:03}.txt").write_text(phrase(i, 10 + i % 30) + ".\n", encoding="utf-8")
    return folders


def port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict[str, float]:
    """Peak and current RSS of a process, in GB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"peak_gb": int(fields["VmHWM"].split()[0]) / 1e6, "rss_gb": int(fields["VmRSS"].split()[0]) / 1e6}


def available_gb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(fields["MemAvailable"].split()[0]) / 1e6


class Server:
    """``vlsearch serve`` with both models in one precision, on a loopback port."""

    def __init__(self, home: Path, embedder: Path, reranker: Path, dtype: str, reranking: bool, corpus: Path,
                 device: str | None) -> None:
        self.url = f"http://127.0.0.1:{port()}"
        self.env = {**os.environ, "VLSEARCH_HOME": str(home), "VLSEARCH_API_KEY": KEY, "VLSEARCH_SERVER": self.url}
        self.env.pop("VLSEARCH_DTYPE", None)
        command = [sys.executable, "-m", "vlsearch", "serve", "--model", str(embedder), "--reranker", str(reranker),
                   "--dtype", dtype, "--port", self.url.rsplit(":", 1)[1], "--api-key", KEY,
                   "--collections-root", str(corpus), *(["--device", device] if device else []),
                   *([] if reranking else ["--no-reranker"])]
        started = time.perf_counter()
        home.mkdir(parents=True, exist_ok=True)
        self.log = open(home / f"serve-{dtype}.log", "ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=self.log)
        while not self.healthy():
            if self.process.poll() is not None:
                raise SystemExit(f"serve ({dtype}) exited with {self.process.returncode}; see {self.log.name}")
            time.sleep(0.5)
        self.load_s = time.perf_counter() - started
        self.loaded = memory(self.process.pid)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False

    def cli(self, *args: str) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vlsearch", *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0 or "in-process" in done.stderr:
            raise SystemExit(f"vlsearch {' '.join(args)} failed: {done.stderr[-2000:]}")
        return time.perf_counter() - started, done.stderr

    def search(self, **body) -> dict:
        request = urllib.request.Request(
            f"{self.url}/v1/collections/search/search", method="POST",
            data=json.dumps({"query": QUERY, "thumbnails": False, **body}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=3600) as answer:
            data = json.loads(answer.read())
        data["wall"] = time.perf_counter() - started
        return data

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_mode(dtype: str, home: Path, ckpt: Path, corpus: dict[str, Path], args: argparse.Namespace) -> dict:
    reranking = dtype != "float32" or available_gb() > args.float32_gb
    server = Server(home, ckpt / "embedder", ckpt / "reranker", dtype, reranking, corpus["search"].parent, args.device)
    out: dict = {"load_s": server.load_s, "loaded_rss_gb": server.loaded["rss_gb"], "reranker": reranking}
    print(f"[{dtype}] both models loaded in {server.load_s:.0f} s, RSS {server.loaded['rss_gb']:.2f} GB"
          + ("" if reranking else f" (embedder only: under {args.float32_gb} GB free)"), flush=True)
    try:
        for kind, count in (("pages", args.pages), ("images", args.images)):
            seconds, _ = server.cli("index", str(corpus[kind]), "-c", f"{kind}-{dtype}", "-q")
            out[f"{kind}_per_min"] = 60 * count / seconds
            print(f"[{dtype}] indexed {count} {kind} in {seconds:.0f} s: {out[f'{kind}_per_min']:.2f}/min", flush=True)
        if not (home / "collections" / "search").exists():
            seconds, _ = server.cli("index", str(corpus["search"]), "-c", "search", "-q")
            print(f"[{dtype}] built the searched collection in {seconds:.0f} s", flush=True)
        if reranking:
            server.search()  # untimed: the reranker's weights are read in on their first use
            seconds, said = server.cli("search", QUERY, "-c", "search", "--json")
            out["cli_search_s"] = seconds
            print(f"[{dtype}] vlsearch search (defaults, via the server): {seconds:.1f} s; {said.strip()}", flush=True)
        answers = [server.search(**({} if reranking else {"rerank": False})) for _ in range(args.searches)]
        out["search"] = {stage: float(np.median([a["timings"][stage] for a in answers]))
                         for stage in ("embed", "search", "rerank")}
        out["search"]["wall"] = float(np.median([a["wall"] for a in answers]))
        out["search"]["reranked"] = int(np.median([sum(r["reranked"] for r in a["results"]) for a in answers]))
        print(f"[{dtype}] search via HTTP: {out['search']}", flush=True)
        out.update(memory(server.process.pid))
        print(f"[{dtype}] peak RSS {out['peak_gb']:.2f} GB", flush=True)
    finally:
        server.stop()
    return out


def fidelity_at_full_size(ckpt: Path, modes: list[str], device: str | None) -> dict:
    """Each mode against float32, one model in memory at a time (and the memory the float32
    reranker takes)."""
    from vlsearch.models.embedder import Embedder
    from vlsearch.models.reranker import Reranker

    items = retrieval_items(queries=4, documents=16)
    query, docs = {"text": QUERY}, [{"text": phrase(i, 12)} for i in range(5)] + [{"image": gradient_image(320, 240)}]
    vectors, scores, out = {}, {}, {}
    for mode in ["float32", *[m for m in modes if m != "float32"]]:
        model = Embedder(ckpt / "embedder", dtype=mode, device=device)
        vectors[mode] = model.embed(items)
        del model
        before = memory(os.getpid())["rss_gb"]
        model = Reranker(ckpt / "reranker", dtype=mode, device=device)
        scores[mode] = np.array(model.score(query, docs))
        if mode == "float32":
            out["float32_reranker_gb"] = memory(os.getpid())["rss_gb"] - before
        del model

    for mode in vectors:
        if mode != "float32":
            out[mode] = {**fidelity(vectors["float32"], vectors[mode], queries=4),
                         "rerank_max_abs_delta": float(np.abs(scores[mode] - scores["float32"]).max())}
            print(f"[fidelity] {mode} vs float32: {out[mode]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="directory with embedder/ and reranker/ (built if absent)")
    ap.add_argument("--modes", default="float32,bfloat16,int8",
                    help="precisions, the baseline first (default: all; int8 runs on a CPU only)")
    ap.add_argument("--pages", type=int, default=1, help="PDF pages indexed per mode (default 1)")
    ap.add_argument("--images", type=int, default=1, help="images indexed per mode (default 1)")
    ap.add_argument("--notes", type=int, default=50, help="short texts in the searched collection (default 50)")
    ap.add_argument("--searches", type=int, default=3, help="timed HTTP searches per mode (default 3)")
    ap.add_argument("--float32-gb", type=float, default=22.0,
                    help="float32 serves the reranker too only with this much memory free (default 22)")
    ap.add_argument("--size", default="2b", help="of the checkpoint built when absent (tiny: a quick check of this script)")
    ap.add_argument("--device", help="cuda, cpu ... (default: the server's: the first GPU if any)")
    ap.add_argument("--no-fidelity", action="store_true")
    ap.add_argument("--workdir", help="corpus and collections (default: a temporary directory)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    ckpt = Path(args.checkpoint)
    for role, seed in (("embedder", 0), ("reranker", 1)):
        if not (ckpt / role / "config.json").exists():
            started = time.perf_counter()
            build_checkpoint(ckpt / role, size=args.size, seed=seed, tie_word_embeddings=True, dtype="bfloat16")
            print(f"built the 2B-shaped {role} in {time.perf_counter() - started:.0f} s", flush=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_realsize_"))
    corpus = write_corpus(work / "corpus", args.pages, args.images, args.notes)
    modes = args.modes.split(",")
    load = os.getloadavg()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_before": load}, "modes": {}}
    for mode in sorted(modes, key=lambda m: m == "float32"):  # the searched collection is built by a faster mode
        results["modes"][mode] = run_mode(mode, work / "home", ckpt, corpus, args)
    if not args.no_fidelity:
        results["fidelity"] = fidelity_at_full_size(ckpt, modes, args.device)
    results["machine"]["load_after"] = os.getloadavg()
    report(results, modes)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict, modes: list[str]) -> None:
    base = results["modes"][modes[0]]
    print(f"\nload average before/after: {results['machine']['load_before'][0]:.1f} / "
          f"{results['machine']['load_after'][0]:.1f} on {results['machine']['cores']} cores")
    print(f"{'':34}" + "".join(f"{m:>18}" for m in modes))
    rows = [("peak RSS, serve with both (GB)", "peak_gb", False), ("RSS after loading (GB)", "loaded_rss_gb", False),
            ("load time (s)", "load_s", False), ("index PDF pages/min", "pages_per_min", True),
            ("index images/min", "images_per_min", True), ("vlsearch search, whole command (s)", "cli_search_s", False)]
    for label, key, faster in rows:
        cells = []
        for m in modes:
            value, ref = results["modes"][m].get(key), base.get(key)
            ratio = "" if value is None or not ref or m == modes[0] else \
                f" {value / ref if faster else ref / value:4.1f}x"
            cells.append("-" if value is None else f"{value:.2f}{ratio}")
        print(f"{label:34}" + "".join(f"{c:>18}" for c in cells))
    for stage in ("embed", "search", "rerank", "wall", "reranked"):
        cells = [str(round(results["modes"][m].get("search", {}).get(stage, float("nan")), 2)) for m in modes]
        print(f"{'search via HTTP: ' + stage:34}" + "".join(f"{c:>18}" for c in cells))
    fidelity = results.get("fidelity", {})
    if "pages_per_min" in base and "search" in base:  # the reranker has the embedder's shapes: a pair costs a page
        before = base["search"]["embed"] + base["search"]["search"] + 50 * 60 / base["pages_per_min"]
        print(f"before: float32, 50 pages reranked at the official budget (no time limit): ~{before:.0f} s "
              f"(50 x the float32 time of indexing a page)")
    if not base.get("reranker") and "float32_reranker_gb" in fidelity:
        print(f"float32 serve held the embedder only ({base['peak_gb']:.2f} GB peak); with the reranker "
              f"(+{fidelity['float32_reranker_gb']:.2f} GB measured alone): ~{base['peak_gb'] + fidelity['float32_reranker_gb']:.1f} GB")
    for mode, figures in fidelity.items():
        if isinstance(figures, dict):
            print(f"fidelity {mode}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
