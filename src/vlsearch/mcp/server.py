"""The MCP server: the collections of a vlsearch home as tools for agents, on the official MCP SDK.

Tools: ``list_collections``, ``collection_info``, ``search``, ``get_item``, ``ingest`` and ``job_status``.
They go through the HTTP server's own pieces, so the same rules hold: collections by name only, media
in arguments as data URIs (http(s) URLs only for ``ServerConfig.allow_url_hosts``), the same size and
pixel caps, ingestion only under ``collections_roots``, and over HTTP the API key, host and
cross-site checks of ``server.middleware.Gate``. A bad argument is a tool error naming it
(``is_error``), never a failed session.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Annotated, Any, Callable, Iterator, Literal

import anyio
import numpy as np
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from ..catalog import check_name
from ..collection import Collection
from ..errors import InputError, VlsearchError
from ..items import Item
from ..media.images import load_image
from ..models.qwen3vl import load_item
from ..server.collections import Collections, item_crop, submit_paths
from ..server.config import ServerConfig
from ..server.errors import APIError, scrub
from ..server.inputs import SourceGuard
from ..server.jobs import JobManager
from ..server.runtime import Models
from ..server.schemas import IngestRequest
from ..stores.filters import parse as parse_filter
from ..version import __version__
from .content import image_jpeg, jpeg, json_result, place, search_result, text

INSTRUCTIONS = (
    "Multimodal search over indexed collections of PDFs, images, videos and text (Qwen3-VL embeddings and "
    "reranker). Call list_collections, then search a collection with a text and/or an image (a data URI); "
    "results give the source file, page or time span, scores and a thumbnail. get_item shows an item as "
    "the model sees it: a page image, its text layer, or a video segment's frames. ingest indexes files "
    "under the server's allowed folders; poll job_status with the job id it returns.")
MAX_FRAMES = 16
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

CollectionName = Annotated[str, Field(description="collection name, as list_collections shows it")]


@contextlib.contextmanager
def argument(name: str) -> Iterator[None]:
    """Errors raised inside become a tool error naming the argument ``name``."""
    try:
        yield
    except ToolError:
        raise
    except VlsearchError as exc:
        raise ToolError(f"{name}: {scrub(str(exc))}") from None
    except APIError as exc:
        raise ToolError(f"{name}: {scrub(exc.message)}") from None


class VlsearchMCP(MCPServer):
    """``MCPServer`` whose argument validation errors name each argument and what it should be, without
    echoing the values (a data URI can be megabytes)."""

    def tool(self, *args: Any, description: str | None = None, **options: Any) -> Callable[[Any], Any]:
        """``MCPServer.tool``, described by the function's docstring without its source indentation."""
        def register(fn: Any) -> Any:
            about = description if description is not None else inspect.cleandoc(fn.__doc__ or "")
            return MCPServer.tool(self, *args, description=about, **options)(fn)
        return register

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = [_problem(error) for error in exc.__cause__.errors()]
            raise ToolError(f"Error executing tool {name}: " + "; ".join(problems)) from exc.__cause__


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
    if error.get("type") == "missing":
        return f"{where}: required"
    return f"{where}: {error.get('msg', 'invalid')} (got {type(error.get('input')).__name__})"


class Tools:
    """The state the tools share: loaded models, the home's collections, ingestion jobs, the media guard."""

    def __init__(self, config: ServerConfig, models: Models | None = None) -> None:
        self.config = config
        self.models = models or Models(config)
        self.collections = Collections(config, self.models)
        self.jobs = JobManager(self.collections.ingest)
        self.guard = SourceGuard(config)

    def close(self) -> None:
        self.jobs.close()
        self.models.close()

    def collection(self, name: str) -> Collection:
        with argument("collection"):
            return self.collections.get(name)

    # ---------------------------------------------------------------- tools (run on a worker thread)

    def list_collections(self) -> CallToolResult:
        return json_result({"collections": self.collections.describe_all()})

    def collection_info(self, collection: str) -> CallToolResult:
        with argument("collection"):
            return json_result(self.collections.describe(collection))

    def search(self, collection: str, query: str | None, image: str | None, top_k: int, candidates: int,
               rerank: bool | None, where: str | None, instruction: str | None, like: str | None,
               thumbnails: bool, mode: str | None = None) -> CallToolResult:
        target = self.collection(collection)
        if image is not None:
            with argument("image"):  # source, size and pixel caps, decoded once for the search
                image = load_image(self.guard.check(image), self.config.media_limits())
        if where is not None:
            with argument("where"):
                parse_filter(where)
        if like is not None and not target.records([like]):
            raise ToolError(f"like: no item {like!r} in collection {collection!r}")
        if not (query and query.strip()) and image is None and like is None:
            raise ToolError("query: give a query text, an image (data URI), or an item id (like)")
        rerank = self.models.reranker is not None if rerank is None else rerank
        if rerank and self.models.reranker is None:
            raise ToolError("rerank: this server has no reranker loaded; search with rerank false")
        with argument("search"):
            results = target.search(query or None, image=image, top_k=top_k, candidates=candidates, rerank=rerank,
                                    where=where, instruction=instruction, like=like, mode=mode)
        return search_result(collection, results, any(r.reranked for r in results), thumbnails)

    def get_item(self, collection: str, id: str, frames: int, box: str | None = None,  # noqa: A002 - the tool's API
                 region: int | None = None, query: str | None = None) -> CallToolResult:
        target = self.collection(collection)
        with argument("id"):
            records = target.records([id])
        if not records:
            raise ToolError(f"id: no item {id!r} in collection {collection!r}")
        record = records[0]
        lines = [f"source: {place(record, record.source)}", f"modality: {record.modality}; id: {record.id}"]
        blocks: list[Any] = []
        shown: list[float] = []
        item, note = None, ""
        if box is None and region is None:
            with argument("id"):
                item, note = target.model_input(record)
        if item is None:  # a crop only: fewer image tokens than the whole page
            with argument("region" if region is not None else "box"):
                crop = item_crop(self.collections, collection, id, box, region, query)
            lines.append(f"crop: {crop.width}x{crop.height} pixels of the source")
            blocks.append(image_jpeg(crop))
        elif note:
            lines.append(f"note: {note}")
            blocks.append(jpeg(record.thumbnail) if record.thumbnail else text("(no image)"))
        elif record.modality == "video":
            video = item.video if isinstance(item.video, list) else []
            fps = item.fps or 1.0
            picks = sorted(set(np.linspace(0, len(video) - 1, min(frames, len(video)), dtype=int).tolist()))
            for index in picks:
                shown.append(round((record.start or 0.0) + index / fps, 3))
                blocks += [text(f"frame at {shown[-1]:.1f} s"), image_jpeg(video[index])]
            lines.append(f"frames: {len(picks)} of {len(video)} sampled at {fps:g} fps")
        elif record.modality != "text":
            with argument("id"):  # the pixels the embedder sees: resized to its budget, as qwen-vl-utils does
                embedder = self.models.embedder
                view = load_item(Item(image=item.image), embedder.budget, embedder.limits).images[0]
            lines.append(f"image: {view.width}x{view.height} pixels, as the model sees it")
            blocks.append(image_jpeg(view))
        lines.append("text:\n" + record.text if record.text else "text: (none)")
        data = {**record.locator.to_dict(), "id": record.id, "source": record.source, "text": record.text,
                "note": note, "frame_times": shown}
        return CallToolResult(content=[text("\n".join(lines)), *blocks], structured_content=data)

    def ingest(self, collection: str, paths: list[str], include: list[str], exclude: list[str], prune: bool,
               retry_failed: bool) -> CallToolResult:
        with argument("paths"):
            request = _ingest_request(paths, include, exclude, prune, retry_failed)
        with argument("collection"):
            check_name(collection)
        with argument("paths"):
            job = submit_paths(self.collections, self.jobs, collection, request)
        return json_result(job.to_dict())

    def job_status(self, job_id: str) -> CallToolResult:
        with argument("job_id"):
            return json_result(self.jobs.get(job_id).to_dict())


def _ingest_request(paths: list[str], include: list[str], exclude: list[str], prune: bool,
                    retry_failed: bool) -> IngestRequest:
    try:
        return IngestRequest(paths=paths, include=include, exclude=exclude, prune=prune, retry_failed=retry_failed)
    except ValidationError as exc:
        raise InputError("; ".join(_problem(e) for e in exc.errors())) from None


def create_mcp_server(config: ServerConfig | None = None, *, models: Models | None = None) -> tuple[VlsearchMCP, Tools]:
    """The MCP server and its tools' state (close it with ``tools.close()``); models load here, once.

    Example:
        >>> server, tools = create_mcp_server(ServerConfig(collections_roots=(Path("~/papers"),)))
        >>> server.run("stdio")
    """
    tools = Tools(config or ServerConfig(), models)
    mcp = VlsearchMCP("vlsearch", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    async def run(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    @mcp.tool(annotations=READ_ONLY)
    async def list_collections() -> CallToolResult:
        """The collections: name, items, files, failed files, model and dimension."""
        return await run(tools.list_collections)

    @mcp.tool(annotations=READ_ONLY)
    async def collection_info(collection: CollectionName) -> CallToolResult:
        """One collection: counts, model and its fingerprint, query instruction, layout, failed files."""
        return await run(tools.collection_info, collection)

    @mcp.tool(annotations=READ_ONLY)
    async def search(
            collection: CollectionName,
            query: Annotated[str | None, Field(description="what to look for, in words")] = None,
            image: Annotated[str | None, Field(description="a query image as a data URI "
                                                             "(data:image/png;base64,...), alone or with the text")] = None,
            top_k: Annotated[int, Field(ge=1, le=100, description="results returned")] = 10,
            candidates: Annotated[int, Field(ge=1, le=1000, description="neighbours reranked")] = 50,
            rerank: Annotated[bool | None, Field(description="rerank the candidates (default: when a reranker "
                                                             "is loaded)")] = None,
            where: Annotated[str | None, Field(description="filter, e.g. modality = 'pdf_page' AND page <= 3; "
                                                           "columns: modality, source, page, start, end, chunk, "
                                                           "text")] = None,
            instruction: Annotated[str | None, Field(description="query instruction (default: the "
                                                                 "collection's)")] = None,
            like: Annotated[str | None, Field(description="an item id: find items like it")] = None,
            thumbnails: Annotated[bool, Field(description="include each result's thumbnail image")] = True,
            mode: Annotated[Literal["dense", "lexical", "hybrid"] | None, Field(
                description="dense (by meaning), lexical (by words: BM25 over text, OCR text and file names) or "
                            "hybrid (both); default: hybrid when the collection has text")] = None,
    ) -> CallToolResult:
        """Two-stage search of a collection: candidates by meaning and/or by words, then the reranker. Each
        result names its source file, PDF page or video time span, its scores and id, with a thumbnail."""
        return await run(tools.search, collection, query, image, top_k, candidates, rerank, where, instruction,
                         like, thumbnails, mode)

    @mcp.tool(annotations=READ_ONLY)
    async def get_item(
            collection: CollectionName,
            id: Annotated[str, Field(description="the item id from a search result")],  # noqa: A002
            frames: Annotated[int, Field(ge=1, le=MAX_FRAMES, description="video frames shown")] = 4,
            box: Annotated[str | None, Field(description="show only this crop of a page or image: x0,y0,x1,y1 "
                                                         "in the pixels of its regions (a search result's "
                                                         "regions[i].box)")] = None,
            region: Annotated[int | None, Field(ge=0, description="show only the crop of this region of a search "
                                                                  "result (its index in regions; give the "
                                                                  "query too)")] = None,
            query: Annotated[str | None, Field(description="the search query whose regions region counts")] = None,
    ) -> CallToolResult:
        """One item as the model sees it: a PDF page or image at the model's resolution, the text layer or
        text chunk, or a video segment's time span and a few of its frames; or only a crop of a page or
        image (box, or region with the query), which costs fewer image tokens."""
        return await run(tools.get_item, collection, id, frames, box, region, query)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))
    async def ingest(
            collection: Annotated[str, Field(description="collection to add to (created when new)")],
            paths: Annotated[list[str], Field(description="files or folders under the server's allowed roots")],
            include: Annotated[list[str], Field(description="glob patterns to keep, e.g. **/*.pdf")] = [],  # noqa: B006
            exclude: Annotated[list[str], Field(description="glob patterns to skip")] = [],  # noqa: B006
            prune: Annotated[bool, Field(description="drop items of files gone from these paths")] = False,
            retry_failed: Annotated[bool, Field(description="retry files that failed before")] = False,
    ) -> CallToolResult:
        """Index files and folders (incremental: unchanged files are skipped). Returns a job; poll it with
        job_status until its status is done or failed."""
        return await run(tools.ingest, collection, paths, include, exclude, prune, retry_failed)

    @mcp.tool(annotations=READ_ONLY)
    async def job_status(job_id: Annotated[str, Field(description="the id ingest returned")]) -> CallToolResult:
        """An ingestion job: queued, running, done or failed; files done of total, items, the report and the
        files that failed with their reasons."""
        return await run(tools.job_status, job_id)

    return mcp, tools


def http_app(mcp: VlsearchMCP, config: ServerConfig, path: str = "/mcp") -> Any:
    """The streamable HTTP app at ``path``, behind the HTTP server's gate: API key (``Authorization:
    Bearer`` or ``x-api-key``), loopback-only ``Host`` without a key, no cross-site requests, body caps
    and read timeout."""
    from ..server.auth import KeyChecker
    from ..server.metrics import Metrics
    from ..server.middleware import Gate

    app = mcp.streamable_http_app(
        streamable_http_path=path, max_request_body_size=config.max_body_bytes, host=config.host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))  # the gate checks
    return Gate(app, keys=KeyChecker(config.api_keys), metrics=Metrics(), max_body=config.max_body_bytes,
                max_upload=config.max_body_bytes, is_upload=lambda _: False, read_timeout=config.read_timeout,
                allowed_hosts=frozenset(h.strip().lower() for h in config.allowed_hosts))
