"""The HTTP API over a real uvicorn server: embeddings (OpenAI), rerank (Cohere/Jina), models, health, metrics.

Every result is compared, exactly, with the library's own call on the same checkpoint.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")

from server_helpers import assert_clean_error, data_uri, metric, png_bytes, serve  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

TEXTS = ["a dog on a beach", "quarterly revenue chart", "the attention heatmap of a transformer layer"]


@pytest.fixture(scope="module")
def server(embedder_path, reranker_path, tmp_path_factory):
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=tmp_path_factory.mktemp("home"),
                          batch_wait_ms=20)
    with serve(config) as running:
        yield running


@pytest.fixture(scope="module")
def image():
    return png_bytes(120, 90, seed=3)


def vectors(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    assert all(d["object"] == "embedding" for d in body["data"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


def test_text_embeddings_equal_the_library(http, embedder):
    got = vectors(http.post("/v1/embeddings", json={"input": TEXTS, "model": "anything"}))
    assert np.array_equal(got, embedder.embed(TEXTS))
    one = vectors(http.post("/v1/embeddings", json={"input": TEXTS[0]}))
    assert np.array_equal(one, embedder.embed([TEXTS[0]]))


def test_usage_counts_the_encoded_tokens(http, embedder):
    body = http.post("/v1/embeddings", json={"input": TEXTS}).json()
    assert body["usage"]["prompt_tokens"] == sum(len(embedder.encode_item(embedder_item(t))) for t in TEXTS)
    assert body["model"] == embedder.path.name  # a directory is shown by its name, not its server path


def embedder_item(text: str):
    from vlsearch import Item

    return Item(text=text)


def test_multimodal_inputs_equal_the_library(http, embedder, image):
    uri = data_uri(image)
    payload = {"input": [
        [{"type": "image_url", "image_url": {"url": uri}}],
        [{"type": "text", "text": "a chart"}, {"type": "image_url", "image_url": {"url": uri}}],
        {"content": [{"type": "text", "text": "find this"}], "instruction": "Retrieve images of charts"},
        {"text": "caption", "image": uri},
        "plain text",
    ]}
    got = vectors(http.post("/v1/embeddings", json=payload))
    expected = embedder.embed([{"image": [image]}, {"text": ["a chart"], "image": [image]},
                               {"text": ["find this"], "instruction": "Retrieve images of charts"},
                               {"text": "caption", "image": image}, "plain text"])
    assert np.array_equal(got, expected)


def test_instruction_dimensions_and_base64(http, embedder):
    body = {"input": TEXTS, "instruction": "Represent the query for retrieval", "dimensions": 16,
            "encoding_format": "base64"}
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in response.json()["data"]]
    expected = embedder.embed(TEXTS, instruction="Represent the query for retrieval", dim=16)
    assert np.array_equal(np.stack(rows), expected) and expected.shape == (3, 16)
    too_big = http.post("/v1/embeddings", json={"input": "x", "dimensions": embedder.dim + 1})
    assert too_big.status_code == 400 and "dimensions must be between 1" in too_big.json()["error"]["message"]


def test_large_answers_are_serialised_off_the_loop(http, embedder, monkeypatch):
    import vlsearch.server.app as app_module

    monkeypatch.setattr(app_module, "OFFLOAD_FLOATS", 1)
    assert np.array_equal(vectors(http.post("/v1/embeddings", json={"input": TEXTS})), embedder.embed(TEXTS))


def test_video_input(http, embedder, media):
    clip = media["video"].read_bytes()
    uri = data_uri(clip, "video/mp4")
    got = vectors(http.post("/v1/embeddings", json={"input": [[{"type": "video_url", "video_url": {"url": uri}}]]}))
    assert np.array_equal(got, embedder.embed([{"video": [clip]}]))


def test_openai_client(server, embedder, image):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="vlsearch", input=TEXTS)  # the client asks for base64 by default
    assert np.array_equal(np.array([d.embedding for d in result.data], dtype=np.float32), embedder.embed(TEXTS))
    assert result.usage.total_tokens > 0 and result.model
    floats = client.embeddings.create(model="vlsearch", input=TEXTS[:1], encoding_format="float", dimensions=8)
    assert np.array_equal(np.array([floats.data[0].embedding], dtype=np.float32), embedder.embed(TEXTS[:1], dim=8))
    parts = [[{"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": "a chart"}]]
    images = client.embeddings.create(model="vlsearch", input="", extra_body={"input": parts})
    assert np.array_equal(np.array([images.data[0].embedding], dtype=np.float32),
                          embedder.embed([{"image": [image], "text": ["a chart"]}]))


def test_concurrent_requests_are_merged_and_batch_invariant(server, http, embedder, image):
    """Concurrent requests share model batches; each result still equals a call of its own."""
    uri = data_uri(image)
    inputs = [[f"text number {i} " + "word " * (i % 7)] for i in range(24)]
    inputs += [[[{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": f"caption {i}"}]]
               for i in range(8)]
    before = metric(http.get("/metrics").text, "vlsearch_batch_requests_count", model="embed")

    def call(payload):
        with server.client() as client:
            return client.post("/v1/embeddings", json={"input": payload})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, inputs))
    text = http.get("/metrics").text
    batches = metric(text, "vlsearch_batch_requests_count", model="embed") - before
    assert batches < len(inputs), "no two requests were merged"
    for payload, response in zip(inputs, responses):
        item = payload[0] if isinstance(payload[0], str) else {"image": [image], "text": [payload[0][1]["text"]]}
        assert np.array_equal(vectors(response), embedder.embed([item]))


def test_rerank_mixed_documents(http, reranker, image):
    uri = data_uri(image)
    documents = ["Paris is the capital of France", {"text": "a chart of revenue", "image": uri}, {"image": uri},
                 {"text": "Rome"}, "bananas are yellow"]
    body = {"query": "capital of France", "documents": documents, "instruction": "Find the answer"}
    response = http.post("/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = reranker.score("capital of France", [documents[0], {"text": "a chart of revenue", "image": image},
                                                    {"image": image}, {"text": "Rome"}, documents[4]],
                              instruction="Find the answer")
    assert sorted(r["index"] for r in results) == list(range(5))  # exactly one score per document
    assert {r["index"]: r["relevance_score"] for r in results} == dict(enumerate(expected))
    assert [r["relevance_score"] for r in results] == sorted(expected, reverse=True)
    assert all("document" not in r for r in results)
    assert response.json()["usage"]["total_tokens"] > 0

    top = http.post("/v1/rerank", json={**body, "top_n": 2, "return_documents": True}).json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in results[:2]]
    for r in top:
        doc = documents[r["index"]]
        assert r["document"] == ({"text": doc} if isinstance(doc, str) else doc)


def test_rerank_image_query(http, reranker, image):
    uri = data_uri(image)
    query = {"text": "this chart", "image": uri}
    response = http.post("/v1/rerank", json={"query": query, "documents": ["revenue", "dogs"]})
    got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    assert got == dict(enumerate(reranker.score({"text": "this chart", "image": image}, ["revenue", "dogs"])))


def test_models_health_metrics(http, embedder):
    models = http.get("/v1/models").json()
    assert [m["type"] for m in models["data"]] == ["embedding", "rerank"]
    assert models["data"][0]["dimensions"] == embedder.dim
    assert http.get("/health").json() == {"status": "ok"}
    http.post("/v1/embeddings", json={"input": "counted"})
    text = http.get("/metrics").text
    assert metric(text, "vlsearch_requests_total", route="/v1/embeddings", method="POST", status="200") >= 1
    assert metric(text, "vlsearch_request_seconds_count", route="/v1/embeddings") >= 1
    assert metric(text, "vlsearch_items_embedded_total") >= 1
    assert metric(text, "vlsearch_batch_items_count", model="embed") >= 1
    assert "vlsearch_queue_items" in text and "vlsearch_jobs" in text
    assert http.get("/health").headers["x-request-id"]


# ---------------------------------------------------------------- Jina's and Cohere's fields

def test_jina_rerank_takes_raw_base64_images_and_returns_documents_by_default(http, reranker, image):
    raw = base64.b64encode(image).decode()
    documents = [{"text": "a chart of revenue"}, {"image": raw}]
    body = {"model": "jina-reranker-m0", "query": "a chart", "documents": documents}
    results = http.post("/v1/rerank", json=body).json()["results"]
    expected = reranker.score("a chart", [documents[0], {"image": image}])
    assert {r["index"]: r["relevance_score"] for r in results} == dict(enumerate(expected))
    assert [r["document"] for r in sorted(results, key=lambda r: r["index"])] == documents  # Jina's default
    assert all("document" not in r for r in http.post("/v1/rerank", json={**body, "return_documents": False})
               .json()["results"])
    assert all("document" not in r for r in http.post("/v1/rerank", json={**body, "model": "rerank-v3.5"})
               .json()["results"])  # Cohere's default
    assert_clean_error(http.post("/v1/rerank", json={**body, "documents": [{"image": "bm90IGFuIGltYWdlIGF0IGFsbA=="}]}),
                       400, "document 0", "data URI")
    assert_clean_error(http.post("/v1/rerank", json={**body, "max_tokens_per_doc": 512}), 400, "max_tokens_per_doc")


def test_jina_embeddings_task_and_embedding_type(http, embedder):
    from vlsearch.models.contract import QUERY_INSTRUCTION, quantize

    body = {"model": "jina-embeddings-v4", "input": TEXTS}
    query = embedder.embed(TEXTS, instruction=QUERY_INSTRUCTION)
    assert np.array_equal(vectors(http.post("/v1/embeddings", json={**body, "task": "retrieval.query"})), query)
    assert np.array_equal(vectors(http.post("/v1/embeddings", json={**body, "task": "retrieval.passage"})),
                          embedder.embed(TEXTS))
    for kind, want in (("int8", quantize(query, "int8")), ("ubinary", quantize(query, "ubinary")),
                       ("binary", quantize(query, "ubinary").astype(np.int16) - 128)):
        answer = http.post("/v1/embeddings", json={**body, "task": "retrieval.query", "embedding_type": kind}).json()
        assert np.array_equal(np.array([d["embedding"] for d in answer["data"]]), want), kind
    encoded = http.post("/v1/embeddings", json={**body, "embedding_type": "base64"}).json()["data"][0]["embedding"]
    assert np.array_equal(np.frombuffer(base64.b64decode(encoded), "<f4"), embedder.embed(TEXTS)[0])
    for field, value, message in (("task", "retrieval.everything", "task must be one of retrieval.query"),
                                  ("embedding_type", "uint8", "embedding_type: 'uint8' is not supported"),
                                  ("late_chunking", True, "late_chunking"), ("normalized", False, "normalized")):
        assert_clean_error(http.post("/v1/embeddings", json={**body, field: value}), 400, message)
    assert_clean_error(http.post("/v1/embeddings", json={**body, "task": "retrieval.query", "instruction": "x"}),
                       400, "give task or instruction, not both")


def test_model_by_id(http, embedder):
    listed = http.get("/v1/models").json()["data"]
    for model in listed:
        assert http.get(f"/v1/models/{model['id']}").json() == model
    assert_clean_error(http.get("/v1/models/no-such-model"), 404, "no model 'no-such-model'")
