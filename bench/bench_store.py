"""Vector store benchmark: ANN vs exact search latency and recall@10, store only (no model).

For each size, synthetic clustered vectors (Gaussian centroids + noise, L2-normalised)
are written to a fresh LanceStore in chunks, the ANN index is built with ``optimize()``,
and the same queries run three ways in the same run:

* ANN       – LanceStore.search(exact=False), the production path above ``ann_threshold``
* exact     – LanceStore.search(exact=True), LanceDB brute force
* numpy     – one matrix-vector product over the data held in memory (the baseline)

Latencies are single queries, warm cache (one untimed pass over the queries first).

recall@10 = |ANN top-10 ∩ numpy top-10| / 10, averaged over queries.

Example:
    python bench/bench_store.py --dim 2048 --sizes 100000 --queries 200
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vlsearch.locator import Locator
from vlsearch.stores.base import Record
from vlsearch.stores.lancedb import LanceStore


def machine() -> str:
    """CPU model, core count and RAM of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {ram:.1f} GiB RAM, {platform.system()} {platform.release()}"


class Clustered:
    """Deterministic clustered unit vectors: point = centroid + noise, normalised.

    Centroids are Gaussian in a random ``rank``-dimensional subspace (real embeddings
    have a low intrinsic dimension), so clusters overlap and a query's neighbours spread
    over several IVF partitions; with centroids drawn in all ``dim`` dimensions they would
    be orthogonal and any index would look perfect. ``noise`` is the norm of the
    isotropic noise relative to the unit centroid (0.8: cos(point, centroid) ~ 0.78).
    """

    def __init__(self, dim: int, centroids: int, noise: float = 0.8, seed: int = 0, rank: int = 12) -> None:
        self.dim, self.noise, self.seed = dim, noise, seed
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.standard_normal((dim, min(rank, dim))))[0].T.astype(np.float32)  # (rank, dim)
        c = rng.standard_normal((centroids, basis.shape[0]), dtype=np.float32) @ basis
        self.centroids = c / np.linalg.norm(c, axis=1, keepdims=True)

    def chunk(self, start: int, n: int, stream: int = 1) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, start])
        x = self.centroids[rng.integers(0, len(self.centroids), n)]
        x = x + rng.standard_normal((n, self.dim), dtype=np.float32) * (self.noise / np.sqrt(self.dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def record(i: int, vector: np.ndarray) -> Record:
    """Item ``i`` as a collection holds one: 100 items per file, pages and pictures, text and
    metadata that vary. (Columns holding one value in every row, as a constant placeholder would,
    are read slowly by LanceDB 0.40: ~2.5 ms more per search per such column at 1M rows.)"""
    source = f"/data/file{i // 100}.pdf"
    page = Locator("pdf_page", page=i % 100 + 1) if i % 3 else Locator("image")
    return Record(id=f"v{i}", source=source, content_hash=hashlib.sha256(source.encode()).hexdigest(), locator=page,
                  text=f"item {i} of {source} revenue {i % 997}", metadata={"words": i % 50}, vector=vector)


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def run_size(n: int, args: argparse.Namespace, root: Path) -> dict[str, float]:
    gen = Clustered(args.dim, args.centroids, args.noise, args.seed, args.rank)
    kept = args.keep and (root / f"data_{n}.npy").exists() and (root / f"store_{n}").exists()
    data = np.lib.format.open_memmap(root / f"data_{n}.npy", mode="r" if kept else "w+", dtype=np.float32,
                                     shape=(n, args.dim))
    store = LanceStore(root / f"store_{n}", dim=args.dim, ann_threshold=min(n, 50_000),
                       index_type=args.index_type, nprobes=args.nprobes, refine_factor=args.refine_factor)
    write_s = build_s = 0.0
    if not kept:
        t0 = time.perf_counter()
        for s in range(0, n, args.chunk):
            x = gen.chunk(s, min(args.chunk, n - s))
            data[s:s + len(x)] = x
            store.add([record(s + i, v) for i, v in enumerate(x)])
        data.flush()
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.optimize()
        build_s = time.perf_counter() - t0
    print(f"  n={n}: wrote in {write_s:.0f}s, index built in {build_s:.0f}s" + (" (kept from before)" if kept else ""),
          flush=True)

    queries = gen.chunk(0, args.queries, stream=2)
    # ground truth: numpy brute force in blocks (cosine = dot product of unit vectors)
    truth = np.empty((len(queries), 10), dtype=np.int64)
    best = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    for s in range(0, n, args.chunk):
        sims = queries @ data[s:s + args.chunk].T  # (nq, chunk)
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        cand_s = np.concatenate([best, np.take_along_axis(sims, top, 1)], 1)
        cand_i = np.concatenate([truth, top + s], 1)
        order = np.argsort(-cand_s, axis=1)[:, :10]
        best, truth = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)

    def timed(fn, qs) -> tuple[list[float], list]:
        ms, out = [], []
        for q in qs:
            t = time.perf_counter()
            out.append(fn(q))
            ms.append((time.perf_counter() - t) * 1000)
        return ms, out

    def ids(hits) -> set[int]:
        return {int(h.record.id[1:]) for h in hits}

    for q in queries:  # one untimed pass: latencies below are warm-cache
        store.search(q, 10, exact=False)
    results: dict[str, float] = {"n": n, "build_s": build_s, "write_s": write_s}
    grid = [(p, r) for p in (2, 4, 6, 8, 12, 20, 30) for r in (0, 5, 10, 20)] if args.sweep else []
    sweep = [(args.nprobes, args.refine_factor), *grid]
    for nprobes, refine in sweep:
        store.nprobes, store.refine_factor = nprobes, refine
        ms, hits = timed(lambda q: store.search(q, 10, exact=False), queries)
        recall = float(np.mean([len(ids(h) & set(t.tolist())) / 10 for h, t in zip(hits, truth)]))
        p50, p95 = percentiles(ms)
        if nprobes is None and refine is None:
            results.update(ann_p50=p50, ann_p95=p95, recall=recall)
            print(f"  default params {store._search_params(10)}: recall@10={recall:.3f} p50={p50:.1f}ms", flush=True)
        else:
            print(f"  sweep nprobes={nprobes} refine={refine}: recall@10={recall:.3f} p50={p50:.1f} p95={p95:.1f} ms",
                  flush=True)
    store.nprobes, store.refine_factor = args.nprobes, args.refine_factor

    nq_exact = min(len(queries), args.exact_queries)
    ms, hits = timed(lambda q: store.search(q, 10, exact=True), queries[:nq_exact])
    results["exact_p50"], results["exact_p95"] = percentiles(ms)
    results["exact_recall"] = float(np.mean([len(ids(h) & set(t.tolist())) / 10 for h, t in zip(hits, truth)]))

    def numpy_top10(q: np.ndarray) -> np.ndarray:
        sims = data @ q
        top = np.argpartition(-sims, 10)[:10]
        return top[np.argsort(-sims[top])]

    np.asarray(data[: args.chunk]).sum()  # page the data in before timing
    ms, _ = timed(numpy_top10, queries[:nq_exact])
    results["numpy_p50"], results["numpy_p95"] = percentiles(ms)
    results["speedup"] = results["numpy_p50"] / results["ann_p50"]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    ap.add_argument("--queries", type=int, default=200, help="queries for ANN latency and recall")
    ap.add_argument("--exact-queries", type=int, default=50, help="queries timed on the exact paths")
    ap.add_argument("--centroids", type=int, default=4000)
    ap.add_argument("--noise", type=float, default=0.8)
    ap.add_argument("--rank", type=int, default=12, help="dimension of the subspace holding the centroids")
    ap.add_argument("--chunk", type=int, default=20_000, help="rows per write")
    ap.add_argument("--index-type", default="IVF_SQ", choices=["IVF_SQ", "IVF_RQ", "IVF_HNSW_SQ"])
    ap.add_argument("--nprobes", type=int, default=None, help="None: the store's tuned default")
    ap.add_argument("--refine-factor", type=int, default=None, help="None: the store's tuned default")
    ap.add_argument("--sweep", action="store_true", help="also print recall/latency over a parameter grid")
    ap.add_argument("--workdir", default=None, help="where stores go (default: a temp dir, removed after)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="with --workdir: keep the stores, and reuse kept ones")
    args = ap.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_store_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"dim={args.dim} index={args.index_type} queries={args.queries} (exact paths: {args.exact_queries}) "
          f"centroids={args.centroids} (rank {args.rank}) noise={args.noise} workdir={root}", flush=True)
    rows = []
    try:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            rows.append(run_size(n, args, root))
            if not args.keep:
                shutil.rmtree(root / f"store_{n}", ignore_errors=True)
                (root / f"data_{n}.npy").unlink(missing_ok=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    head = (f"{'n':>9} {'write s':>8} {'build s':>8} {'ANN p50/p95 ms':>16} {'exact-lance p50/p95 ms':>23} "
            f"{'numpy p50/p95 ms':>17} {'recall@10':>9} {'numpy/ANN':>9}")
    print(head)
    for r in rows:
        print(f"{r['n']:>9} {r['write_s']:>8.0f} {r['build_s']:>8.0f} {r['ann_p50']:>7.1f}/{r['ann_p95']:<8.1f} "
              f"{r['exact_p50']:>11.1f}/{r['exact_p95']:<11.1f} {r['numpy_p50']:>8.1f}/{r['numpy_p95']:<8.1f} "
              f"{r['recall']:>9.3f} {r['speedup']:>8.1f}x")
    print("(exact-lance recall vs numpy: " + ", ".join(f"{r['exact_recall']:.3f}" for r in rows) + ")")


if __name__ == "__main__":
    main()
