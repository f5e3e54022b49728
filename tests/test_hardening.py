"""A hostile client against the server, and media that would cost memory before being refused:
the filter language, browser-borne requests (DNS rebinding, cross-site posts), the API docs, the
media route under link swaps, uploads that share a name, text that is not Unicode, numbers too
large, slow clients, non-ASCII keys and header-only image bombs."""

from __future__ import annotations

import io
import os
import socket
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from server_helpers import assert_clean_error, png_bytes, serve, wait_for_job  # noqa: E402
from vlsearch.catalog import Catalog  # noqa: E402
from vlsearch.collection import Collection  # noqa: E402
from vlsearch.errors import InputError, MediaError  # noqa: E402
from vlsearch.media.images import MediaLimits, load_image  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

KEY = "hardening-key-0123"
BROWSER = {"sec-fetch-mode": "no-cors", "sec-fetch-dest": "document",
           "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening")
    (root / "docs").mkdir()
    (root / "docs" / "notes.txt").write_text("Notes about penguins and glaciers. " * 8)
    (root / "docs" / "picture.png").write_bytes(png_bytes(160, 120, seed=3))
    return {"root": root, "notes": root / "docs" / "notes.txt", "picture": root / "docs" / "picture.png"}


@pytest.fixture(scope="module")
def config(embedder_path, files, tmp_path_factory) -> ServerConfig:
    return ServerConfig(model=str(embedder_path), no_reranker=True, home=tmp_path_factory.mktemp("home"),
                        collections_roots=(files["root"],), ingest_workers=0, read_timeout=2.0)


@pytest.fixture(scope="module")
def server(config, files):
    with serve(config) as running, running.client() as http:
        job = http.post("/v1/collections/docs/ingest", json={"paths": [str(files["root"] / "docs")]}).json()
        assert wait_for_job(http, job["job_id"])["status"] == "done"
        yield running


# ---------------------------------------------------------------- the filter language

@pytest.mark.parametrize("where, named", [
    ("lpad('x', 2147483647, 'y') = 'x'", "functions are not allowed: 'lpad'"),
    ("repeat('x', 1000000000) = 'x'", "functions are not allowed: 'repeat'"),
    ("1=1; DROP TABLE records", "unexpected ';' (one filter only, no statements)"),
    ("1 = 1", "expected a column, got '1'"),
    ("modality = 'text'; DROP TABLE records", "unexpected ';'"),
    ("page = 1/0", "unexpected '/' (arithmetic is not allowed)"),
    ("CAST(source AS INT) = 1", "functions are not allowed: 'CAST'"),
    ("page = 'x'", "'page' takes numbers"),
    ("(" * 40 + "page = 1" + ")" * 40, "nested deeper than"),
    ("text LIKE '" + "x" * 5000 + "'", "over the limit of 4000"),
])
def test_hostile_filters_are_refused_naming_the_token(http, config, where, named):
    started = time.monotonic()
    response = http.post("/v1/collections/docs/search", json={"query": "penguins", "where": where})
    error = assert_clean_error(response, 400, "invalid filter", named)
    assert time.monotonic() - started < 5
    assert str(config.home) not in error["message"] and ".rs" not in error["message"]


def test_good_filters_still_work(http):
    found = http.post("/v1/collections/docs/search", json={
        "query": "penguins", "where": "modality = 'text' AND text LIKE '%glaciers%' AND chunk BETWEEN 0 AND 3"})
    assert found.status_code == 200 and [r["modality"] for r in found.json()["results"]] == ["text"]
    negated = http.post("/v1/collections/docs/search", json={"query": "x", "where": "source NOT LIKE '%notes%'"})
    assert [r["modality"] for r in negated.json()["results"]] == ["image"]


# ---------------------------------------------------------------- the browser

def test_a_rebound_host_name_is_not_served_without_a_key(server, http):
    port = server.port
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
        error = assert_clean_error(http.get("/v1/collections", headers={"host": host}), 403, "is not served")
        assert error["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]:8000"):
        assert http.get("/v1/collections", headers={"host": host}).status_code == 200


def test_configured_hosts_and_keyed_servers_take_other_names(config):
    with serve(replace(config, allowed_hosts=("search.lan",))) as running, running.client() as http:
        assert http.get("/v1/collections", headers={"host": "search.lan:8000"}).status_code == 200
        assert http.get("/v1/collections", headers={"host": "other.lan"}).status_code == 403
    with serve(replace(config, api_keys=(KEY,))) as running, running.client(authorization=f"Bearer {KEY}") as http:
        assert http.get("/v1/collections", headers={"host": "search.example.com"}).status_code == 200


def test_cross_site_form_posts_are_refused(server, http, files):
    origin = f"http://127.0.0.1:{server.port}"
    upload = [("files", ("note.txt", b"written by another site", "text/plain"))]
    for headers in ({"origin": "http://attacker.example", "sec-fetch-site": "cross-site"},
                    {"origin": "http://attacker.example"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "null"}, {"origin": "http://localhost:3000", "sec-fetch-site": "same-site"}):
        response = http.post("/v1/collections/evil/ingest", files=upload, headers={**BROWSER, **headers})
        assert assert_clean_error(response, 403, "refused")["code"] == "cross_site"
    assert http.get("/v1/collections/evil").status_code == 404  # nothing was created
    same = http.post("/v1/collections/mine/ingest", files=upload,
                     headers={**BROWSER, "origin": origin, "sec-fetch-site": "same-origin"})
    assert same.status_code == 202
    assert http.get("/v1/collections", headers={**BROWSER, "sec-fetch-site": "cross-site"}).status_code == 200


def test_the_api_docs_are_behind_the_key_and_load_nothing_external(config):
    with serve(replace(config, api_keys=(KEY,))) as running, running.client() as http:
        assert_clean_error(http.get("/openapi.json"), 401)
        schema = http.get("/openapi.json", headers={"x-api-key": KEY})
        assert schema.status_code == 200 and "/v1/embeddings" in schema.json()["paths"]
        for page in ("/docs", "/redoc"):
            assert http.get(page, headers={"x-api-key": KEY}).status_code == 404


def test_non_ascii_keys_match_and_short_keys_are_refused(config):
    key = "clé-secrète-ünïcode"
    with serve(replace(config, api_keys=(key,))) as running, running.client() as http:
        assert http.get("/v1/models", headers={"x-api-key": key.encode()}).status_code == 200
        assert http.get("/v1/models", headers={"authorization": b"Bearer " + key.encode()}).status_code == 200
        assert http.get("/v1/models", headers={"x-api-key": key.encode("latin-1", "replace")}).status_code == 401
    with pytest.raises(InputError, match="at least 12 characters"):
        replace(config, api_keys=("short",))


# ---------------------------------------------------------------- the media route

def _media_url(http, modality: str) -> str:
    found = http.post("/v1/collections/docs/search", json={"query": "x", "where": f"modality = '{modality}'"})
    return f"/v1/collections/docs/items/{found.json()['results'][0]['id']}/media"


def test_a_swapped_parent_folder_is_not_followed(server, http, files, tmp_path):
    url = _media_url(http, "image")
    assert http.get(url).content == files["picture"].read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "picture.png"
    secret.write_bytes(b"S" * files["picture"].stat().st_size)  # same size and time as the indexed file
    stat = files["picture"].stat()
    os.utime(secret, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    docs, moved = files["root"] / "docs", files["root"] / "docs-moved"
    docs.rename(moved)
    docs.symlink_to(outside, target_is_directory=True)
    try:
        assert_clean_error(http.get(url), 404, "missing or changed")
    finally:
        docs.unlink()
        moved.rename(docs)
    assert http.get(url).content == files["picture"].read_bytes()


def test_flipping_the_file_and_a_link_never_serves_the_link_target(server, http, files, tmp_path):
    """While another thread swaps the indexed file for a link (same size and time) and back, every
    answer is the indexed file whole, or a 404: never the target, never a mix."""
    import threading

    url = _media_url(http, "image")
    original = files["picture"].read_bytes()
    decoy = tmp_path / "decoy.png"
    decoy.write_bytes(b"D" * len(original))
    stat = files["picture"].stat()
    os.utime(decoy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    aside = files["picture"].with_name("picture.aside")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            files["picture"].rename(aside)
            files["picture"].symlink_to(decoy)
            time.sleep(0.001)
            files["picture"].unlink()
            aside.rename(files["picture"])
            time.sleep(0.001)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        answers = [http.get(url) for _ in range(60)]
    finally:
        stop.set()
        flipper.join()
    assert all(a.status_code == 404 or a.content == original for a in answers)
    assert b"DDDD" not in b"".join(a.content for a in answers)
    assert http.get(url).content == original  # the file back in place is served again


def media_of(http, collection: str, name: str):
    """The media route's answer for the item of ``collection`` whose source ends with ``name``."""
    found = http.post(f"/v1/collections/{collection}/search", json={
        "query": "x", "rerank": False, "where": f"source LIKE '%{name}'"}).json()["results"]
    return http.get(f"/v1/collections/{collection}/items/{found[0]['id']}/media")


def test_a_source_outside_the_collection_roots_is_not_served(server, http, config, files, tmp_path, embedder_path):
    """A collection indexed by the library, following a link out of its folder: the file it reached is
    searchable, but the media route serves only what lies under the roots it was indexed from."""
    folder, outside = tmp_path / "linking", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (folder / "inside.png").write_bytes(png_bytes(64, 48, seed=5))
    (outside / "secret.png").write_bytes(png_bytes(64, 48, seed=6))
    (folder / "link.png").symlink_to(outside / "secret.png")
    collection = Collection("linked", catalog=Catalog(config.resolved_home()), model=str(embedder_path))
    collection.add([folder], workers=0)  # follow_symlinks=True: the link's target is indexed

    assert media_of(http, "linked", "inside.png").content == (folder / "inside.png").read_bytes()
    assert_clean_error(media_of(http, "linked", "secret.png"), 403, "outside the folders")
    assert collection.info()["roots"] == [str(folder.resolve())]


def test_a_collection_without_recorded_roots_is_served_from_the_server_roots(server, http, config, files, tmp_path,
                                                                              embedder_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.png").write_bytes(png_bytes(64, 48, seed=7))
    legacy = Collection("legacy", catalog=Catalog(config.resolved_home()), model=str(embedder_path))
    legacy.add([files["root"] / "docs", elsewhere], workers=0)
    meta = legacy.store.read_meta()
    del meta["roots"]  # as a collection indexed before roots were recorded
    legacy.store.write_meta(meta)

    assert media_of(http, "legacy", "picture.png").content == files["picture"].read_bytes()  # under --collections-root
    assert_clean_error(media_of(http, "legacy", "other.png"), 403, "outside the folders")


def test_a_range_header_with_thousands_of_digits(http):
    url = _media_url(http, "image")
    response = http.get(url, headers={"range": "bytes=" + "9" * 5000 + "-"})
    assert response.status_code == 200 and response.headers["content-length"] == str(len(response.content))


# ---------------------------------------------------------------- uploads

def test_uploads_with_one_name_are_both_kept(http):
    first, second = png_bytes(120, 90, seed=41), png_bytes(120, 90, seed=42)
    jobs = [http.post("/v1/collections/same/ingest", files=[("files", ("report.png", data, "image/png"))]).json()
            for data in (first, second)]
    for job in jobs:
        assert wait_for_job(http, job["job_id"])["status"] == "done"
    info = http.get("/v1/collections/same").json()
    assert info["items"] == 2 and info["files"] == 2


@pytest.mark.parametrize("name, kept", [("отчёт.png", "отчёт.png"), ("写真.png", "写真.png"),
                                        ("a" * 300 + ".png", ".png")])
def test_upload_names_keep_their_extension(http, name, kept):
    job = http.post("/v1/collections/names/ingest", files=[("files", (name, png_bytes(64, 64, seed=5), "image/png"))])
    report = wait_for_job(http, job.json()["job_id"])["report"]
    assert report["new"] == 1 and report["skipped"] == 0 and not report["failed"], report


# ---------------------------------------------------------------- text and numbers

def test_lone_surrogates_and_huge_numbers_are_client_errors(http):
    raw = b'{"input": "bad \\ud800 text"}'
    response = http.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"})
    assert_clean_error(response, 422, "not valid Unicode")
    frames = [png_bytes(32, 32, seed=i) for i in range(2)]
    from server_helpers import data_uri

    video = {"type": "video_url", "video_url": {"url": [data_uri(f) for f in frames]}, "max_frames": 10 ** 400}
    assert_clean_error(http.post("/v1/embeddings", json={"input": [[video]]}), 400, "max_frames")
    search = b'{"query": "\\udfff", "rerank": false}'
    response = http.post("/v1/collections/docs/search", content=search, headers={"content-type": "application/json"})
    assert_clean_error(response, 422, "not valid Unicode")


def test_the_library_refuses_lone_surrogates_by_item(embedder):
    with pytest.raises(InputError, match=r"item 1: text is not valid Unicode"):
        embedder.embed(["fine", "bad \ud800"])
    with pytest.raises(InputError, match="instruction is not valid Unicode"):
        embedder.embed([{"text": "x", "instruction": "\udfff"}])


# ---------------------------------------------------------------- slow clients

def test_half_open_and_slow_clients_are_disconnected(server):
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # headers never finished
        sockets.append(sock)
    body = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                 b"content-length: 100\r\n\r\n{\"input\"")  # the body stalls
    sockets.append(body)
    deadline = time.monotonic() + 8
    answers = []
    for sock in sockets:
        chunks = []
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        answers.append(b"".join(chunks))
        sock.close()
    assert all(a == b"" for a in answers[:20]), "a half-open connection was kept or answered"
    assert answers[20].startswith(b"HTTP/1.1 408"), answers[20][:200]
    with server.client() as http:
        assert http.get("/health").status_code == 200


# ---------------------------------------------------------------- images refused from their header

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR for ``width`` x ``height`` and a tiny, truncated IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def test_a_tall_image_is_refused_from_its_header():
    tall = _png_header_only(1, 63_000_000)  # under the pixel cap; decoding it would take gigabytes
    with pytest.raises(MediaError, match="too elongated"):  # decoding it would say "truncated" instead
        load_image(tall, MediaLimits())
    with pytest.raises(MediaError, match="too elongated"):
        load_image(_png_header_only(12_000, 10), MediaLimits())
    assert load_image(io.BytesIO(png_bytes(400, 2)).getvalue()).size == (400, 2)  # ratio 200 is still taken


def test_the_server_refuses_a_tall_image_before_decoding(http):
    from server_helpers import data_uri

    body = {"input": [[{"type": "image_url", "image_url": {"url": data_uri(_png_header_only(1, 63_000_000))}}]]}
    assert_clean_error(http.post("/v1/embeddings", json=body), 400, "too elongated")
