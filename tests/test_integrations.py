"""LangChain and LlamaIndex adapters with the real frameworks, over a local collection and over the same
collection served on loopback: documents and nodes carry the library's own results."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")

from agent_corpus import NAME, open_collection  # noqa: E402
from server_helpers import serve  # noqa: E402
from vlsearch.errors import CollectionNotFound, InputError, ModelError  # noqa: E402
from vlsearch.models.contract import QUERY_INSTRUCTION  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def collection(indexed, embedder, reranker):
    return open_collection(indexed, embedder, reranker)


@pytest.fixture(scope="module")
def server(indexed, reranker_path):
    with serve(ServerConfig(model=indexed.model, reranker=str(reranker_path), home=indexed.home,
                            api_keys=(KEY,))) as running:
        yield running


def expected(collection, query="penguins on glaciers", **options):
    return [r.to_dict(thumbnail=True) for r in collection.search(query, top_k=6, **options)]


# ---------------------------------------------------------------- LangChain

def test_langchain_retriever_returns_the_collection_results(collection):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from vlsearch.integrations.langchain import VlsearchRetriever

    docs = VlsearchRetriever(collection=collection, top_k=6).invoke("penguins on glaciers")
    want = expected(collection)
    assert all(isinstance(d, Document) for d in docs) and len(docs) == len(want) == 6
    for doc, r in zip(docs, want):
        assert doc.id == r["id"] and doc.metadata["rank"] == r["rank"]
        assert (doc.metadata["score"], doc.metadata["rerank_score"]) == (r["score"], r["rerank_score"])
        assert doc.metadata["source"] == r["source"] and doc.metadata["modality"] == r["modality"]
        assert None not in doc.metadata.values()
    by_modality = {d.metadata["modality"]: d for d in docs}
    assert by_modality["text"].page_content.startswith("Penguins live on glaciers")
    assert by_modality["pdf_page"].page_content.startswith("Quarterly revenue table")
    assert by_modality["pdf_page"].metadata["page"] in (1, 2)
    assert by_modality["pdf_page"].metadata["thumbnail"].startswith("data:image/jpeg;base64,")
    video = by_modality["video"].metadata
    assert video["end"] - video["start"] == 5.0 and "page" not in video
    assert by_modality["image"].page_content == "[image: chart.png]"


def test_langchain_retriever_over_a_server_equals_the_local_one(server, collection, indexed):
    pytest.importorskip("langchain_core")
    from vlsearch.integrations.langchain import VlsearchRetriever

    remote = VlsearchRetriever(collection=NAME, url=server.url, api_key=KEY, top_k=6)
    local = VlsearchRetriever(collection=collection, top_k=6)
    assert [(d.page_content, d.metadata) for d in remote.invoke("penguins on glaciers")] == \
        [(d.page_content, d.metadata) for d in local.invoke("penguins on glaciers")]
    # per-call options, an image query, and the async path
    image = str(indexed.files["image"])
    by_image = remote.invoke("a chart", image=image, top_k=2, rerank=False, where="modality != 'text'")
    want = collection.search("a chart", image=image, top_k=2, rerank=False, where="modality != 'text'")
    assert [d.id for d in by_image] == [r.id for r in want] and "rerank_score" not in by_image[0].metadata
    assert [d.id for d in asyncio.run(remote.ainvoke("penguins on glaciers"))] == \
        [d.id for d in local.invoke("penguins on glaciers")]


def test_langchain_retriever_errors_are_typed(server, collection):
    pytest.importorskip("langchain_core")
    from vlsearch.integrations.langchain import VlsearchRetriever

    with pytest.raises(CollectionNotFound, match="no collection 'nope'"):
        VlsearchRetriever(collection="nope", url=server.url, api_key=KEY).invoke("x")
    with pytest.raises(ModelError, match="HTTP 401"):
        VlsearchRetriever(collection=NAME, url=server.url, api_key="wrong-key-0123456789").invoke("x")
    with pytest.raises(InputError, match="filter"):
        VlsearchRetriever(collection=NAME, url=server.url, api_key=KEY, where="nosuchcolumn = 1").invoke("x")
    with pytest.raises(InputError, match="query"):
        VlsearchRetriever(collection=collection).invoke("  ")
    with pytest.raises(ValueError, match="collection must be"):  # pydantic's ValidationError, as LangChain's own
        VlsearchRetriever(collection=42)


def test_langchain_embeddings(embedder, indexed, server):
    pytest.importorskip("langchain_core")
    from langchain_core.vectorstores import InMemoryVectorStore

    from vlsearch.integrations.langchain import VlsearchEmbeddings

    texts = ["penguins on ice", "quarterly revenue", "a red apple"]
    local = VlsearchEmbeddings(embedder)
    assert np.array_equal(np.array(local.embed_documents(texts), np.float32), embedder.embed(texts))
    assert np.array_equal(np.array(local.embed_query("penguins"), np.float32),
                          embedder.embed("penguins", instruction=QUERY_INSTRUCTION)[0])
    image = str(indexed.files["image"])
    assert np.array_equal(np.array(local.embed_image([image]), np.float32), embedder.embed({"image": image}))
    assert len(VlsearchEmbeddings(embedder, dim=8).embed_query("x")) == 8
    remote = VlsearchEmbeddings(server.url, api_key=KEY)
    np.testing.assert_allclose(remote.embed_documents(texts), embedder.embed(texts), atol=1e-6)
    store = InMemoryVectorStore.from_texts(texts, embedding=local)
    assert [d.page_content for d in store.similarity_search("penguins on ice", k=1)] == ["penguins on ice"]
    assert len(asyncio.run(local.aembed_documents(texts))) == 3


def test_langchain_retriever_takes_k_and_search_kwargs_and_refuses_unknown_options(collection):
    pytest.importorskip("langchain_core")
    from vlsearch.integrations.langchain import VlsearchRetriever

    def ids(docs):
        return [d.id for d in docs]

    want = [r.id for r in collection.search("penguins on glaciers", top_k=3)]
    assert ids(VlsearchRetriever(collection=collection, k=3).invoke("penguins on glaciers")) == want
    assert ids(VlsearchRetriever(collection=collection).invoke("penguins on glaciers", k=3)) == want
    assert ids(VlsearchRetriever(collection=collection, search_kwargs={"k": 2}).invoke("penguins on glaciers")) \
        == want[:2]
    images = VlsearchRetriever(collection=collection, search_kwargs={"where": "modality = 'image'"}, top_k=2)
    assert {d.metadata["modality"] for d in images.invoke("a chart")} == {"image"}
    with pytest.raises(ValueError, match="topk"):  # pydantic's ValidationError: extra fields are forbidden
        VlsearchRetriever(collection=collection, topk=2)
    with pytest.raises(ValueError, match="search_kwargs: unknown option 'kk'"):
        VlsearchRetriever(collection=collection, search_kwargs={"kk": 2})
    with pytest.raises(InputError, match="invoke: unknown option 'topk'"):
        VlsearchRetriever(collection=collection).invoke("penguins", topk=2)
    with pytest.raises(InputError, match="give k or top_k, not both"):
        VlsearchRetriever(collection=collection).invoke("penguins", k=2, top_k=3)


class ServedOrLocal:
    """Fixtures of this module handed to LangChain's standard suites, which read their settings from
    properties: the same collection and model here and on the loopback server."""

    served = False

    @pytest.fixture(autouse=True)
    def _peers(self, collection, server, embedder):
        pytest.importorskip("langchain_tests")
        self.target = {"collection": NAME, "url": server.url, "api_key": KEY} if self.served else \
            {"collection": collection}
        self.model = {"model": server.url, "api_key": KEY} if self.served else {"model": embedder}

    @property
    def retriever_constructor(self):
        from vlsearch.integrations.langchain import VlsearchRetriever

        return VlsearchRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return self.target

    @property
    def retriever_query_example(self) -> str:
        return "penguins on glaciers"

    @property
    def embeddings_class(self):
        from vlsearch.integrations.langchain import VlsearchEmbeddings

        return VlsearchEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return self.model


def _standard(module: str, name: str) -> type:
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except ImportError:  # langchain-tests is in the dev extra; the suites are skipped without it
        return object


RetrieversIntegrationTests = _standard("langchain_tests.integration_tests", "RetrieversIntegrationTests")
EmbeddingsIntegrationTests = _standard("langchain_tests.integration_tests", "EmbeddingsIntegrationTests")
EmbeddingsUnitTests = _standard("langchain_tests.unit_tests", "EmbeddingsUnitTests")


class TestLangChainRetrieverLocal(ServedOrLocal, RetrieversIntegrationTests):
    pass


class TestLangChainRetrieverServed(ServedOrLocal, RetrieversIntegrationTests):
    served = True


class TestLangChainEmbeddingsUnitLocal(ServedOrLocal, EmbeddingsUnitTests):
    pass


class TestLangChainEmbeddingsUnitServed(ServedOrLocal, EmbeddingsUnitTests):
    served = True


class TestLangChainEmbeddingsLocal(ServedOrLocal, EmbeddingsIntegrationTests):
    pass


class TestLangChainEmbeddingsServed(ServedOrLocal, EmbeddingsIntegrationTests):
    served = True


def test_adapters_carry_the_regions_locally_and_over_a_server(server, collection):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from vlsearch.integrations.langchain import VlsearchRetriever as LangChainRetriever
    from vlsearch.integrations.llamaindex import VlsearchRetriever as LlamaIndexRetriever

    options = {"top_k": 6, "rerank": False}
    want = {r.id: r.regions for r in collection.search("quarterly revenue", **options)}
    assert any(want.values())
    for retriever in (LangChainRetriever(collection=collection, **options),
                      LangChainRetriever(collection=NAME, url=server.url, api_key=KEY, **options)):
        docs = retriever.invoke("quarterly revenue")
        assert {d.id: d.metadata.get("regions", []) for d in docs} == want
    hits = LlamaIndexRetriever(NAME, url=server.url, api_key=KEY, **options).retrieve("quarterly revenue")
    assert {h.node.node_id: h.node.metadata.get("regions", []) for h in hits} == want
    page = next(h.node.metadata for h in hits if h.node.metadata["modality"] == "pdf_page")
    assert page["regions"][0]["text"] == "Quarterly revenue" and page["regions"][0]["kind"] == "text"


# ---------------------------------------------------------------- LlamaIndex

def test_llamaindex_retriever_gives_text_and_image_nodes(server, collection, indexed):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

    from vlsearch.integrations.llamaindex import VlsearchRetriever

    want = expected(collection)
    for retriever in (VlsearchRetriever(collection, top_k=6),
                      VlsearchRetriever(NAME, url=server.url, api_key=KEY, top_k=6)):
        hits = retriever.retrieve("penguins on glaciers")
        assert all(isinstance(h, NodeWithScore) for h in hits)
        assert [(h.node.node_id, h.score) for h in hits] == [(r["id"], r["score"]) for r in want]
        for hit, r in zip(hits, want):
            assert hit.node.metadata["source"] == r["source"] and "thumbnail" not in hit.node.metadata
            if r["modality"] == "text":
                assert type(hit.node) is TextNode and hit.node.text == r["text"]
            else:
                assert isinstance(hit.node, ImageNode) and hit.node.image_mimetype == "image/jpeg"
                assert "data:image/jpeg;base64," + hit.node.image == r["thumbnail"]
    image = str(indexed.files["image"])
    by_image = VlsearchRetriever(collection, top_k=1, rerank=False).retrieve(QueryBundle("", image_path=image))
    assert by_image[0].node.node_id == collection.search(image=image, top_k=1, rerank=False)[0].id
    async_hits = asyncio.run(VlsearchRetriever(NAME, url=server.url, api_key=KEY).aretrieve("penguins"))
    assert async_hits and isinstance(async_hits[0], NodeWithScore)
    with pytest.raises(CollectionNotFound):
        VlsearchRetriever("nope", url=server.url, api_key=KEY).retrieve("penguins")


def test_llamaindex_multimodal_embedding(embedder, indexed):
    pytest.importorskip("llama_index.core")
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from vlsearch.integrations.llamaindex import VlsearchMultiModalEmbedding

    model = VlsearchMultiModalEmbedding(embedder)
    image = indexed.files["image"]
    expected_image = embedder.embed({"image": str(image)})[0]
    assert np.array_equal(np.array(model.get_image_embedding(str(image)), np.float32), expected_image)
    assert np.array_equal(np.array(model.get_image_embedding(io.BytesIO(image.read_bytes())), np.float32),
                          expected_image)
    assert np.array_equal(np.array(model.get_text_embedding_batch(["a", "b"]), np.float32), embedder.embed(["a", "b"]))
    assert np.array_equal(np.array(model.get_query_embedding("penguins"), np.float32),
                          embedder.embed("penguins", instruction=QUERY_INSTRUCTION)[0])
    assert len(asyncio.run(model.aget_image_embedding(str(image)))) == embedder.dim
    index = VectorStoreIndex([TextNode(text=t) for t in ("penguins on ice", "quarterly revenue")], embed_model=model)
    assert index.as_retriever(similarity_top_k=1).retrieve("penguins on ice")[0].node.text == "penguins on ice"
    with pytest.raises(InputError, match="model must be"):
        VlsearchMultiModalEmbedding(3.5)
