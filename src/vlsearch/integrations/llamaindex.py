"""LlamaIndex: a retriever over a vlsearch collection (text and image nodes), and the embedding model as
a ``MultiModalEmbedding``.

Needs ``pip install 'vlsearch[llamaindex]'`` (``llama-index-core``).

Example:
    >>> from vlsearch.integrations.llamaindex import VlsearchMultiModalEmbedding, VlsearchRetriever
    >>> retriever = VlsearchRetriever("papers", url="http://gpu-box:8000", api_key="KEY", top_k=5)
    >>> for hit in retriever.retrieve("attention heatmap"):
    ...     print(hit.score, hit.node.metadata["source"], type(hit.node).__name__)
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from ..errors import MissingExtraError
from ..models.contract import QUERY_INSTRUCTION
from .common import embedder_of, image_source, open_searcher, result_metadata, result_text, search

try:
    from llama_index.core.embeddings import MultiModalEmbedding
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import ImageNode, ImageType, NodeWithScore, QueryBundle, TextNode
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - the llamaindex extra brings them
    raise MissingExtraError("llama-index-core", "llamaindex") from exc

__all__ = ["VlsearchRetriever", "VlsearchMultiModalEmbedding"]


class VlsearchRetriever(BaseRetriever):
    """Two-stage search of a vlsearch collection as ``NodeWithScore``: a ``TextNode`` for a text
    chunk, an ``ImageNode`` for an image, PDF page or video segment (``image``: the thumbnail, base64
    JPEG; ``text``: the page's text layer, if any). ``score`` is the reranker's relevance when
    reranked, else the cosine similarity; the metadata holds ``source``, ``modality``, ``page`` or
    ``start``/``end``, ``rank``, ``score``, ``vector_score`` and ``rerank_score``.

    A ``QueryBundle`` with an ``image_path`` searches by that image (with the text, if any).

    Args:
        collection: a ``Collection``, a ``RemoteCollection``, or a name: with ``url`` the collection of
            that vlsearch server, else the local one.
        url, api_key: the server (key default ``$VLSEARCH_API_KEY``).
        top_k, candidates, rerank, where, instruction: as in ``Collection.search``.
    """

    def __init__(self, collection: Any, *, url: str | None = None, api_key: str | None = None, top_k: int = 10,
                 candidates: int = 50, rerank: bool | None = None, where: str | None = None,
                 instruction: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.searcher = open_searcher(collection, url, api_key)
        self.settings = {"top_k": top_k, "candidates": candidates, "rerank": rerank, "where": where,
                         "instruction": instruction}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        results = search(self.searcher, query_bundle.query_str, image=query_bundle.image_path, **self.settings)
        nodes = []
        for r in results:
            metadata = result_metadata(r, thumbnail=False)
            if r.modality == "text" or not r.thumbnail:
                node: TextNode = TextNode(id_=r.id, text=result_text(r), metadata=metadata)
            else:
                node = ImageNode(id_=r.id, text=r.text, image=base64.b64encode(r.thumbnail).decode(),
                                 image_mimetype="image/jpeg", metadata=metadata)
            nodes.append(NodeWithScore(node=node, score=r.score))
        return nodes

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class VlsearchMultiModalEmbedding(MultiModalEmbedding):
    """The embedding model as LlamaIndex's ``MultiModalEmbedding``: texts and images in one space.

    Args:
        model: an embedder already loaded, a hub id or directory, or a server URL (default
            ``$VLSEARCH_EMBEDDER``, else Qwen3-VL-Embedding-2B).
        api_key: for a server URL (default ``$VLSEARCH_API_KEY``).
        query_instruction: the instruction of query embeddings (default: the collections' query
            instruction); texts and images get the model's default instruction.
        dim: Matryoshka dimension (re-normalised), default the full size.
        embed_batch_size: texts per call, as in every LlamaIndex embedding.
    """

    query_instruction: str | None = QUERY_INSTRUCTION
    dim: int | None = None
    _embedder: Any = PrivateAttr(default=None)

    def __init__(self, model: Any = None, *, api_key: str | None = None,
                 query_instruction: str | None = QUERY_INSTRUCTION, dim: int | None = None,
                 embed_batch_size: int = 10, **options: Any) -> None:
        embedder = embedder_of(model, api_key, **{k: v for k, v in options.items() if k != "callback_manager"})
        super().__init__(model_name=str(embedder.model_id), embed_batch_size=embed_batch_size,
                         query_instruction=query_instruction, dim=dim,
                         **{k: v for k, v in options.items() if k == "callback_manager"})
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "VlsearchMultiModalEmbedding"

    def _rows(self, items: list[dict[str, Any]], instruction: str | None = None) -> list[list[float]]:
        return self._embedder.embed(items, instruction=instruction, dim=self.dim).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._rows([{"text": query}], self.query_instruction)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._rows([{"text": text}])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._rows([{"text": t} for t in texts])

    def _get_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return self._rows([{"image": image_source(img_file_path)}])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return self._rows([{"image": image_source(p)} for p in img_file_paths])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)
