#!/usr/bin/env python
"""Batch invariance in numbers, with the batch-invariant mode on and off, on the same loaded weights.

  deviation  max |v_alone - v_in_batch| over mixed items (texts, images, tall pages): each item
             embedded in a call of its own, then all of them in one call
  top-10     synthetic retrieval: queries and a corpus of texts embedded twice, in batches of
             different composition (the given order under the default token budget, then a
             shuffled order in batches of at most 8); the share of queries whose top-10 ids
             (exact cosine search) differ between the two

On a CPU in float32 the mode is exact by construction (0 and 0%); in bfloat16 on a GPU the
numbers say what the mode buys and ``bench_models.py`` what it costs.

Example (CPU, tiny random checkpoint, ~1 minute on 2 cores):
    python bench/bench_invariance.py --items 24 --queries 100 --corpus 300
GPU (bench/gpu_suite.sh runs this):
    python bench/bench_invariance.py --checkpoint /tmp/vl2b --dtype bfloat16 --json /tmp/invariance.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench_models import WORDS, mixed_items


def deviation(model, items: list[dict]) -> float:
    alone = np.concatenate([model.embed([item], progress=False) for item in items])
    together = model.embed(items, progress=False)
    return float(np.abs(alone.astype(np.float64) - together).max())


def top10_change_rate(model, queries: list[str], corpus: list[str], seed: int = 0) -> float:
    def embed_twice(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        first = model.embed(texts, progress=False)
        order = np.random.default_rng(seed).permutation(len(texts))
        batch_tokens, max_batch_size = model.batch_tokens, model.max_batch_size
        model.max_batch_size = 8
        try:
            shuffled = model.embed([texts[i] for i in order], progress=False)
        finally:
            model.batch_tokens, model.max_batch_size = batch_tokens, max_batch_size
        second = np.empty_like(shuffled)
        second[order] = shuffled
        return first, second

    (q1, q2), (c1, c2) = embed_twice(queries), embed_twice(corpus)
    top1 = np.argsort(-(q1 @ c1.T), axis=1, kind="stable")[:, :10]
    top2 = np.argsort(-(q2 @ c2.T), axis=1, kind="stable")[:, :10]
    return float(np.mean([set(a) != set(b) for a, b in zip(top1, top2)]))


def sentences(n: int, seed: int, low: int, high: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(low, high)))) for _ in range(n)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="model directory (default: a tiny random checkpoint)")
    p.add_argument("--device")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--items", type=int, default=64, help="mixed items for the deviation")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--corpus", type=int, default=3000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from vlsearch import Embedder
    from vlsearch.testing import build_checkpoint

    with tempfile.TemporaryDirectory(prefix="vlsearch-bench-") as tmp:
        path = args.checkpoint or build_checkpoint(Path(tmp) / "tiny", size="tiny", tie_word_embeddings=True)
        media = Path(tmp) / "media"
        media.mkdir()
        items = mixed_items(args.items, media, video_every=0)
        queries, corpus = sentences(args.queries, 1, 3, 12), sentences(args.corpus, 2, 8, 120)
        model = Embedder(path, device=args.device, dtype=args.dtype)
        rows = []
        for invariant in (True, False):
            model.batch_invariant = invariant
            rows.append({"batch_invariant": invariant, "max_deviation": deviation(model, items),
                         "top10_change_rate": top10_change_rate(model, queries, corpus)})
    dtype = str(next(model.model.parameters()).dtype).replace("torch.", "")
    print(f"{model.device} {dtype}: {args.items} mixed items; top-10 of {args.queries} queries over {args.corpus} texts")
    print(f"{'batch_invariant':>16}{'max |alone - batch|':>22}{'top-10 changed':>16}")
    for r in rows:
        print(f"{str(r['batch_invariant']):>16}{r['max_deviation']:>22.3g}{r['top10_change_rate']:>15.1%}")
    if args.json:
        args.json.write_text(json.dumps({"device": model.device, "dtype": dtype, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
