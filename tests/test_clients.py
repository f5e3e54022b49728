"""Third-party clients, unchanged, against a real server on loopback with an API key: Cohere's SDK
(v1 ``Client`` and ``ClientV2``) on ``/v1/rerank`` and ``/v2/rerank``, LangChain's
``OpenAIEmbeddings`` on ``/v1/embeddings``; and the sentence-transformers calls of the remote
models. Every number is compared with the library's own call on the same checkpoint.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("fastapi")

from server_helpers import data_uri, png_bytes, serve  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

KEY = "test-key-0123456789"
DOCS = ["Paris is the capital of France", "Rome is in Italy", "bananas are yellow"]


@pytest.fixture(scope="module")
def server(embedder_path, reranker_path, tmp_path_factory):
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), api_keys=(KEY,),
                          home=tmp_path_factory.mktemp("home"))
    with serve(config) as running:
        yield running


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cohere_rerank_unchanged(server, reranker, version):
    cohere = pytest.importorskip("cohere")
    client = (cohere.Client if version == "v1" else cohere.ClientV2)(api_key=KEY, base_url=server.url)
    answer = client.rerank(model="rerank", query="capital of France", documents=DOCS, top_n=2,
                           **({"return_documents": True} if version == "v1" else {}))
    expected = reranker.rank("capital of France", DOCS, top_k=2)
    assert [(r.index, r.relevance_score) for r in answer.results] == expected
    if version == "v1":
        assert [r.document.text for r in answer.results] == [DOCS[i] for i, _ in expected]


def test_cohere_errors_are_the_sdk_own(server):
    cohere = pytest.importorskip("cohere")
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong-key-0123456789", base_url=server.url).rerank(
            model="rerank", query="q", documents=["d"])
    with pytest.raises(cohere.errors.BadRequestError):
        cohere.ClientV2(api_key=KEY, base_url=server.url).rerank(model="rerank", query="", documents=["d"])


def test_langchain_openai_embeddings_unchanged(server, embedder):
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="Qwen3-VL-Embedding-2B", base_url=server.url + "/v1", api_key=KEY,
        check_embedding_ctx_length=False,  # send text: the server does not take token ids
        chunk_size=64)  # at most the server's --max-items per request
    assert np.array_equal(np.array(embeddings.embed_documents(DOCS), np.float32), embedder.embed(DOCS))
    assert np.array_equal(np.array(embeddings.embed_query(DOCS[0]), np.float32), embedder.embed(DOCS[0])[0])
    short = langchain_openai.OpenAIEmbeddings(model="any", base_url=server.url + "/v1", api_key=KEY,
                                              check_embedding_ctx_length=False, dimensions=8)
    np.testing.assert_allclose(short.embed_query(DOCS[0]), embedder.embed(DOCS[0], dim=8)[0], atol=1e-7)


def test_remote_models_have_the_sentence_transformers_calls(server, embedder, reranker):
    from vlsearch.remote import Embedder, Reranker

    remote = Embedder(server.url, api_key=KEY)
    image = png_bytes(96, 64, seed=2)
    inputs = [DOCS[0], {"image": data_uri(image)}]
    # the server's floats as they are: equal to the library's, bit for bit
    assert np.array_equal(remote.encode_query(inputs), embedder.encode_query([DOCS[0], {"image": image}]))
    assert np.array_equal(remote.encode(DOCS, truncate_dim=8), embedder.encode(DOCS, truncate_dim=8))
    assert not np.allclose(remote.encode_query(DOCS), remote.encode_document(DOCS), atol=1e-3)
    short = Embedder(server.url, api_key=KEY, truncate_dim=8, default_prompt_name="query")  # constructor options
    assert np.array_equal(short.encode(DOCS), embedder.encode_query(DOCS)[:, :8])
    answers = Reranker(server.url, api_key=KEY, prompts={"answer": "Find the answer"})
    assert answers.rank("capital of France", DOCS, 2, False, "answer") == reranker.rank(
        "capital of France", DOCS, 2, False, prompt="Find the answer")
    pairs = [("capital of France", DOCS[0]), ("a fruit", DOCS[2]), ("capital of France", DOCS[1])]
    assert np.array_equal(Reranker(server.url, api_key=KEY).predict(pairs), reranker.predict(pairs))


def test_cohere_v1_rank_fields_over_structured_documents(server, reranker):
    cohere = pytest.importorskip("cohere")
    documents = [{"title": "France", "text": DOCS[0], "id": "a"}, {"title": "Italy", "text": DOCS[1]}, DOCS[2]]
    answer = cohere.Client(api_key=KEY, base_url=server.url).rerank(
        model="rerank-english-v3.0", query="capital of France", documents=documents, rank_fields=["title", "text"],
        return_documents=True)
    flat = [f"title: France\ntext: {DOCS[0]}", f"title: Italy\ntext: {DOCS[1]}", DOCS[2]]
    assert [(r.index, r.relevance_score) for r in answer.results] == reranker.rank("capital of France", flat)
    assert answer.results[[r.index for r in answer.results].index(0)].document.title == "France"


def test_cohere_v2_embed(server, embedder):
    cohere = pytest.importorskip("cohere")
    from vlsearch.models.contract import QUERY_INSTRUCTION, quantize

    client = cohere.ClientV2(api_key=KEY, base_url=server.url)
    types = ["float", "int8", "ubinary", "binary", "base64"]
    answer = client.embed(model="embed-v4.0", texts=DOCS, input_type="search_query", embedding_types=types)
    query = embedder.embed(DOCS, instruction=QUERY_INSTRUCTION)
    got = answer.embeddings
    assert np.array_equal(np.array(got.float_, np.float32), query) and answer.texts == DOCS
    assert np.array_equal(np.array(got.int8), quantize(query, "int8"))
    assert np.array_equal(np.array(got.ubinary), quantize(query, "ubinary"))
    assert np.array_equal(np.array(got.binary), quantize(query, "ubinary").astype(np.int16) - 128)
    assert np.array_equal(np.frombuffer(base64.b64decode(got.base64[1]), "<f4"), query[1])
    image = png_bytes(96, 64, seed=2)
    by_image = client.embed(model="embed-v4.0", images=[data_uri(image)], input_type="image",
                            embedding_types=["float"], output_dimension=8)
    np.testing.assert_allclose(by_image.embeddings.float_, embedder.embed({"image": image}, dim=8), atol=1e-7)
    parts = [{"type": "text", "text": "a chart"}, {"type": "image_url", "image_url": {"url": data_uri(image)}}]
    mixed = client.embed(model="embed-v4.0", input_type="search_document", embedding_types=["float"],
                         inputs=[{"content": parts}])
    assert np.array_equal(np.array(mixed.embeddings.float_, np.float32),
                          embedder.embed({"text": "a chart", "image": image}))
    for options, field in (({"embedding_types": ["uint8"]}, "uint8"), ({"truncate": "START"}, "truncate"),
                           ({"input_type": "summary"}, "input_type")):
        with pytest.raises(cohere.errors.BadRequestError, match=field):
            client.embed(model="embed-v4.0", texts=DOCS, **{"input_type": "search_query", **options})


def test_openai_retrieves_a_model_by_id(server, embedder):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key=KEY, base_url=server.url + "/v1")
    model = client.models.retrieve(client.models.list().data[0].id)
    assert model.owned_by == "vlsearch" and model.model_extra["dimensions"] == embedder.dim
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
