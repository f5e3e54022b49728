"""Collection endpoints: list, describe, search, ingest (uploads or allowed paths), media and crops, jobs."""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
import unicodedata
import uuid
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..catalog import Catalog, check_name
from ..collection import Collection
from ..errors import InputError, StoreError, VlsearchError
from ..files import atomic_write, open_without_links, private_dir
from ..grounding import crop_box
from ..grounding import regions as find_regions
from ..ingest.extractors import picture
from ..ingest.sources import is_local, spool, under
from ..items import Item
from ..media.images import NamedFile, upright
from ..watch import Changes, apply_changes
from .config import ServerConfig, display_name
from .errors import APIError
from .inputs import SourceGuard, to_item
from .jobs import Job, JobManager
from .runtime import BatchedEmbedder, BatchedReranker, Models
from .schemas import IngestRequest, SearchRequest

_UNSAFE = re.compile(r"[^\w.-]+")  # \w: letters and digits of any script, and '_'
_ITEM_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")  # longer numbers: malformed (the whole file)
# what the media route serves, by extension: the kinds ingestion reads, never text or HTML
MEDIA_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".webm": "video/webm",
               ".avi": "video/x-msvideo", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
               ".gif": "image/gif", ".pdf": "application/pdf"}

_MEDIA_HEADERS = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox",
                  "cache-control": "private, max-age=60"}


class Collections:
    """Opens collections under ``<home>/collections`` with the server's shared models."""

    def __init__(self, config: ServerConfig, models: Models) -> None:
        self.config, self.models = config, models
        self.catalog = Catalog(config.resolved_home(), names_only=True)
        self.uploads = Path(os.path.realpath(config.resolved_data_dir() / "uploads"))  # ingested link-free
        self.roots = config.resolved_roots()
        self.embedder = BatchedEmbedder(models)
        self.ingest_embedder = BatchedEmbedder(models, background=True)
        self.reranker = BatchedReranker(models) if models.reranker else None
        self.watch: Any = None  # the ``WatchService`` of ``serve --watch``, if any
        self._cache: dict[str, Collection] = {}
        self._lock = threading.Lock()

    def open(self, name: str, create: bool = False, background: bool = False) -> Collection:
        """A new ``Collection`` object (jobs use their own); ``CollectionNotFound`` (404) when missing
        and not ``create``."""
        return Collection(name, catalog=self.catalog, model=self.embedder.model_id, create=create,
                          reranker=self.reranker.model_id if self.reranker else None,
                          loaded_embedder=self.ingest_embedder if background else self.embedder,
                          loaded_reranker=self.reranker, adapter=self.models.adapter)

    def get(self, name: str) -> Collection:
        """The cached ``Collection`` for searches (dropped when a job changes it)."""
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self.catalog.exists(name):
            return cached
        collection = self.open(name)
        with self._lock:
            self._cache[name] = collection
        return collection

    def describe_all(self) -> list[dict[str, Any]]:
        """A summary of each collection (those whose store cannot be opened now are left out)."""
        out = []
        for name in self.catalog.names():
            try:
                out.append(self._watched(_summary(self.get(name))))
            except StoreError:
                continue
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """One collection: summary, model fingerprint, instruction, layout and failed files."""
        collection = self.get(name)
        info = collection.info()
        return self._watched({**_summary(collection, info), "fingerprint": info.get("fingerprint"),
                              "instruction": info.get("instruction"), "created": info.get("created"),
                              "layout": info.get("layout"),
                              "failed": [{"source": s, "reason": r} for s, r in info["failed"].items()]})

    def _watched(self, summary: dict[str, Any]) -> dict[str, Any]:
        """A collection's summary with its watcher's state (``watch``: null when not watched)."""
        watching = self.watch is not None and self.watch.collection == summary["name"]
        return {**summary, "watch": self.watch.state() if watching else None}

    def forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    def allowed_path(self, given: str) -> str:
        """The real path of ``given`` if it lies under an allowed root (after ``..`` and links); else 403."""
        if not self.roots:
            raise APIError(403, "ingesting server paths is disabled (start the server with --collections-root DIR)",
                           "permission_error", "paths_disabled")
        if not isinstance(given, str) or not given.strip() or "\x00" in given:
            raise InputError("a path must be a non-empty string")
        path = Path(given)
        if not path.is_absolute():
            path = self.roots[0] / path
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in self.roots):
            raise APIError(403, f"{given!r} is outside the allowed roots", "permission_error", "path_not_allowed")
        if not real.exists():
            raise InputError(f"{given!r}: no such file or directory")
        return str(real)

    def served_roots(self, collection: Collection) -> list[str]:
        """Where the media route may serve a collection's sources from: the roots it recorded, or for a
        collection indexed before they were recorded, what this server ingests (allowed roots,
        uploads, watched folders)."""
        recorded = collection.meta.get("roots")
        if recorded is not None:
            return list(recorded)
        watched = [os.path.realpath(os.path.expanduser(p)) for p in self.config.watch_paths]
        return [str(r) for r in (*self.roots, self.uploads)] + watched

    def ingest(self, job: Job, on_progress: Callable[[int, int, int], None]) -> Any:
        collection = self.open(job.collection, create=True, background=True)
        try:
            if job.source == "watch":
                return apply_changes(collection, Changes(job.paths, job.options["remove"]), progress=False,
                                     on_progress=on_progress, workers=self.config.ingest_workers)
            return collection.add(job.paths, progress=False, follow_symlinks=False, on_progress=on_progress,
                                  workers=self.config.ingest_workers, **job.options)
        finally:
            self.forget(job.collection)


def build_router(config: ServerConfig, models: Models, collections: Collections, jobs: JobManager,
                 guard: SourceGuard) -> APIRouter:
    """The ``/v1/collections`` and ``/v1/jobs`` routes."""
    router = APIRouter()

    @router.get("/v1/collections")
    async def list_collections() -> JSONResponse:
        return JSONResponse({"object": "list", "data": await run_in_threadpool(collections.describe_all)})

    @router.get("/v1/collections/{name}")
    async def get_collection(name: str) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(collections.describe, name))

    @router.post("/v1/collections/{name}/search")
    async def search(name: str, body: SearchRequest) -> JSONResponse:
        query_text, image = _query(body, guard)
        rerank = body.rerank if body.rerank is not None else models.reranker is not None
        if rerank and models.reranker is None:
            raise InputError("this server has no reranker loaded: search with \"rerank\": false")
        collection = await run_in_threadpool(collections.get, name)

        timings: dict[str, float] = {}

        def run() -> list[Any]:
            return collection.search(query_text, image=image, top_k=body.top_k, candidates=body.candidates,
                                     rerank=rerank, where=body.where, instruction=body.instruction, like=body.like,
                                     mode=body.mode, weights=body.weights, moments=body.moments,
                                     rerank_budget=body.rerank_budget, rerank_inputs=body.rerank_inputs,
                                     timings=timings)

        results = await run_in_threadpool(run)
        return JSONResponse({"object": "list", "collection": name,
                             "reranked": rerank and any(r.reranked for r in results),
                             "timings": timings, "model": models.embedder_name,
                             "results": [r.to_dict(thumbnail=body.thumbnails) for r in results]})

    @router.post("/v1/collections/{name}/ingest", status_code=202)
    async def ingest(name: str, request: Request) -> JSONResponse:
        job = await _submit_ingest(request, name, collections, jobs)
        paths = job.paths
        return JSONResponse({"job_id": job.id, "object": "ingest_job", "status": job.status,
                             "collection": name, "files": len(paths)}, status_code=202)

    @router.get("/v1/collections/{name}/items/{item_id}/media")
    async def media(name: str, item_id: str, request: Request, box: str | None = None, region: int | None = None,
                    query: str | None = None) -> Response:
        if box is not None or region is not None:  # a crop of the page or image, as PNG
            crop = await run_in_threadpool(item_crop, collections, name, item_id, box, region, query)
            return Response(png(crop), media_type="image/png", headers=_MEDIA_HEADERS)
        handle, size, media_type = await run_in_threadpool(_media_source, collections, name, item_id)
        return _file_response(handle, size, media_type, request.headers.get("range"))

    @router.get("/v1/jobs")
    async def list_jobs() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [j.to_dict() for j in jobs.list()]})

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> JSONResponse:
        return JSONResponse(jobs.get(job_id).to_dict())

    return router


async def _submit_ingest(request: Request, name: str, collections: Collections, jobs: JobManager) -> Job:
    """An ingestion job for uploaded files (multipart) or for paths under the allowed roots (JSON)."""
    check_name(name)  # a bad name is refused before any upload is read
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return jobs.submit(name, await _save_uploads(request, collections.uploads / name), {}, "upload")
    if kind in ("application/json", ""):
        return submit_paths(collections, jobs, name, IngestRequest.model_validate_json(await request.body()))
    raise APIError(415, "send multipart/form-data (file uploads) or application/json ({\"paths\": [...]})",
                   "invalid_request_error", "unsupported_media_type")


def submit_paths(collections: Collections, jobs: JobManager, name: str, body: IngestRequest) -> Job:
    """An ingestion job for files or folders under the allowed roots (403 outside them, or when none
    is configured); the HTTP route and the MCP ``ingest`` tool both submit through here."""
    check_name(name)
    paths = [collections.allowed_path(p) for p in body.paths]
    options = {"include": body.include, "exclude": body.exclude, "prune": body.prune, "retry_failed": body.retry_failed}
    return jobs.submit(name, paths, options, "paths")


def _media_source(collections: Collections, name: str, item_id: str) -> tuple[BinaryIO, int, str]:
    """The source file of an item, open, with its size and media type: only if the collection
    recorded the file as indexed, it lies under a root the collection was indexed from, no link lies
    anywhere on its path, and the file opened is the one indexed (same size and time). An object or
    archive member is read into a private temporary file, within the collection's caps, and served
    only if its content is the one indexed. The caller closes the file."""
    collection = collections.get(name)
    missing = APIError(404, f"no item {item_id!r} in collection {name!r}", "not_found_error", "item_not_found")
    if not _ITEM_ID.match(item_id):
        raise missing
    records = collection.records([item_id])
    if not records:
        raise missing
    record = records[0]
    media_type = MEDIA_TYPES.get(os.path.splitext(record.source)[1].lower())
    if record.modality == "text" or media_type is None:
        raise APIError(404, f"item {item_id!r} is text: it has no media to serve", "not_found_error", "no_media")
    entry = collection.file_state(record.source)
    if entry is None or entry.status != "done":
        raise missing
    if not any(under(record.source, root) for root in collections.served_roots(collection)):
        raise APIError(403, f"the source of item {item_id!r} lies outside the folders, buckets and archives the "
                            f"collection was indexed from", "permission_error", "source_outside_roots")
    changed = APIError(404, f"the source of item {item_id!r} is missing or changed since it was indexed",
                       "not_found_error", "source_changed")
    if not is_local(record.source):  # an object or an archive member: a private copy, checked as it is read
        options = collection.extract_options()
        try:
            copy = spool(record.source, options.limits, options.archives, entry.content_hash, follow_links=False)
        except VlsearchError:
            raise changed from None
        return copy, os.fstat(copy.fileno()).st_size, media_type
    try:
        fd = open_without_links(record.source)
    except OSError:
        raise changed from None
    handle = os.fdopen(fd, "rb", buffering=0)  # closed with the object, also if never streamed
    stat = os.fstat(fd)
    if not S_ISREG(stat.st_mode) or (stat.st_size, stat.st_mtime) != (entry.size, entry.mtime):
        handle.close()
        raise changed
    return handle, stat.st_size, media_type


def item_crop(collections: Collections, name: str, item_id: str, box: str | None = None, region: int | None = None,
              query: str | None = None) -> Image.Image:
    """A crop of a page or image item: ``box`` ("x0,y0,x1,y1" in the pixels of its regions), or its
    ``region``-th region for ``query`` (as search gives them). The source passes the media route's
    checks and caps first; the page is rendered at the collection's pixel budget, an image turned upright."""
    if (box is None) == (region is None):
        raise InputError("give a box (x0,y0,x1,y1) or a region number (with the query), not both")
    if region is not None and not query:
        raise InputError("a region number needs the query whose regions it counts")
    collection = collections.get(name)
    records = collection.records([item_id]) if _ITEM_ID.match(item_id) else []
    if records and records[0].modality not in ("pdf_page", "image"):
        raise InputError(f"item {item_id!r} is a {records[0].modality} item: only pages and images are cropped")
    handle, _, _ = _media_source(collections, name, item_id)  # 404 unless indexed and unchanged; no links
    with handle:
        data = handle.read()
    record = records[0]
    if region is not None:
        found = find_regions(query, record.metadata, record.modality)
        if not 0 <= region < len(found):
            raise InputError(f"region {region}: the query {query!r} gives {len(found)} regions on item {item_id!r}")
        box = ",".join(map(str, found[region]["box"]))
    image = picture(NamedFile(data, record.source), record.locator, collection.extract_options())
    image = upright(image, record.metadata.get("orientation", 1))
    return image.crop(crop_box(box, image.size))  # type: ignore[arg-type]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _file_response(handle: BinaryIO, size: int, media_type: str, range_header: str | None) -> Response:
    """The open file, or the one byte range asked for (206; 416 when outside the file), streamed
    from that file, which is closed at the end. Several ranges in one header, or a malformed
    one, are answered with the whole file, as RFC 9110 allows."""
    headers = {"accept-ranges": "bytes", **_MEDIA_HEADERS}
    start, end, status = 0, size - 1, 200
    match = _RANGE.match((range_header or "").strip().replace(" ", ""))
    if match and match.group(1) + match.group(2):
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:  # a suffix: the last N bytes
            start = max(size - int(last), 0)
        if start >= size or start > end:
            handle.close()
            return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
        status = 206
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(end - start + 1)

    def chunks() -> Any:
        with handle:
            offset = start
            while offset <= end:
                block = os.pread(handle.fileno(), min(end + 1 - offset, 1 << 18), offset)
                if not block:
                    return
                offset += len(block)
                yield block

    return StreamingResponse(chunks(), status_code=status, media_type=media_type, headers=headers)


def _summary(collection: Collection, info: dict[str, Any] | None = None) -> dict[str, Any]:
    info = info or collection.info()
    model = info.get("model")
    return {"object": "collection", "name": collection.name, "items": info["items"], "files": info["files"],
            "failed_files": len(info["failed"]), "model": display_name(model) if model else None,
            "dim": info.get("dim")}


def _query(body: SearchRequest, guard: SourceGuard) -> tuple[str | None, Any]:
    """The query text and image of a search request (images only as data URIs or allowed URLs)."""
    image: Any = guard.check(body.image) if body.image is not None else None
    if body.query is None or isinstance(body.query, str):
        text = body.query
    else:
        item: Item = to_item(body.query, guard)
        if item.video is not None:
            raise InputError("a search query takes text and images, not video")
        text = "\n".join(item.text) if isinstance(item.text, list) else item.text
        if item.image:
            image = [*(item.image if isinstance(item.image, list) else [item.image]), *([image] if image else [])]
            image = image[0] if len(image) == 1 else image
    if not text and image is None and not body.like:
        raise InputError("give a query text, an image, or an item id (like)")
    return text or None, image


async def _save_uploads(request: Request, folder: Path) -> list[str]:
    """Save the uploaded files of a multipart form in a new folder of their own under ``folder``
    (safe names, extensions kept), so that no upload ever overwrites another; their paths."""
    form = await request.form(max_files=10_000, max_fields=100)
    uploads = [v for _, v in form.multi_items() if hasattr(v, "filename") and hasattr(v, "file")]
    if not uploads:
        raise InputError("no files in the upload (send them as multipart form fields, e.g. files=@report.pdf)")
    folder = private_dir(folder / uuid.uuid4().hex)  # uploads are their owner's only (0700, files 0600)
    saved: list[str] = []
    try:
        for upload in uploads:
            name = safe_filename(upload.filename or "")
            target, stem, suffix = folder / name, *os.path.splitext(name)
            n = 1
            while str(target) in saved:
                target = folder / f"{stem}-{n}{suffix}"
                n += 1
            await run_in_threadpool(atomic_write, target, lambda out: shutil.copyfileobj(upload.file, out, 1 << 20))
            saved.append(str(target))
    finally:
        await form.close()
    return saved


def safe_filename(name: str, limit: int = 200) -> str:
    """The base name of an uploaded file with only letters (any script), digits, '.', '_' and '-';
    never empty, never hidden, at most ``limit`` UTF-8 bytes, the extension kept (the stem is cut).

    Example:
        >>> safe_filename("../../etc/pass wd.txt"), safe_filename("отчёт.png")
        ('pass_wd.txt', 'отчёт.png')
    """
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    stem, suffix = os.path.splitext(base)
    suffix = _UNSAFE.sub("_", suffix[1:]).strip("._")[:16]
    suffix = "." + suffix if suffix else ""
    stem = _UNSAFE.sub("_", stem).strip("._") or "upload"
    while len((stem + suffix).encode("utf-8")) > limit:
        stem = stem[:-1]
    return stem + suffix
