"""Server security: API keys, size and count caps, pixel bombs, URL fetching (SSRF), local paths,
error bodies without traces, and a failing request never taking the server down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("fastapi")

from media_files import png_bomb  # noqa: E402
from server_helpers import assert_clean_error, data_uri, png_bytes, serve  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402
from vlsearch.server.auth import identity_proof  # noqa: E402

KiB = 1024


@pytest.fixture(scope="module")
def config(embedder_path, reranker_path, tmp_path_factory) -> ServerConfig:
    return ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=tmp_path_factory.mktemp("home"),
                        max_body_bytes=256 * KiB, max_items=8, max_documents=4, max_video_frames=16,
                        max_image_pixels=2_000_000)


@pytest.fixture(scope="module")
def server(config):
    with serve(config) as running:
        yield running


def image_input(url: str) -> dict:
    return {"input": [[{"type": "image_url", "image_url": {"url": url}}]]}


# --- caps ---------------------------------------------------------------------------


def test_body_too_large_by_content_length(http):
    response = http.post("/v1/embeddings", json={"input": "x" * (300 * KiB)})
    assert_clean_error(response, 413, "larger than 262144 bytes")


def test_body_too_large_while_streaming(http):
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"input": "'
        for _ in range(40):
            yield b"y" * (8 * KiB)
        yield b'"}'

    response = http.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert_clean_error(response, 413, "larger than 262144 bytes")


def test_too_many_items(http):
    assert_clean_error(http.post("/v1/embeddings", json={"input": ["a"] * 9}), 400, "9 inputs", "limit of 8")
    body = {"query": "q", "documents": ["d"] * 5}
    assert_clean_error(http.post("/v1/rerank", json=body), 400, "5 documents", "limit of 4")


def test_pixel_bomb_refused_before_decoding(http, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", 20_000, 20_000).read_bytes()
    assert len(bomb) < 1000
    assert_clean_error(http.post("/v1/embeddings", json=image_input(data_uri(bomb))), 400, "input 0", "pixels")
    big = png_bytes(2000, 1200)  # a real image, just over the server's 2,000,000-pixel cap
    assert_clean_error(http.post("/v1/embeddings", json=image_input(data_uri(big))), 400, "over the limit of 2000000")


def test_too_many_video_frames(http, media):
    frames = [data_uri(png_bytes(32, 32, seed=i)) for i in range(17)]
    body = {"input": [[{"type": "video_url", "video_url": {"url": frames}}]]}
    assert_clean_error(http.post("/v1/embeddings", json=body), 400, "17 frames", "limit of 16")
    clip = data_uri(media["video"].read_bytes(), "video/mp4")  # 24 frames: refused while probing, before decoding
    body = {"input": [[{"type": "video_url", "video_url": {"url": clip}}]]}
    assert_clean_error(http.post("/v1/embeddings", json=body), 400, "longer than the limit of 16 frames")


# --- sources: no local files, no URLs unless allowed ---------------------------------


@pytest.mark.parametrize("source", ["/etc/passwd", "file:///etc/passwd", "../../etc/passwd", "passwd.png",
                                    "ftp://example.com/a.png", "gopher://x/"])
def test_local_paths_and_other_schemes_refused(http, source):
    assert_clean_error(http.post("/v1/embeddings", json=image_input(source)), 400, "data URI or an http(s) URL")
    body = {"query": "q", "documents": [{"image": source}]}
    assert_clean_error(http.post("/v1/rerank", json=body), 400, "document 0")


@pytest.mark.parametrize("url", ["http://127.0.0.1/x.png", "http://169.254.169.254/latest/meta-data/",
                                 "https://example.com/a.png"])
def test_urls_disabled_by_default(http, url):
    assert_clean_error(http.post("/v1/embeddings", json=image_input(url)), 400, "URL inputs are disabled")


class _Handler(BaseHTTPRequestHandler):
    image = b""
    other_port = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        targets = {"/to-loopback": f"http://127.0.0.1:{self.other_port}/img.png",
                   "/to-metadata": "http://169.254.169.254/latest/meta-data/"}
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.image)))
            self.end_headers()
            self.wfile.write(self.image)
        elif self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def media_hosts() -> Iterator[tuple[int, int]]:
    """Two loopback HTTP servers: the first is exempt from the address check, the second is not."""
    _Handler.image = png_bytes(80, 60, seed=9)
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in range(2)]
    _Handler.other_port = servers[1].server_address[1]
    for s in servers:
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
    yield servers[0].server_address[1], servers[1].server_address[1]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_url_allowlist_and_ssrf_guard(config, media_hosts, embedder):
    exempt, other = media_hosts
    from dataclasses import replace

    allowing = replace(config, allow_url_hosts=("127.0.0.1",), fetch_allow_hosts=frozenset({f"127.0.0.1:{exempt}"}))
    with serve(allowing) as running, running.client() as http:
        ok = http.post("/v1/embeddings", json=image_input(f"http://127.0.0.1:{exempt}/img.png"))
        assert ok.status_code == 200, ok.text
        got = np.array([ok.json()["data"][0]["embedding"]], dtype=np.float32)
        assert np.array_equal(got, embedder.embed([{"image": [_Handler.image]}]))
        cases = {
            f"http://127.0.0.1:{other}/img.png": "127.0.0.1 is a loopback address",  # allowed name, private address
            "http://169.254.169.254/latest/meta-data/": "host 169.254.169.254 is not in the allowed hosts",
            "https://example.com/a.png": "host example.com is not in the allowed hosts",
            f"http://127.0.0.1:{exempt}/to-loopback": "127.0.0.1 is a loopback address",  # via a redirect
            f"http://127.0.0.1:{exempt}/to-metadata": "169.254.169.254 is not in the allowed hosts",
        }
        for url, reason in cases.items():
            assert_clean_error(http.post("/v1/embeddings", json=image_input(url)), 400, reason)


# --- API keys -----------------------------------------------------------------------


def test_api_keys(config):
    from dataclasses import replace

    secret = "registration-secret-0123"
    with serve(replace(config, api_keys=("key-one-0123", "key-two-0123"), identity_secret=secret)) as running, \
            running.client() as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "key-one-012"},
                        {"authorization": "key-one-0123"}):
            error = assert_clean_error(http.get("/v1/models", headers=headers), 401, "API key")
            assert error["type"] == "authentication_error"
        assert_clean_error(http.post("/v1/embeddings", json={"input": "x"}), 401)
        assert_clean_error(http.get("/metrics"), 401)
        assert http.get("/v1/models", headers={"authorization": "Bearer key-two-0123"}).status_code == 200
        assert http.post("/v1/embeddings", json={"input": "x"}, headers={"x-api-key": "key-one-0123"}).status_code == 200
        assert http.get("/health").status_code == 200  # probes need no key
        # a resident server proves it holds its registration secret, before any key is sent
        assert http.get("/identity", params={"nonce": "n" * 16}).json() == {"proof": identity_proof(secret, "n" * 16)}
        assert_clean_error(http.get("/identity", params={"nonce": "short"}), 400, "nonce")


# --- errors ---------------------------------------------------------------------------


def test_bad_inputs_fail_alone_and_the_server_keeps_serving(http, embedder):
    bad = [
        (image_input("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"), 400, "input 0"),  # truncated PNG
        (image_input("data:image/png;base64,!!!not-base64!!!"), 400, "invalid base64"),
        (image_input(data_uri(b"plain text, not a picture")), 400, "not an image"),
        ({"input": [[{"type": "audio_url", "audio_url": {"url": "x"}}]]}, 400, "unknown content part type"),
        ({"input": [""]}, 400, "empty input"),
        ({"input": []}, 400, "must not be empty"),
        ({"input": [[1, 2, 3]]}, 400, "token id inputs are not supported"),
        ({"input": "x", "encoding_format": "int4"}, 422, "encoding_format"),
        ({"nothing": 1}, 422, "input"),
    ]
    for body, status, fragment in bad:
        assert_clean_error(http.post("/v1/embeddings", json=body), status, fragment)
    assert_clean_error(http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}),
                       422)
    good = http.post("/v1/embeddings", json={"input": ["still fine", "x"]})
    assert good.status_code == 200
    assert np.array_equal(np.array([d["embedding"] for d in good.json()["data"]], np.float32),
                          embedder.embed(["still fine", "x"]))


def test_a_bad_image_fails_only_its_own_request(server, embedder):
    from concurrent.futures import ThreadPoolExecutor

    good_image = png_bytes(64, 64, seed=1)
    payloads = [image_input("data:image/png;base64,iVBORw0KGgo=") if i % 2 else image_input(data_uri(good_image))
                for i in range(8)]

    def call(payload):
        with server.client() as client:
            return client.post("/v1/embeddings", json=payload)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, payloads))
    expected = embedder.embed([{"image": [good_image]}])
    for i, response in enumerate(responses):
        if i % 2:
            assert_clean_error(response, 400, "input 0")
        else:
            assert np.array_equal(np.array([response.json()["data"][0]["embedding"]], np.float32), expected)


def test_internal_and_out_of_memory_errors(server, http, monkeypatch):
    models = server.app.state.models

    def crash(*args, **kwargs):
        raise RuntimeError(f"boom at {hex(id(object()))} <object object at 0x7f0000000000>")

    monkeypatch.setattr(models.embedder, "embed_encoded", crash)
    error = assert_clean_error(http.post("/v1/embeddings", json={"input": "x"}), 500, "internal error")
    assert error["request_id"] and error["request_id"] in error["message"] and "boom" not in error["message"]

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(models.embedder, "embed_encoded", oom)
    error = assert_clean_error(http.post("/v1/embeddings", json={"input": "x"}), 503, "out of memory")
    assert error["type"] == "service_unavailable"
    monkeypatch.undo()
    assert http.post("/v1/embeddings", json={"input": "x"}).status_code == 200


def test_unknown_routes_and_methods(http):
    assert_clean_error(http.get("/v1/nothing-here"), 404, "no route")
    assert_clean_error(http.get("/v1/embeddings"), 405)
    assert_clean_error(http.get("/v1/collections/bad name!"), 400, "invalid collection name")
    assert_clean_error(http.get("/v1/jobs/nope"), 404, "no job")
    assert_clean_error(http.get("/identity", params={"nonce": "n" * 16}), 404, "serve --detach")


def test_no_reranker(config):
    from dataclasses import replace

    with serve(replace(config, no_reranker=True)) as running, running.client() as http:
        assert_clean_error(http.post("/v1/rerank", json={"query": "q", "documents": ["d"]}), 503, "no reranker")
        assert [m["type"] for m in http.get("/v1/models").json()["data"]] == ["embedding"]
