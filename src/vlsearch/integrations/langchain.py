"""LangChain: a retriever over a vlsearch collection, and the embedding model as ``Embeddings``.

Needs ``pip install 'vlsearch[langchain]'`` (``langchain-core``).

Example:
    >>> from vlsearch.integrations.langchain import VlsearchEmbeddings, VlsearchRetriever
    >>> retriever = VlsearchRetriever(collection="papers", k=5)                   # a local collection
    >>> retriever = VlsearchRetriever(collection="papers", url="http://gpu-box:8000", api_key="KEY")
    >>> docs = retriever.invoke("attention heatmap")  # Documents: text, and where each result is
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import InputError, MissingExtraError
from ..models.contract import QUERY_INSTRUCTION
from .common import embedder_of, open_searcher, result_metadata, result_text, search

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, field_validator
except ImportError as exc:  # pragma: no cover - the langchain extra brings them
    raise MissingExtraError("langchain-core", "langchain") from exc

__all__ = ["VlsearchRetriever", "VlsearchEmbeddings"]


#: what ``search_kwargs`` and ``invoke(query, **options)`` may set: LangChain's ``k`` (or vlsearch's
#: ``top_k``) and the other options of ``Collection.search``
SEARCH_OPTIONS = ("k", "top_k", "candidates", "rerank", "where", "instruction", "image", "like", "mode", "weights",
                  "moments", "rerank_budget", "rerank_inputs")


def search_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """``options`` with ``k`` as ``top_k``; InputError naming an unknown option, or ``k`` with ``top_k``."""
    unknown = [key for key in options if key not in SEARCH_OPTIONS]
    if unknown:
        raise InputError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(SEARCH_OPTIONS)})")
    if "k" in options and "top_k" in options:
        raise InputError(f"{where}: give k or top_k, not both")
    return {("top_k" if key == "k" else key): value for key, value in options.items()}


class VlsearchRetriever(BaseRetriever):
    """Two-stage search of a vlsearch collection (nearest neighbours, then the reranker) as LangChain
    ``Document`` objects.

    ``page_content`` is the result's text (a text chunk, a PDF page's text layer), or a label such as
    "[image: dog.png]" for media without text. ``metadata``: ``id``, ``source``, ``modality``,
    ``page`` or ``start``/``end`` (seconds), ``rank``, ``score``, ``vector_score``, ``rerank_score``
    and ``thumbnail`` (a JPEG data URI), absent values left out.

    Attributes:
        collection: a ``Collection``, a ``RemoteCollection``, or a name: with ``url`` the collection of
            that vlsearch server, else the local one.
        url, api_key: the server (key default ``$VLSEARCH_API_KEY``).
        k: how many documents (LangChain's name; ``top_k=`` is accepted too).
        candidates, rerank, where, instruction: as in ``Collection.search`` (``rerank`` None: the
            searcher's default).
        search_kwargs: options for every call, as LangChain's vector-store retrievers take them
            (``{"k": 2, "where": "modality = 'image'"}``); they win over the fields above.
        thumbnails: put the thumbnail in the metadata.

    ``invoke(query, k=..., image=..., where=...)`` overrides the search options for one call
    (``image``: a path, bytes, PIL image or data URI, alone or with the text). An unknown field or
    option is refused (pydantic's ``ValidationError``, ``InputError``), never ignored.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    collection: Any
    url: str | None = None
    api_key: str | None = None
    k: int = Field(default=10, validation_alias=AliasChoices("k", "top_k"))
    candidates: int = 50
    rerank: bool | None = None
    where: str | None = None
    instruction: str | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    thumbnails: bool = True
    _searcher: Any = PrivateAttr(default=None)

    @field_validator("search_kwargs")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        search_options(value, "search_kwargs")
        return value

    def model_post_init(self, context: Any) -> None:
        self._searcher = open_searcher(self.collection, self.url, self.api_key)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **options: Any) -> list[Document]:
        settings = {"top_k": self.k, "candidates": self.candidates, "rerank": self.rerank, "where": self.where,
                    "instruction": self.instruction, **search_options(self.search_kwargs, "search_kwargs"),
                    **search_options(options, "invoke")}
        return [Document(page_content=result_text(r), metadata=result_metadata(r, self.thumbnails), id=r.id)
                for r in search(self._searcher, query, **settings)]


class VlsearchEmbeddings(Embeddings):
    """The embedding model as LangChain ``Embeddings``, images included (``embed_image``, the method
    LangChain's multimodal vector stores call).

    Args:
        model: an embedder already loaded (``Embedder``, ``vlsearch.remote.Embedder``), a hub id or
            directory, or a server URL; default ``$VLSEARCH_EMBEDDER``, else Qwen3-VL-Embedding-2B.
        api_key: for a server URL (default ``$VLSEARCH_API_KEY``).
        query_instruction: the instruction of ``embed_query`` (default: the collections' query
            instruction); documents and images get the model's default instruction.
        dim: Matryoshka dimension (re-normalised), default the full size.
        **options: for a local model (device, dtype ...).
    """

    def __init__(self, model: Any = None, *, api_key: str | None = None,
                 query_instruction: str | None = QUERY_INSTRUCTION, dim: int | None = None, **options: Any) -> None:
        self.embedder = embedder_of(model, api_key, **options)
        self.query_instruction, self.dim = query_instruction, dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed([{"text": t} for t in texts], dim=self.dim).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed([{"text": text}], instruction=self.query_instruction, dim=self.dim)[0].tolist()

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Vectors of images (paths, URLs or data URIs), in the space of the texts."""
        return self.embedder.embed([{"image": u} for u in uris], dim=self.dim).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
