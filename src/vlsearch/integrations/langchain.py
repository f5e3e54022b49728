"""LangChain: a retriever over a vlsearch collection, and the embedding model as ``Embeddings``.

Needs ``pip install 'vlsearch[langchain]'`` (``langchain-core``).

Example:
    >>> from vlsearch.integrations.langchain import VlsearchEmbeddings, VlsearchRetriever
    >>> retriever = VlsearchRetriever(collection="papers", top_k=5)               # a local collection
    >>> retriever = VlsearchRetriever(collection="papers", url="http://gpu-box:8000", api_key="KEY")
    >>> docs = retriever.invoke("attention heatmap")  # Documents: text, and where each result is
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import MissingExtraError
from ..models.contract import QUERY_INSTRUCTION
from .common import embedder_of, open_searcher, result_metadata, result_text, search

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - the langchain extra brings them
    raise MissingExtraError("langchain-core", "langchain") from exc

__all__ = ["VlsearchRetriever", "VlsearchEmbeddings"]


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
        top_k, candidates, rerank, where, instruction: as in ``Collection.search`` (``rerank`` None:
            the searcher's default).
        thumbnails: put the thumbnail in the metadata.

    ``invoke(query, image=..., where=..., top_k=...)`` overrides the search options for one call
    (``image``: a path, bytes, PIL image or data URI, alone or with the text).
    """

    collection: Any
    url: str | None = None
    api_key: str | None = None
    top_k: int = 10
    candidates: int = 50
    rerank: bool | None = None
    where: str | None = None
    instruction: str | None = None
    thumbnails: bool = True
    _searcher: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._searcher = open_searcher(self.collection, self.url, self.api_key)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **options: Any) -> list[Document]:
        settings = {"top_k": self.top_k, "candidates": self.candidates, "rerank": self.rerank, "where": self.where,
                    "instruction": self.instruction, **options}
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
