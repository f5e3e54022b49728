"""What the framework adapters share: a collection searched here or on a server, results as flat
metadata, and an embedding model from a name, a URL or an object.

Example:
    >>> searcher = open_searcher("papers", url="http://127.0.0.1:8000", api_key="KEY")
    >>> [result_metadata(r) for r in searcher.search("attention heatmap", top_k=3)]
"""

from __future__ import annotations

import base64
import os
from typing import Any

from ..catalog import check_name
from ..collection import Collection, Result
from ..errors import InputError, VlsearchError, in_context
from ..locator import Locator
from ..media.images import MediaLimits
from ..models.contract import EmbedderLike
from ..models.loading import API_KEY_ENV, is_remote, load_embedder
from ..models.remote import ApiClient, RemoteEmbedder
from ..wire import data_uri

#: the metadata of a result, in this order (absent values are left out)
METADATA_KEYS = ("id", "source", "modality", "page", "start", "end", "rank", "score", "vector_score",
                 "lexical_score", "rerank_score", "reranked", "note", "regions", "moment")


class RemoteCollection:
    """A collection of a vlsearch server (``POST /v1/collections/{name}/search``), searched with
    ``Collection.search``'s arguments; the results are ``Result`` objects, as here.

    Args:
        url: the server, e.g. "http://127.0.0.1:8000".
        name: the collection's name on the server.
        api_key: sent as ``Authorization: Bearer`` (default ``$VLSEARCH_API_KEY``).
        limits: caps on a query image read here before it is sent.

    Example:
        >>> RemoteCollection("http://127.0.0.1:8000", "papers").search("revenue chart", top_k=3)
    """

    def __init__(self, url: str, name: str, *, api_key: str | None = None, timeout: float = 300.0,
                 limits: MediaLimits | None = None) -> None:
        self.name = check_name(name)
        self.client = ApiClient(url, api_key if api_key is not None else os.environ.get(API_KEY_ENV), timeout)
        self.limits = limits or MediaLimits()

    def search(self, query: str | None = None, *, image: Any = None, top_k: int = 10, candidates: int = 50,
               rerank: bool | None = None, where: str | None = None, instruction: str | None = None,
               like: str | None = None, thumbnails: bool = True, mode: str | None = None,
               weights: tuple[float, float] = (1.0, 1.0), moments: bool = False, rerank_budget: float | None = None,
               rerank_inputs: str | None = None, timings: dict[str, float] | None = None) -> list[Result]:
        """The server's two-stage search (``rerank`` None: when the server has a reranker). ``image``:
        a path, bytes, PIL image, data URI or URL (local media are sent inline). ``timings`` is filled
        with the server's (see ``Collection.search``)."""
        body: dict[str, Any] = {"query": query, "top_k": top_k, "candidates": candidates, "rerank": rerank,
                                "where": where, "instruction": instruction, "like": like, "thumbnails": thumbnails,
                                "mode": mode, "weights": list(weights), "moments": moments or None,
                                "rerank_budget": rerank_budget, "rerank_inputs": rerank_inputs}
        if image is not None:
            try:
                body["image"] = data_uri(image, self.limits, "image")
            except VlsearchError as exc:
                raise in_context("image", exc) from None
        answer = self.client.call(f"collections/{self.name}/search", {k: v for k, v in body.items() if v is not None})
        if timings is not None:
            timings.update(answer.get("timings") or {})
        return [result_from_json(r) for r in answer.get("results", [])]

    def media_url(self, item_id: str) -> str:
        """Where the server serves an item's source file (images, PDFs, videos)."""
        return f"{self.client.base}/collections/{self.name}/items/{item_id}/media"


def result_from_json(data: dict[str, Any]) -> Result:
    """A ``Result`` from its JSON form (``Result.to_dict``, as the server answers it)."""
    thumbnail = data.get("thumbnail")
    locator = Locator(data["modality"], page=data.get("page"), start=data.get("start"), end=data.get("end"))
    return Result(data["rank"], data["id"], data["score"], data["vector_score"], data.get("rerank_score"),
                  data["source"], locator, data.get("text") or "",
                  base64.b64decode(thumbnail.partition(",")[2]) if thumbnail else None,
                  data.get("metadata") or {}, data.get("note") or "", data.get("lexical_score"),
                  data.get("regions") or [], data.get("moment"), bool(data.get("reranked")))


def open_searcher(collection: Any, url: str | None = None, api_key: str | None = None) -> Any:
    """What to search: a ``Collection`` or ``RemoteCollection`` as given; a name: the server's collection
    when ``url`` is given, else the local one (``CollectionNotFound`` when it does not exist)."""
    if isinstance(collection, str):
        return RemoteCollection(url, collection, api_key=api_key) if url else Collection(collection, create=False)
    if url is not None:
        raise InputError("url goes with a collection given by name, not with a Collection object")
    if not callable(getattr(collection, "search", None)):
        raise InputError(f"collection must be a Collection, a RemoteCollection or a name, "
                         f"not {type(collection).__name__}")
    return collection


def search(searcher: Any, query: str | None, *, image: Any = None, rerank: bool | None = None,
           **options: Any) -> list[Result]:
    """``searcher.search`` with ``rerank`` left to the searcher's default when None."""
    if not (query and query.strip()) and image is None:
        raise InputError("query: give a text (or an image)")
    return searcher.search(query or None, image=image, **({"rerank": rerank} if rerank is not None else {}),
                           **options)


def result_metadata(result: Result, thumbnail: bool = True) -> dict[str, Any]:
    """A result's place and scores as flat metadata (``METADATA_KEYS``, no None values), and its
    thumbnail as a JPEG data URI when asked and present."""
    data = result.to_dict(thumbnail=thumbnail)
    meta = {key: data[key] for key in METADATA_KEYS if data.get(key) not in (None, "", [])}
    if data.get("thumbnail"):
        meta["thumbnail"] = data["thumbnail"]
    return meta


def result_text(result: Result) -> str:
    """A result's text (the chunk, the page's text layer), or for media without text a short
    label: "[image: dog.png]", "[pdf_page: report.pdf, page 3]", "[video: talk.mp4, 5.0-10.0 s]"."""
    if result.text.strip():
        return result.text
    label = result.locator.label
    return f"[{result.modality}: {os.path.basename(result.source)}{'' if label == 'item' else ', ' + label}]"


def embedder_of(model: Any = None, api_key: str | None = None, **options: Any) -> EmbedderLike:
    """An embedding model: one already loaded as given; a server URL (key: ``api_key``, else
    ``$VLSEARCH_API_KEY``); a hub id or directory (``options`` go to its class); None: the default."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not callable(getattr(model, "embed", None)):
            raise InputError(f"model must be a name, a URL or an embedder, not {type(model).__name__}")
        return model
    if model is not None and is_remote(str(model)):
        return RemoteEmbedder(str(model), api_key=api_key if api_key is not None else os.environ.get(API_KEY_ENV))
    return load_embedder(None if model is None else str(model), **options)


def image_source(value: Any) -> Any:
    """A framework's image reference as a vlsearch image input: file-like objects are read."""
    read = getattr(value, "getvalue", None) or getattr(value, "read", None)
    return read() if callable(read) else value
