"""``vlsearch index``: add folders and files to a collection."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import Forbidden, ModelError, ServerUnreachable
from .common import (EXIT_OK, EXIT_PARTIAL, command, is_name, model_arguments, model_options, resident_arguments,
                     shown)
from .resident import Resident, find


def register(commands: argparse._SubParsersAction) -> None:
    p = command(commands, "index", help="index files, folders, buckets and archives (incremental)",
                            description="Index PDFs (one item per page), Office documents (pages, through LibreOffice), "
                                        "images, videos (segments), text files (chunks) and the members of zip and "
                                        "tar archives, from folders or buckets (s3://, gs://, az://; credentials from "
                                        "the cloud's own chain). Only new or changed files are embedded.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files or folders (searched recursively), or bucket URIs: s3://bucket/prefix, gs://, az://")
    collection_arguments(p)
    p.add_argument("--prune", action="store_true", help="drop items of files that no longer exist under PATH")
    p.add_argument("--retry-failed", action="store_true", help="try again files that failed before, unchanged")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and embed on a Ray cluster (pip install 'vlsearch[ray]'): ADDRESS (auto, "
                        "ray://host:10001) joins one; without it a local cluster runs in this process")
    extract_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    model_arguments(p, reranker=False)
    resident_arguments(p)
    p.set_defaults(run=run)


def collection_arguments(p: argparse.ArgumentParser) -> None:
    """The collection to index into and what it records (``index`` and ``watch``)."""
    p.add_argument("--collection", "-c", default="default", help="collection name or directory (default: default)")
    p.add_argument("--store", metavar="URI",
                   help="keep the records in Milvus: a Milvus Lite file (PATH.db) or milvus://host:19530[/collection]; "
                        "recorded with the collection (default: LanceDB in the collection directory)")
    p.add_argument("--dim", type=int, help="Matryoshka dimension to store (default: the model's full size)")
    p.add_argument("--instruction", help="query instruction recorded with the collection")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only paths matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip paths matching (repeatable)")
    p.add_argument("--workers", type=int,
                   help="decoding processes (0: in-process; default: half the cores when the model runs on the "
                        "CPU, else all but one)")


def extract_arguments(p: argparse.ArgumentParser) -> None:
    """How files are cut into items (``index`` and ``watch``)."""
    p.add_argument("--segment-seconds", type=float, help="video segment length (default 30)")
    p.add_argument("--chunk-chars", type=int, help="text chunk size in characters (default 1500)")
    p.add_argument("--max-pages", type=int, help="refuse PDFs with more pages (default 10000)")
    p.add_argument("--ocr", choices=["never", "auto", "always"],
                   help="read text from pixels: auto (default) reads PDF pages without a text layer and images, "
                        "always every PDF page too; recorded with the collection")
    p.add_argument("--ocr-engine", choices=["rapidocr", "tesseract"], help="OCR engine (default: tesseract when installed, else rapidocr)")
    p.add_argument("--ocr-lang", metavar="LANG", help="OCR language (tesseract: deu, fra ...)")
    p.add_argument("--ocr-video", action="store_true", help="also read one frame of each video segment")
    p.add_argument("--office-timeout", type=float, metavar="S",
                   help="seconds LibreOffice may take to convert one Office document (default 120)")


#: options a server's ingestion job does not take: with any of them the command works in-process
LOCAL_OPTIONS = ("store", "dim", "instruction", "segment_seconds", "chunk_chars", "max_pages", "ocr", "ocr_engine",
                 "ocr_lang", "ocr_video", "office_timeout", "ray", "model", "device", "adapter")


def run(args: argparse.Namespace) -> int:
    from ..ingest.sources import is_local  # buckets and archive members are read in-process

    if (not args.no_server and is_name(args.collection) and all(is_local(p) for p in args.paths)
            and not any(getattr(args, o) for o in LOCAL_OPTIONS)):
        server = find(args.server)
        if server is not None:
            status = _index_on_server(server, args)
            if status is not None:
                return status
    collection, options = open_collection(args)
    report = collection.add(args.paths, include=args.include, exclude=args.exclude, prune=args.prune,
                            workers=args.workers, options=options, progress=False if args.quiet else None,
                            retry_failed=args.retry_failed, engine="local" if args.ray is None else "ray",
                            ray_address=args.ray or None)
    if not args.quiet:
        print(report.summary(shown), file=sys.stderr)
    return EXIT_PARTIAL if report.failed else EXIT_OK


def open_collection(args: argparse.Namespace) -> tuple[Any, Any]:
    """The collection of the options, and the extraction options to index with."""
    from ..collection import Collection

    collection = Collection(args.collection, model=args.model, dim=args.dim, instruction=args.instruction,
                            model_options=model_options(args), store=args.store, adapter=args.adapter)
    options = collection.extract_options()
    if args.segment_seconds:
        options = replace(options, segment_seconds=args.segment_seconds)
    if args.chunk_chars:
        options = replace(options, chunk_chars=args.chunk_chars, chunk_overlap=min(200, args.chunk_chars // 5))
    if args.max_pages:
        options = replace(options, max_pages=args.max_pages)
    ocr = {k: v for k, v in (("ocr", args.ocr), ("ocr_engine", args.ocr_engine), ("ocr_lang", args.ocr_lang),
                             ("ocr_video", args.ocr_video or None)) if v is not None}
    if ocr:
        options = replace(options, **ocr)
    if args.office_timeout:
        options = replace(options, office_timeout=args.office_timeout)
    return collection, options


def _index_on_server(server: Resident, args: argparse.Namespace) -> int | None:
    """Index as a job of the server (its models stay loaded); None when it cannot (the caller goes
    in-process): the server is not there, or may not read these paths."""
    from ..models.remote import ApiClient

    client = ApiClient(server.url, server.key, timeout=60)
    body = {"paths": [str(Path(p).expanduser().resolve()) for p in args.paths], "include": args.include,
            "exclude": args.exclude, "prune": args.prune, "retry_failed": args.retry_failed}
    try:
        job = client.call(f"collections/{args.collection}/ingest", body)
    except ServerUnreachable as exc:
        print(shown(f"vlsearch: {exc}; indexing in-process"), file=sys.stderr)
        return None
    except Forbidden as exc:
        print(shown(f"vlsearch: the server at {server.url} may not read these paths ({exc}); indexing in-process"),
              file=sys.stderr)
        return None
    while job.get("status") not in ("done", "failed"):
        time.sleep(0.2)
        job = client.call(f"jobs/{job.get('job_id') or job['id']}")
    if job["status"] == "failed":
        raise ModelError(f"the server's ingestion job failed: {job.get('error')}")
    report = job["report"]
    if not args.quiet:
        print(shown(report["summary"], lines=True), file=sys.stderr)
        print(f"vlsearch: indexed by the server at {server.url}", file=sys.stderr)
    return EXIT_PARTIAL if report["failed"] else EXIT_OK
