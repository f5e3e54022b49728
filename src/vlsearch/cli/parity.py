"""``vlsearch parity``: do a served model's vectors and scores equal the local checkpoint's?

Embeds a built-in probe set (texts, generated images, a short generated video, mixed items,
with and without an instruction) with the local checkpoint and with the server, and compares
them probe by probe (cosine, largest absolute difference); with a reranker, compares the
relevance scores too. Exit status 0 when every probe is within the tolerances, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..models.precision import DTYPES
from .common import EXIT_ERROR, EXIT_OK, command


def register(commands: argparse._SubParsersAction) -> None:
    p = command(
        commands, "parity", help="compare a model server with the local checkpoint",
        description="Embed (and rerank) a built-in probe set locally and on a model server (vlsearch, "
                    "vLLM ...) and report the deviation per probe. Exit status 1 when a probe deviates.")
    p.add_argument("--model", required=True, help="local embedding checkpoint (hub id or directory)")
    p.add_argument("--remote", required=True, metavar="URL", help="server serving the same embedding model")
    p.add_argument("--reranker", help="local reranking checkpoint (with --remote-reranker)")
    p.add_argument("--remote-reranker", metavar="URL", help="server serving the same reranker")
    p.add_argument("--api-key", default=os.environ.get("VLSEARCH_API_KEY"),
                   help="bearer key for the server(s) (env VLSEARCH_API_KEY)")
    p.add_argument("--api", default="auto", choices=["auto", "vlsearch", "vllm", "openai"],
                   help="request shape (default auto: asks /v1/models)")
    p.add_argument("--remote-model-name", help="model name sent to the embedding server (default: its own)")
    p.add_argument("--probe-dir", type=Path, help="where the probe media are written (default: a temp dir)")
    p.add_argument("--no-video", action="store_true", help="leave the video probes out")
    p.add_argument("--threshold", type=float, default=0.9999, help="minimum cosine per probe (default 0.9999)")
    p.add_argument("--score-tolerance", type=float, default=1e-3,
                   help="largest allowed |local - remote| reranker score (default 1e-3)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--device", help="device of the local models (default: the first GPU if any)")
    p.add_argument("--dtype", default="auto", choices=DTYPES)
    p.set_defaults(run=run)


def probe_set(folder: Path, video: bool = True) -> list[tuple[str, Any]]:
    """Named probe items; images and a video are written into ``folder``."""
    from ..testing import gradient_image, write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height, seed) in {"photo": (320, 240, 1), "page": (300, 420, 2), "small": (64, 48, 3)}.items():
        gradient_image(width, height, seed=seed).save(folder / f"{name}.png")
    probes: list[tuple[str, Any]] = [
        ("text", "a dog running on the beach at sunset"),
        ("text-long", " ".join(["quarterly revenue grew in every region except the north"] * 12)),
        ("text+instruction", {"text": "what grew last quarter?", "instruction": "Retrieve relevant charts"}),
        ("image", {"image": str(folder / "photo.png")}),
        ("page", {"image": str(folder / "page.png")}),
        ("image+text", {"image": str(folder / "small.png"), "text": "a small picture with blocks"}),
        ("image+instruction", {"image": str(folder / "photo.png"), "instruction": "Find similar photos"}),
        ("two-images+text", {"image": [str(folder / "photo.png"), str(folder / "small.png")], "text": "two pictures"}),
    ]
    if video:
        clip = write_video(folder / "clip.mp4", frames=16, fps=8, size=(96, 64))
        probes += [("video", {"video": str(clip)}),
                   ("video+text", {"video": str(clip), "text": "a block moving to the right"})]
    return probes


def compare_embeddings(local: Any, remote: Any, probes: list[tuple[str, Any]], threshold: float) -> list[dict]:
    """Per probe: cosine and largest absolute difference of the unit vectors (or the remote error)."""
    expected = local.embed([item for _, item in probes])
    rows = []
    for (name, item), want in zip(probes, expected):
        row: dict[str, Any] = {"probe": name}
        try:
            got = remote.embed([item])[0]
        except Exception as exc:  # report per probe, keep going
            rows.append({**row, "ok": False, "error": str(exc)})
            continue
        if got.shape != want.shape:
            rows.append({**row, "ok": False, "error": f"dimension {got.shape[0]} != local {want.shape[0]}"})
            continue
        cosine = float(np.dot(want.astype(np.float64), got.astype(np.float64)))
        row.update(cosine=cosine, max_abs_diff=float(np.max(np.abs(want - got))), ok=cosine >= threshold)
        rows.append(row)
    return rows


def compare_scores(local: Any, remote: Any, probes: list[tuple[str, Any]], tolerance: float) -> list[dict]:
    """Reranker scores of probe documents against a text and a mixed query, local vs remote."""
    queries = [("text query", "a picture with coloured blocks"),
               ("mixed query", {"text": "pictures like this one", "image": dict(probes)["image"]["image"]})]
    docs = [(name, item) for name, item in probes if not (isinstance(item, dict) and "instruction" in item)]
    rows = []
    for query_name, query in queries:
        expected = local.score(query, [item for _, item in docs])
        try:
            got = remote.score(query, [item for _, item in docs])
        except Exception as exc:
            rows.append({"probe": f"{query_name} (all documents)", "ok": False, "error": str(exc)})
            continue
        for (name, _), want, have in zip(docs, expected, got):
            diff = abs(float(want) - float(have))
            rows.append({"probe": f"{query_name} / {name}", "local": float(want), "remote": float(have),
                         "abs_diff": diff, "ok": diff <= tolerance})
    return rows


def run(args: argparse.Namespace) -> int:
    from ..models.embedder import Embedder
    from ..models.remote import RemoteEmbedder, RemoteReranker

    if bool(args.reranker) != bool(args.remote_reranker):
        from ..errors import InputError

        raise InputError("--reranker and --remote-reranker go together")
    options = {"device": args.device, "dtype": args.dtype}
    with tempfile.TemporaryDirectory(prefix="vlsearch-parity-") as scratch:
        probes = probe_set(args.probe_dir or Path(scratch), video=not args.no_video)
        local = Embedder(args.model, **options)
        remote = RemoteEmbedder(args.remote, api_key=args.api_key, api=args.api, model=args.remote_model_name)
        report: dict[str, Any] = {"threshold": args.threshold, "score_tolerance": args.score_tolerance,
                                  "embeddings": compare_embeddings(local, remote, probes, args.threshold)}
        if args.reranker:
            from ..models.reranker import Reranker

            local_reranker = Reranker(args.reranker, **options)
            remote_reranker = RemoteReranker(args.remote_reranker, api_key=args.api_key, api=args.api)
            report["rerank"] = compare_scores(local_reranker, remote_reranker, probes, args.score_tolerance)
    rows = report["embeddings"] + report.get("rerank", [])
    report["ok"] = all(row["ok"] for row in rows)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print(report)
    return EXIT_OK if report["ok"] else EXIT_ERROR


def _print(report: dict[str, Any]) -> None:
    print(f"embeddings (pass: cosine >= {report['threshold']})")
    print(f"  {'probe':<22} {'cosine':>12} {'max |diff|':>12}")
    for row in report["embeddings"]:
        _line(row, f"{row.get('cosine', 0):>12.8f} {row.get('max_abs_diff', 0):>12.3g}")
    if "rerank" in report:
        print(f"reranker (pass: |diff| <= {report['score_tolerance']})")
        print(f"  {'probe':<34} {'local':>9} {'remote':>9} {'|diff|':>10}")
        for row in report["rerank"]:
            _line(row, f"{row.get('local', 0):>9.6f} {row.get('remote', 0):>9.6f} {row.get('abs_diff', 0):>10.3g}",
                  width=34)
    failed = sum(not row["ok"] for row in report["embeddings"] + report.get("rerank", []))
    print("parity: ok" if report["ok"] else f"parity: FAILED ({failed} probe(s) deviate)")


def _line(row: dict[str, Any], values: str, width: int = 22) -> None:
    mark = "" if row["ok"] else "  <- FAIL"
    if "error" in row:
        print(f"  {row['probe']:<{width}} error: {row['error']}{mark}")
    else:
        print(f"  {row['probe']:<{width}} {values}{mark}")
