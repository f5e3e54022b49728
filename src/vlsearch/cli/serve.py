"""``vlsearch serve``: the HTTP server (needs ``pip install 'vlsearch[server]'``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_USAGE, command, model_arguments
from .resident import IDENTITY_ENV

MiB = 1024 * 1024


def register(commands: argparse._SubParsersAction) -> None:
    p = command(
        commands, "serve", help="run the HTTP server (OpenAI embeddings, Cohere/Jina rerank, collections)",
        description="Serve /v1/embeddings (OpenAI), /v1/rerank (Cohere/Jina), /v1/collections, /health and "
                    "/metrics. The models load once at start-up; concurrent requests share model batches.")
    server_arguments(p, port=8000)
    g = p.add_argument_group("watching (pip install 'vlsearch[watch]')")
    g.add_argument("--watch", action="append", default=[], metavar="PATH",
                   help="keep this folder indexed (repeatable): a first incremental pass, then its changes; the "
                        "state shows in /v1/collections/NAME and on the web page")
    g.add_argument("--watch-collection", default="default", metavar="NAME",
                   help="the collection watched folders go into (default: default)")
    g.add_argument("--watch-debounce", type=float, default=2.0, metavar="S",
                   help="seconds a file must be left alone before it is indexed (default 2)")
    g = p.add_argument_group("resident server (search, index and eval use it)")
    g.add_argument("--detach", action="store_true",
                   help="run in the background on loopback with a fresh API key, registered for this $VLSEARCH_HOME "
                        "(server.json, readable by you only; --collections-root defaults to your home directory)")
    g.add_argument("--status", action="store_true", help="say whether the registered server runs")
    g.add_argument("--stop", action="store_true", help="stop the registered server")
    p.set_defaults(run=run)


def server_arguments(p: argparse.ArgumentParser, port: int) -> None:
    """The options of a server (``serve`` and ``mcp``): bind, models, keys, roots, batching, clients, limits."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs a key)")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    model_arguments(p)
    p.add_argument("--no-reranker", action="store_true", help="load no reranker (/v1/rerank answers 503)")
    p.add_argument("--rerank-pixels", type=int, metavar="N",
                   help="the most pixels of a page or image as the reranker sees it (default 1843200, the official "
                        "reranker's); fewer rerank faster")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accepted API key, repeatable (env VLSEARCH_API_KEY, comma-separated)")
    p.add_argument("--collections-root", action="append", default=[], metavar="DIR",
                   help="directory whose files ingestion jobs may read by path (repeatable)")
    p.add_argument("--allow-url-host", action="append", default=[], metavar="HOST",
                   help="host whose http(s) URLs inputs may name (repeatable; '*' for any public host). "
                        "Default: URL inputs are refused")
    p.add_argument("--data-dir", metavar="DIR", help="where uploads are kept (default $VLSEARCH_HOME/server)")
    p.add_argument("--served-model-name", help="embedding model name shown by the API")
    p.add_argument("--served-reranker-name", help="reranker name shown by the API")
    g = p.add_argument_group("batching")
    g.add_argument("--batch-wait-ms", type=float, default=5.0, help="wait for requests being prepared (default 5)")
    g.add_argument("--max-batch-items", type=int, default=64, help="inputs merged per model call (default 64)")
    g.add_argument("--max-queue-items", type=int, default=4096, help="waiting inputs before 503 (default 4096)")
    g.add_argument("--encode-workers", type=int, help="threads decoding requests (default: CPUs, at most 8)")
    g.add_argument("--ingest-workers", type=int,
                   help="decoding processes of ingestion jobs (default: from the cores, as index)")
    g.add_argument("--torch-threads", type=int, metavar="N",
                   help="torch intra-op threads (default: torch's own; on a small CPU-only machine, 1 leaves the "
                        "other cores to request decoding and avoids thread contention)")
    g = p.add_argument_group("clients")
    g.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="Host header value served besides loopback names (repeatable; a name or name:port). "
                        "Without an API key only these are answered, which stops DNS-rebinding web pages")
    g.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                   help="seconds a client has to send its request headers, and the longest pause while it "
                        "sends a body; slower clients are disconnected (default 30)")
    g.add_argument("--max-connections", type=int, default=256, metavar="N",
                   help="connections served at once; beyond, requests get 503 (default 256)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-body-mb", type=float, default=64, help="largest JSON body (default 64 MiB)")
    g.add_argument("--max-upload-mb", type=float, default=2048, help="largest upload (default 2048 MiB)")
    g.add_argument("--max-items", type=int, default=256, help="inputs per embeddings request (default 256)")
    g.add_argument("--max-documents", type=int, default=1000, help="documents per rerank request (default 1000)")
    g.add_argument("--max-media-mb", type=float, default=32, help="largest inline or fetched media (default 32 MiB)")
    g.add_argument("--max-image-pixels", type=int, default=64_000_000, help="largest source image (default 64e6)")
    g.add_argument("--max-video-seconds", type=float, default=3600, help="longest video (default 3600)")
    g.add_argument("--max-video-frames", type=int, default=216_000, help="most frames in a video (default 216000)")
    g.add_argument("--fetch-timeout", type=float, default=20.0, help="URL fetch timeout in seconds (default 20)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def api_keys(args: argparse.Namespace) -> tuple[str, ...]:
    """Keys from --api-key and $VLSEARCH_API_KEY (comma-separated)."""
    env = [k.strip() for k in os.environ.get("VLSEARCH_API_KEY", "").split(",") if k.strip()]
    return tuple(dict.fromkeys([*(k.strip() for k in args.api_key if k.strip()), *env]))


def server_config(args: argparse.Namespace, binds: bool = True) -> Any:
    """The ``ServerConfig`` of the options, or an exit status after printing why not: a public bind
    without an API key (when the server ``binds`` a port), a ``--collections-root`` that is no directory."""
    from ..server.config import ServerConfig, is_loopback

    keys = api_keys(args)
    if binds and not is_loopback(args.host) and not keys:
        print(f"vlsearch: error: refusing to bind {args.host} without an API key: anyone who can reach it could "
              "use the models and read the collections. Give --api-key KEY (or $VLSEARCH_API_KEY), or bind "
              "127.0.0.1", file=sys.stderr)
        return EXIT_USAGE
    for option, folders in (("--collections-root", args.collections_root), ("--watch", getattr(args, "watch", []))):
        for root in folders:
            if not Path(root).expanduser().is_dir():
                print(f"vlsearch: error: {option} {root}: not a directory", file=sys.stderr)
                return EXIT_USAGE
    if args.torch_threads:
        import torch

        torch.set_num_threads(max(1, args.torch_threads))
    return ServerConfig(
        model=args.model, reranker=args.reranker, no_reranker=args.no_reranker, adapter=args.adapter,
        reranker_adapter=args.reranker_adapter, rerank_pixels=args.rerank_pixels, device=args.device,
        dtype=args.dtype, host=args.host, port=args.port, api_keys=keys,
        collections_roots=tuple(Path(r).expanduser() for r in args.collections_root),
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        allow_url_hosts=tuple(args.allow_url_host), fetch_timeout=args.fetch_timeout,
        batch_wait_ms=args.batch_wait_ms, max_batch_items=args.max_batch_items,
        max_queue_items=args.max_queue_items, encode_workers=args.encode_workers,
        max_body_bytes=int(args.max_body_mb * MiB), max_upload_bytes=int(args.max_upload_mb * MiB),
        max_items=args.max_items, max_documents=args.max_documents, max_media_bytes=int(args.max_media_mb * MiB),
        max_image_pixels=args.max_image_pixels, max_video_seconds=args.max_video_seconds,
        max_video_frames=args.max_video_frames, ingest_workers=args.ingest_workers,
        served_model_name=args.served_model_name, served_reranker_name=args.served_reranker_name,
        allowed_hosts=tuple(args.allow_host), read_timeout=args.read_timeout, max_connections=args.max_connections,
        identity_secret=os.environ.get(IDENTITY_ENV), **_watch_options(args))


def _watch_options(args: argparse.Namespace) -> dict[str, Any]:
    """``serve``'s watch options (``mcp`` has none)."""
    if not getattr(args, "watch", None):
        return {}
    from ..catalog import check_name

    check_name(args.watch_collection)
    return {"watch_paths": tuple(Path(p).expanduser().resolve() for p in args.watch),
            "watch_collection": args.watch_collection, "watch_debounce": args.watch_debounce}


def run(args: argparse.Namespace) -> int:
    from . import resident

    if args.status:
        return resident.status()
    if args.stop:
        return resident.stop()
    if args.detach:
        resident.check_loopback(args.host)
        argv = [a for a in args.argv[1:] if a != "--detach"]
        if not args.collections_root:
            argv += ["--collections-root", str(Path.home())]
        return resident.detach(argv, args.host, args.port)
    config = server_config(args)
    if isinstance(config, int):
        return config
    from ..server import create_app

    try:
        import uvicorn
    except ImportError as exc:
        from ..errors import MissingExtraError

        raise MissingExtraError("uvicorn", "server") from exc
    from ..server.serving import uvicorn_config

    app = create_app(config)
    print(f"vlsearch: serving on http://{netloc(args.host)}:{args.port} "
          f"(API key {'required' if config.api_keys else 'not required'})", file=sys.stderr)
    uvicorn.Server(uvicorn_config(app, config, host=args.host, port=args.port, log_level=args.log_level)).run()
    return 0


def netloc(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
