"""``vlsearch parity`` against live vlsearch servers, and the vLLM request shapes of the remote models."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("fastapi")

from server_helpers import serve  # noqa: E402
from vlsearch.cli import main  # noqa: E402
from vlsearch.errors import InputError  # noqa: E402
from vlsearch.remote import Embedder as RemoteEmbedder  # noqa: E402
from vlsearch.remote import Reranker as RemoteReranker  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402


@pytest.fixture(scope="module")
def other_path(tmp_path_factory):
    from vlsearch.testing import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "other", seed=7, tie_word_embeddings=True)


def test_parity_passes_on_the_same_checkpoint_and_fails_on_another(
        embedder_path, reranker_path, other_path, tmp_path, capsys):
    same = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=tmp_path / "a")
    with serve(same) as running:
        status = main(["parity", "--model", str(embedder_path), "--remote", running.url,
                       "--reranker", str(reranker_path), "--remote-reranker", running.url,
                       "--probe-dir", str(tmp_path / "probes"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["ok"], report
    assert len(report["embeddings"]) == 10 and report["rerank"]
    assert all(row["cosine"] > 0.999999 and row["max_abs_diff"] < 1e-6 for row in report["embeddings"])
    assert all(row["abs_diff"] <= 1e-9 for row in report["rerank"])

    other = ServerConfig(model=str(other_path), reranker=str(reranker_path), home=tmp_path / "b")
    with serve(other) as running:
        status = main(["parity", "--model", str(embedder_path), "--remote", running.url, "--no-video"])
    out = capsys.readouterr().out
    assert status == 1
    assert "parity: FAILED" in out and "<- FAIL" in out


class _FakeVllm(BaseHTTPRequestHandler):
    """Records request bodies; answers like vLLM's /v1/models, /v1/embeddings and /v1/rerank."""

    bodies: list[dict] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "qwen", "object": "model", "owned_by": "vllm"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        if self.path.endswith("/embeddings"):
            self._send({"data": [{"index": 0, "object": "embedding", "embedding": [3.0, 4.0]}]})
        else:
            self._send({"results": [{"index": i, "relevance_score": 0.5} for i in range(len(body["documents"]))]})


@pytest.fixture
def fake_vllm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeVllm.bodies = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _FakeVllm.bodies
    finally:
        server.shutdown()


def test_vllm_request_shapes(fake_vllm, media):
    url, bodies = fake_vllm
    embedder = RemoteEmbedder(url)  # auto: owned_by vllm
    vectors = embedder.embed(["hello", {"image": str(media["jpeg"]), "text": "cap", "instruction": "Find photos"}])
    assert embedder.api == "vllm" and np.allclose(vectors, [[0.6, 0.8], [0.6, 0.8]])
    text, mixed = bodies
    assert text["continue_final_message"] is True and "input" not in text
    assert text["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "Represent the user's input."}]}
    assert text["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    assert text["messages"][2]["role"] == "assistant"
    assert mixed["messages"][0]["content"][0]["text"] == "Find photos."
    assert [p["type"] for p in mixed["messages"][1]["content"]] == ["image_url", "text"]
    assert mixed["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    with pytest.raises(InputError, match="as frames"):
        embedder.embed([{"video": [str(media["frame0"]), str(media["frame1"])]}])

    bodies.clear()
    reranker = RemoteReranker(url, api="vllm")
    assert reranker.score({"text": "q", "image": str(media["small"])}, ["a", {"image": str(media["jpeg"])}]) == [0.5, 0.5]
    (body,) = bodies
    assert body["query"]["content"][0]["type"] == "image_url" and body["documents"][0] == "a"
    assert body["documents"][1]["content"][0]["type"] == "image_url" and "instruction" not in body
    with pytest.raises(InputError, match="per-request instruction"):
        reranker.score("q", ["a"], instruction="Judge differently")


def test_openai_shape_is_plain_text(fake_vllm, media):
    url, bodies = fake_vllm
    embedder = RemoteEmbedder(url, api="openai")
    embedder.embed(["plain"])
    assert bodies[-1]["input"] == ["plain"] and "instruction" not in bodies[-1]
    with pytest.raises(InputError, match="text only"):
        embedder.embed([{"image": str(media["jpeg"])}])
    with pytest.raises(InputError, match="api must be one of"):
        RemoteEmbedder(url, api="grpc")  # type: ignore[arg-type]
