#!/usr/bin/env python
"""HTTP server throughput: N concurrent clients against sequential requests, in the same run.

The server (``vlsearch.server``, micro-batching on) runs in this process on a loopback port;
the load generator (``tests/load_client.py``) runs in another process, with its own GIL.
Rounds alternate sequential and concurrent, so drift hits both alike; the table shows
requests/s, the ratio, p50/p99 latency, and how many requests each model batch merged. With the
server in this process, the same inputs are then embedded by the library in one call
(``Embedder.embed``, its own batching): "vs lib" is the concurrent rate over that rate, the share
of in-process batched throughput that HTTP and micro-batching keep.

Example (CPU, tiny random checkpoint, about 1 minute on 2 cores):
    python bench/bench_server.py
A real checkpoint on a GPU, or a running server:
    python bench/bench_server.py --checkpoint Qwen/Qwen3-VL-Embedding-2B --device cuda
    python bench/bench_server.py --url http://127.0.0.1:8000 --key KEY
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
LOAD_CLIENT = Path(__file__).resolve().parents[1] / "tests" / "load_client.py"
sys.path.insert(0, str(LOAD_CLIENT.parent))  # its payload words, for the in-process baseline


def image_uri() -> str:
    from vlsearch.testing import gradient_image

    buf = io.BytesIO()
    gradient_image(128, 96, seed=2).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def start_server(args: argparse.Namespace, checkpoint: str) -> tuple[Any, Any, str]:
    import uvicorn

    from vlsearch.server import ServerConfig, create_app

    config = ServerConfig(model=checkpoint, no_reranker=True, device=args.device, dtype=args.dtype,
                          home=Path(tempfile.mkdtemp(prefix="bench-server-")), batch_wait_ms=args.batch_wait_ms,
                          max_batch_items=args.max_batch_items)
    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so accepted sockets get NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def batches(url: str, key: str | None) -> tuple[float, float]:
    """(requests, batches) of the embed batcher so far, from /metrics."""
    import httpx

    headers = {"authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(url + "/metrics", headers=headers, timeout=30).text
    values = {}
    for line in text.splitlines():
        for name in ("vlsearch_batch_requests_sum", "vlsearch_batch_requests_count"):
            if line.startswith(name + '{model="embed"}'):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values.get("vlsearch_batch_requests_sum", 0.0), values.get("vlsearch_batch_requests_count", 0.0)


def library_rate(embedder: Any, kind: str, n: int) -> float:
    """Items/s of ``Embedder.embed`` on the inputs the load client sends (median of 3 calls)."""
    from load_client import WORDS

    from vlsearch.testing import gradient_image

    image = gradient_image(128, 96, seed=2)
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(12 + i % 5)) for i in range(n)]
    items = [{"image": image, "text": t} if kind == "image" else t for t in texts]
    embedder.embed(items[: min(n, 16)], progress=False)  # warm
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        embedder.embed(items, progress=False)
        seconds.append(time.perf_counter() - start)
    return n / statistics.median(seconds)


def measure(args: argparse.Namespace, url: str, kind: str) -> dict[str, Any]:
    command = [sys.executable, str(LOAD_CLIENT), url, "--clients", str(args.clients), "--sequential",
               str(args.sequential), "--per-client", str(args.per_client), "--rounds", str(args.rounds),
               "--kind", kind]
    if kind == "image":
        command += ["--image", image_uri()]
    if args.key:
        command += ["--key", args.key]
    requests_before, batches_before = batches(url, args.key)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    requests_after, batches_after = batches(url, args.key)
    rounds = json.loads(done.stdout)["rounds"]
    pairs = list(zip(rounds[::2], rounds[1::2]))
    rates = [(len(s["latencies"]) / s["seconds"], len(c["latencies"]) / c["seconds"]) for s, c in pairs]
    seq = [x for s, _ in pairs for x in s["latencies"]]
    conc = [x for _, c in pairs for x in c["latencies"]]
    q = lambda values, p: statistics.quantiles(values, n=100)[p - 1] * 1000  # noqa: E731
    seq_requests = args.rounds * args.sequential  # each a batch of its own
    merged = (requests_after - requests_before - seq_requests) / max(batches_after - batches_before - seq_requests, 1)
    return {"kind": kind, "seq_rps": statistics.median(s for s, _ in rates),
            "conc_rps": statistics.median(c for _, c in rates), "ratio": statistics.median(c / s for s, c in rates),
            "seq_p50": q(seq, 50), "seq_p99": q(seq, 99), "conc_p50": q(conc, 50), "conc_p99": q(conc, 99),
            "requests_per_batch": merged, "errors": sum(r["errors"] for r in rounds)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="model directory or hub id (default: a tiny random checkpoint)")
    p.add_argument("--size", choices=["tiny", "2b"], default="tiny", help="random checkpoint to build")
    p.add_argument("--device")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--url", help="measure a running server instead of starting one")
    p.add_argument("--key", help="API key of --url")
    p.add_argument("--kinds", default="text,image", help="request kinds: text, image (comma-separated)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sequential", type=int, default=200, help="requests per sequential round")
    p.add_argument("--per-client", type=int, default=25, help="requests per client per concurrent round")
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch-items", type=int, default=64)
    p.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads of the server (0: torch's)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    server = thread = None
    url = args.url
    if url is None:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from vlsearch.testing import build_checkpoint

            checkpoint = str(build_checkpoint(Path(tempfile.mkdtemp()) / f"{args.size}-embedder", size=args.size,
                                              tie_word_embeddings=True))
        server, thread, url = start_server(args, checkpoint)
    try:
        results = [measure(args, url, kind.strip()) for kind in args.kinds.split(",") if kind.strip()]
        if server is not None:
            embedder = server.config.app.state.models.embedder
            for r in results:
                r["lib_rps"] = library_rate(embedder, r["kind"], args.clients * args.per_client)
                r["vs_lib"] = r["conc_rps"] / r["lib_rps"]
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(timeout=30)
    machine = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
               "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "torch_threads": torch.get_num_threads()}
    print(f"{machine}\n{args.clients} clients vs sequential, median of {args.rounds} rounds")
    print(f"{'kind':6} {'seq req/s':>10} {'conc req/s':>11} {'ratio':>6} {'seq p50/p99 ms':>16} "
          f"{'conc p50/p99 ms':>17} {'req/batch':>10} {'errors':>7} {'lib items/s':>12} {'vs lib':>7}")
    for r in results:
        print(f"{r['kind']:6} {r['seq_rps']:10.0f} {r['conc_rps']:11.0f} {r['ratio']:5.2f}x "
              f"{r['seq_p50']:7.1f} / {r['seq_p99']:6.1f} {r['conc_p50']:8.1f} / {r['conc_p99']:6.1f} "
              f"{r['requests_per_batch']:10.1f} {r['errors']:7d} {r.get('lib_rps', float('nan')):12.0f} "
              f"{r.get('vs_lib', float('nan')):6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
