"""Every kind of input the API accepts, and a clear error for every bad one."""

from __future__ import annotations

import base64
import http.server
import threading

import numpy as np
import pytest
from PIL import Image

from vlsearch import Embedder, FetchPolicy, InputError, Item, MediaError, MediaLimits
from vlsearch.errors import FetchError


def test_all_image_source_forms_give_one_vector(embedder, media):
    path = media["small"]
    data = path.read_bytes()
    forms = [str(path), path, "file://" + str(path), data,
             "data:image/png;base64," + base64.b64encode(data).decode(), Image.open(path)]
    vectors = embedder.embed([{"image": f} for f in forms])
    for row in vectors[1:]:
        assert np.array_equal(row, vectors[0])


def test_item_dataclass_and_plain_strings(embedder, media):
    a = embedder.embed([Item(text="hello", instruction="Find it.")])
    b = embedder.embed([{"text": "hello", "instruction": "Find it."}])
    assert np.array_equal(a, b)
    assert np.array_equal(embedder.embed("plain"), embedder.embed([{"text": "plain"}]))


def test_list_of_videos_and_frame_bytes(embedder, media):
    frames = [media[f"frame{i}"].read_bytes() for i in range(3)]
    one = embedder.embed([{"video": frames}])
    paths = embedder.embed([{"video": [str(media[f"frame{i}"]) for i in range(3)]}])
    assert np.array_equal(one, paths)
    two = embedder.embed([{"video": [str(media["video"]), [str(media["frame0"]), str(media["frame1"])]]}])
    assert two.shape == (1, embedder.dim)


BAD = {
    "missing file": ({"image": "/nonexistent/picture.png"}, MediaError, "no such file"),
    "corrupt image": ("truncated_png", MediaError, "corrupt or truncated"),
    "not an image": ("not_image", MediaError, "not an image"),
    "zero bytes": ("empty", MediaError, "empty file"),
    "decompression bomb": ("bomb", MediaError, "decompression bomb"),
    "empty item": ({}, InputError, "empty item"),
    "blank text": ({"text": "   "}, InputError, "empty item"),
    "unknown key": ({"txt": "typo"}, InputError, "unknown item keys"),
    "unsupported type": (42, InputError, "must be a dict"),
    "image of wrong type": ({"image": 3.5}, MediaError, "unsupported media type"),
    "undecodable video": ({"video": "NOT_VIDEO"}, MediaError, "not a readable video"),
    "truncated video": ({"video": "TRUNC_VIDEO"}, MediaError, "truncated video"),
    "loopback url": ({"image": "http://127.0.0.1:9/x.png"}, FetchError, "loopback"),
    "metadata url": ({"image": "http://169.254.169.254/latest/meta-data/"}, FetchError, "169.254.169.254"),
    "private url": ({"image": "http://10.1.2.3/x.png"}, FetchError, "10.1.2.3"),
    "ftp scheme": ({"image": "ftp://example.com/x.png"}, FetchError, "scheme"),
}


def _bad_item(spec, media):
    if isinstance(spec, str) and spec in media:
        return {"image": str(media[spec])}
    if isinstance(spec, dict) and spec.get("video") == "NOT_VIDEO":
        return {"video": str(media["not_video"])}
    if isinstance(spec, dict) and spec.get("video") == "TRUNC_VIDEO":
        return {"video": str(media["truncated_video"])}
    return spec


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_item_and_reason(embedder, media, case):
    spec, error, reason = BAD[case]
    items = [{"text": "fine"}, {"image": str(media["small"])}, _bad_item(spec, media)]
    with pytest.raises(error) as info:
        embedder.embed(items)
    message = str(info.value)
    assert message.startswith("item 2:"), message
    assert reason in message, message
    assert "NULL" not in message


def test_bad_document_in_rerank_names_it(reranker, media):
    with pytest.raises(MediaError, match=r"^item 1: .*not an image"):
        reranker.score("q", ["fine", {"image": str(media["not_image"])}])
    with pytest.raises(InputError, match=r"^query: empty item"):
        reranker.score({"text": ""}, ["doc"])


def test_image_over_pixel_limit(embedder_path, media):
    strict = Embedder(embedder_path, limits=MediaLimits(max_image_pixels=100 * 100))
    with pytest.raises(MediaError, match=r"item 0: .*700x500 = 350000 pixels, over the limit of 10000"):
        strict.embed([{"image": str(media["large"])}])


def test_urls_disabled_by_limits(embedder_path):
    offline = Embedder(embedder_path, limits=MediaLimits(fetch=None))
    with pytest.raises(MediaError, match="URL inputs are disabled"):
        offline.embed([{"image": "https://example.com/a.png"}])


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture()
def image_server(media):
    big = b"x" * 300_000

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/ok.png":
                body, status, headers = media["small"].read_bytes(), 200, {}
            elif self.path == "/big.png":
                body, status, headers = big, 200, {}
            elif self.path == "/to-metadata":
                body, status, headers = b"", 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
            elif self.path == "/to-loopback":
                body, status, headers = b"", 302, {"Location": "http://127.0.0.1:1/x.png"}
            else:
                body, status, headers = b"no", 404, {}
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_url_fetch_with_allowlist_redirect_guard_and_cap(embedder_path, embedder, media, image_server):
    port = image_server
    policy = FetchPolicy(allow_hosts=frozenset({f"127.0.0.1:{port}"}), timeout=2.0, max_bytes=100_000)
    web = Embedder(embedder_path, limits=MediaLimits(fetch=policy))
    fetched = web.embed([{"image": f"http://127.0.0.1:{port}/ok.png"}])
    assert np.array_equal(fetched, embedder.embed([{"image": str(media["small"])}]))
    for path, reason in [("/to-metadata", "169.254.169.254"), ("/to-loopback", "loopback"),
                         ("/big.png", "larger than"), ("/missing.png", "404")]:
        with pytest.raises(FetchError, match=reason):
            web.embed([{"image": f"http://127.0.0.1:{port}{path}"}])
    with pytest.raises(FetchError, match="loopback"):  # the server itself, without the allowlist
        embedder.embed([{"image": f"http://127.0.0.1:{port}/ok.png"}])


def test_no_partial_result_on_error(embedder, media):
    items = [{"text": f"t{i}"} for i in range(300)] + [{"image": str(media["not_image"])}]
    with pytest.raises(MediaError, match="item 300"):
        embedder.embed(items)
