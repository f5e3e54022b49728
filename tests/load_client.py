"""Load generator for the server tests and bench: sequential and concurrent rounds of embedding requests.

Runs in its own process (its own GIL), so the client's work does not compete with the server's.
Prints one JSON object: ``{"rounds": [{"mode", "seconds", "latencies", "errors"}, ...]}``.

Example:
    python tests/load_client.py http://127.0.0.1:8000 --clients 16 --sequential 100 --per-client 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORDS = "query document page chart video image text search retrieve relevant candidates answer".split()


def payload(i: int, kind: str, image: str | None) -> bytes:
    text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(12 + i % 5))
    if kind == "image" and image:
        body: dict[str, Any] = {"input": [[{"type": "image_url", "image_url": {"url": image}},
                                           {"type": "text", "text": text}]]}
    else:
        body = {"input": text}
    return json.dumps(body).encode()


def client(url: str, key: str | None) -> Any:
    import httpx

    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, transport=transport, headers=headers, timeout=120)


def run_requests(url: str, key: str | None, first: int, count: int, kind: str, image: str | None) -> tuple[list, int]:
    latencies, errors = [], 0
    with client(url, key) as http:
        for i in range(first, first + count):
            started = time.perf_counter()
            response = http.post("/v1/embeddings", content=payload(i, kind, image),
                                 headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
    return latencies, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--sequential", type=int, default=100, help="requests per sequential round")
    p.add_argument("--per-client", type=int, default=20, help="requests per client per concurrent round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--kind", choices=["text", "image"], default="text")
    p.add_argument("--image", help="data URI of the image for --kind image")
    p.add_argument("--key", help="API key")
    args = p.parse_args(argv)
    run_requests(args.url, args.key, 0, args.warmup, args.kind, args.image)
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda k: run_requests(args.url, args.key, k * 5, 5, args.kind, args.image),
                      range(args.clients)))
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            latencies, errors = run_requests(args.url, args.key, 0, args.sequential, args.kind, args.image)
            rounds.append({"mode": "sequential", "seconds": time.perf_counter() - started, "latencies": latencies,
                           "errors": errors})
            started = time.perf_counter()
            parts = list(pool.map(lambda k: run_requests(args.url, args.key, k * args.per_client, args.per_client,
                                                         args.kind, args.image), range(args.clients)))
            rounds.append({"mode": "concurrent", "seconds": time.perf_counter() - started,
                           "latencies": [x for lat, _ in parts for x in lat], "errors": sum(e for _, e in parts)})
    json.dump({"rounds": rounds}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
