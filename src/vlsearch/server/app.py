"""``create_app(config)``: the FastAPI app (OpenAI embeddings, Cohere/Jina rerank, collections).

Routes: ``POST /v1/embeddings``, ``POST /v1/rerank`` (also ``/v2/rerank``), ``POST /v2/embed`` (Cohere),
``GET /v1/models`` and ``/v1/models/{id}``, the collection and job routes of ``collections.py``, ``GET /health``,
``GET /identity`` (a resident server's proof), ``GET /metrics``. The web page in ``server/static/`` is served at
``/`` (index.html), its scripts and styles under ``/static/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np

from ..errors import InputError, MissingExtraError, VlsearchError, in_context

try:
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - the server extra brings them
    raise MissingExtraError("fastapi", "server") from exc

from ..models.contract import ranking, truncate_dim
from .auth import KeyChecker, identity_proof
from .collections import Collections, build_router
from .config import ServerConfig
from .errors import APIError, classify, error_body, status_type
from .inputs import SourceGuard, embedding_inputs, to_item, to_items
from .jobs import JobManager
from .metrics import Metrics
from .middleware import Gate
from .runtime import Models
from .peers import (COHERE_INPUT_TYPES, ENCODERS, JINA_TASKS, check_embedding_types, flattened_document,
                    instruction_of, refuse)
from .schemas import CohereEmbedRequest, EmbeddingRequest, RerankRequest

log = logging.getLogger("vlsearch.server")
STATIC = Path(__file__).parent / "static"
OFFLOAD_FLOATS = 50_000  # answers with more numbers are serialised on a worker thread


def create_app(config: ServerConfig | None = None, *, models: Models | None = None) -> FastAPI:
    """Build the app; the models load here, once (or pass ``models`` to share loaded ones).

    Example:
        >>> app = create_app(ServerConfig(model="Qwen/Qwen3-VL-Embedding-2B", no_reranker=True))
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    config = config or ServerConfig()
    metrics = Metrics()
    models = models or Models(config, metrics)
    guard = SourceGuard(config)
    collections = Collections(config, models)
    jobs = JobManager(collections.ingest, metrics.job_counts)
    if config.watch_paths:
        from .watching import WatchService

        collections.watch = WatchService(config, jobs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if collections.watch is not None:
            collections.watch.start()
        yield
        if collections.watch is not None:
            collections.watch.close()
        jobs.close()
        models.close()

    # the interactive docs pages load scripts from a CDN: not served (the schema is, behind the key)
    app = FastAPI(title="vlsearch", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Multimodal embeddings, reranking and search with Qwen3-VL.")
    app.state.config, app.state.models, app.state.metrics = config, models, metrics
    app.state.collections, app.state.jobs = collections, jobs
    _error_handlers(app)
    app.include_router(model_router(config, models, metrics, guard))
    app.include_router(build_router(config, models, collections, jobs, guard))
    _web_page(app)
    app.add_middleware(Gate, keys=KeyChecker(config.api_keys), metrics=metrics, max_body=config.max_body_bytes,
                       max_upload=config.max_upload_bytes, is_upload=_is_upload, read_timeout=config.read_timeout,
                       allowed_hosts=frozenset(h.strip().lower() for h in config.allowed_hosts))
    return app


def model_router(config: ServerConfig, models: Models, metrics: Metrics, guard: SourceGuard) -> APIRouter:
    """``/health``, ``/identity``, ``/metrics``, ``/v1/models``, ``/v1/embeddings`` and ``/v1/rerank``."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/identity")
    async def identity(nonce: str = "") -> JSONResponse:
        """The resident server's answer to a client's challenge (``auth.identity_proof``)."""
        if config.identity_secret is None:
            raise APIError(404, "this server was not started by `vlsearch serve --detach`", "not_found_error",
                           "not_resident")
        if not 16 <= len(nonce) <= 128:
            raise InputError("nonce: give 16 to 128 characters")
        return JSONResponse({"proof": identity_proof(config.identity_secret, nonce)})

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    def model_list() -> list[dict[str, Any]]:
        data = [{"id": models.embedder_name, "object": "model", "owned_by": "vlsearch", "type": "embedding",
                 "dimensions": models.embedder.dim, "fingerprint": models.embedder.fingerprint,
                 "created": int(_STARTED)}]
        if models.reranker is not None:
            data.append({"id": models.reranker_name, "object": "model", "owned_by": "vlsearch", "type": "rerank",
                         "created": int(_STARTED)})
        return data

    @router.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": model_list()})

    @router.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> JSONResponse:
        for model in model_list():
            if model["id"] == model_id:
                return JSONResponse(model)
        raise APIError(404, f"no model {model_id!r} on this server", "invalid_request_error", "model_not_found")

    async def embed(items: list[Any], instruction: str | None, field: str,
                    size: int | None) -> tuple[np.ndarray, int]:
        """The items' vectors, cut to ``size`` (Matryoshka, the request's ``field``), and their tokens."""
        if size is not None and size > models.embedder.dim:
            raise InputError(f"{field} must be between 1 and {models.embedder.dim}, not {size}")
        vectors, tokens = await models.embed(items, instruction)
        return truncate_dim(vectors, size), tokens

    async def respond(build: Callable[[], dict[str, Any]], numbers: int) -> Response:
        """``build()`` as JSON; large answers are serialised off the event loop, small ones are not worth the hop."""
        def render() -> bytes:
            return json.dumps(build()).encode()

        content = await run_in_threadpool(render) if numbers > OFFLOAD_FLOATS else render()
        return Response(content, media_type="application/json")

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        items = embedding_inputs(body.input, guard, config.max_items)
        if body.embedding_type and body.encoding_format and body.embedding_type != body.encoding_format:
            raise InputError("give encoding_format or embedding_type, not both")
        kind = check_embedding_types("embedding_type", [body.embedding_type or body.encoding_format or "float"])[0]
        refuse("late_chunking", body.late_chunking, (False,), "each input is embedded on its own")
        refuse("normalized", body.normalized, (True,), "the vectors are unit vectors")
        instruction = instruction_of("task", body.task, JINA_TASKS, body.instruction)
        vectors, tokens = await embed(items, instruction, "dimensions", body.dimensions)
        return await respond(lambda: {
            "object": "list", "model": models.embedder_name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": e}
                     for i, e in enumerate(ENCODERS[kind](vectors))]}, vectors.size)

    @router.post("/v2/embed")
    async def cohere_embed(body: CohereEmbedRequest, request: Request) -> Response:
        given = [name for name in ("texts", "images", "inputs") if getattr(body, name) is not None]
        if len(given) != 1:
            raise InputError("give one of texts, images or inputs")
        values = body.texts or [{"image": image} for image in body.images or []] or body.inputs
        items = embedding_inputs(values, guard, config.max_items)
        refuse("truncate", body.truncate, ("END",), "the model cuts a long input at its end (END)")
        refuse("max_tokens", body.max_tokens, (), "the token limit is the server's")
        instruction = instruction_of("input_type", body.input_type, COHERE_INPUT_TYPES, None)
        kinds = check_embedding_types("embedding_types", body.embedding_types)
        vectors, tokens = await embed(items, instruction, "output_dimension", body.output_dimension)
        return await respond(lambda: {
            "id": _request_id(request) or "", "response_type": "embeddings_by_type", "texts": body.texts or [],
            "embeddings": {kind: ENCODERS[kind](vectors) for kind in kinds},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}}, vectors.size)

    @router.post("/v1/rerank")
    @router.post("/v2/rerank")  # the same route where Cohere's v2 client (cohere.ClientV2) posts
    async def rerank(body: RerankRequest) -> JSONResponse:
        if models.reranker is None:
            raise APIError(503, "no reranker is loaded on this server (it was started with --no-reranker)",
                           "service_unavailable", "no_reranker")
        refuse("max_tokens_per_doc", body.max_tokens_per_doc, (), "the token limit is the server's")
        if len(body.documents) > config.max_documents:
            raise InputError(f"{len(body.documents)} documents in one request, over the limit of "
                             f"{config.max_documents}")
        try:
            query = to_item(body.query, guard)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        given = body.documents if body.rank_fields is None else [
            flattened_document(d, body.rank_fields, i) for i, d in enumerate(body.documents)]
        documents = to_items(given, guard, lambda i: f"document {i}")
        scores, tokens = await models.rerank(query, documents, body.instruction)
        return_documents = body.return_documents if body.return_documents is not None else \
            (body.model or "").startswith("jina")
        results = []
        for i, score in ranking(scores, body.top_n or None):
            result: dict[str, Any] = {"index": i, "relevance_score": score}
            if return_documents:
                doc = body.documents[i]
                result["document"] = {"text": doc} if isinstance(doc, str) else doc
            results.append(result)
        return JSONResponse({"object": "list", "results": results, "model": models.reranker_name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return router


def _web_page(app: FastAPI) -> None:
    """The page at /, its files under /static (other paths keep 404/405)."""
    if not (STATIC / "index.html").is_file():
        return
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


_STARTED = time.time()


def _is_upload(path: str) -> bool:
    return path.startswith("/v1/collections/") and path.endswith("/ingest")


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str, kind: str, code: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, kind, code, _request_id(request)), status_code=status,
                            headers=headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return answer(request, exc.status, exc.message, exc.type, exc.code or "error", exc.headers)

    @app.exception_handler(VlsearchError)
    async def vlsearch_error(request: Request, exc: VlsearchError) -> JSONResponse:
        status, kind, code, message = classify(exc) or (500, "internal_error", "internal_error", "internal error")
        retry = getattr(exc, "retry_after", None)
        return answer(request, status, message, kind, code, {"Retry-After": str(int(retry))} if retry else None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, 422, _validation_message(exc.errors()), "invalid_request_error", "invalid_request")

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError) -> JSONResponse:
        return answer(request, 422, _validation_message(exc.errors()), "invalid_request_error", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "error")
        message = str(exc.detail) if exc.status_code != 404 else f"no route {request.url.path}"
        return answer(request, exc.status_code, message, status_type(exc.status_code), code,
                      dict(exc.headers or {}))


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic errors as one line, without the (possibly huge) input values."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(x) for x in error.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def _version() -> str:
    from ..version import __version__

    return __version__
