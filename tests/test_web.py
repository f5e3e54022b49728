"""The web page at ``/``, driven in headless Chromium (Playwright, the system's browser), and the
media route it plays videos from (``GET /v1/collections/{name}/items/{id}/media``: byte ranges,
only sources the collection indexed, behind the API key)."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from ingest_files import write_text_pdf, write_video  # noqa: E402
from server_helpers import assert_clean_error, wait_for_job, png_bytes, serve  # noqa: E402
from vlsearch.ingest import ExtractOptions  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KEY = "web-test-key"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("web-corpus")
    files = {"notes": d / "notes.txt", "picture": d / "picture.png", "other": d / "other.png",
             "upload": d / "new-upload.png", "query": d / "query.png", "broken": d / "broken.png"}
    files["notes"].write_text("Notes about penguins, glaciers and the southern ocean. " * 4)
    for i, name in enumerate(("picture", "other", "upload", "query")):
        files[name].write_bytes(png_bytes(160, 120, seed=20 + i))
    files["broken"].write_bytes(b"not a png at all")
    files["pdf"] = write_text_pdf(d / "report.pdf", 2, text="Quarterly revenue")
    files["video"] = write_video(d / "clip.webm", frames=48, fps=8, codec="libvpx")  # 6 s: 3 segments of 2 s
    return files


@pytest.fixture(scope="module")
def server(embedder_path, reranker_path, embedder, corpus, tmp_path_factory):
    from vlsearch.collection import Collection

    home = tmp_path_factory.mktemp("web-home")
    # the collection's layout (2 s video segments) is set by its first add; the server keeps it
    Collection(str(home / "collections" / "web"), model=str(embedder_path), loaded_embedder=embedder).add(
        [corpus["notes"]], options=ExtractOptions(segment_seconds=2.0), workers=0)
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=home, ingest_workers=0)
    with serve(config) as running, running.client() as http:
        for name, keys in (("web", ("picture", "pdf", "video")), ("other", ("other",))):
            files = [("files", (corpus[k].name, corpus[k].read_bytes())) for k in keys]
            job = wait_for_job(http, http.post(f"/v1/collections/{name}/ingest", files=files).json()["job_id"])
            assert job["status"] == "done" and not job["report"]["failed"], job
        yield running


def items(http, collection: str, where: str) -> list[dict]:
    body = {"query": "anything", "rerank": False, "top_k": 50, "where": where, "thumbnails": False}
    response = http.post(f"/v1/collections/{collection}/search", json=body)
    assert response.status_code == 200, response.text
    return sorted(response.json()["results"], key=lambda r: (r["start"] or 0, r["page"] or 0))


# ------------------------------------------------------------------ the media route, over HTTP

def test_media_serves_byte_ranges_of_indexed_sources(http, corpus):
    clips = items(http, "web", "modality = 'video'")
    assert [(c["start"], c["end"]) for c in clips] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    data = corpus["video"].read_bytes()
    url = f"/v1/collections/web/items/{clips[1]['id']}/media"
    whole = http.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/webm" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["x-content-type-options"] == "nosniff"
    size = len(data)
    ranges = {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1),
              f"bytes=10-{size + 500}": (10, size - 1)}
    for asked, (start, end) in ranges.items():
        part = http.get(url, headers={"range": asked})
        assert part.status_code == 206, (asked, part.status_code)
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert part.content == data[start:end + 1] and int(part.headers["content-length"]) == end - start + 1
    outside = http.get(url, headers={"range": f"bytes={size}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{size}"
    pages = items(http, "web", "modality = 'pdf_page'")
    pdf = http.get(f"/v1/collections/web/items/{pages[0]['id']}/media")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-security-policy"] == "sandbox"


def test_media_refuses_unknown_foreign_text_and_changed_items(http, corpus):
    other = items(http, "other", "modality = 'image'")[0]["id"]
    assert http.get(f"/v1/collections/other/items/{other}/media").status_code == 200
    assert_clean_error(http.get(f"/v1/collections/web/items/{other}/media"), 404, "no item")  # not this collection's
    for bad in ("0" * 32, "..", "%2E%2E%2Fetc%2Fpasswd", "x'%20OR%20'1'='1"):
        assert http.get(f"/v1/collections/web/items/{bad}/media").status_code == 404, bad
    assert_clean_error(http.get(f"/v1/collections/nope/items/{other}/media"), 404, "no collection")
    text = items(http, "web", "modality = 'text'")[0]["id"]
    assert_clean_error(http.get(f"/v1/collections/web/items/{text}/media"), 404, "no media")
    clip = items(http, "web", "modality = 'video'")[0]
    stat = os.stat(clip["source"])
    try:
        os.utime(clip["source"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched since indexing
        assert_clean_error(http.get(f"/v1/collections/web/items/{clip['id']}/media"), 404, "changed")
    finally:
        os.utime(clip["source"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert http.get(f"/v1/collections/web/items/{clip['id']}/media").status_code == 200


def test_media_serves_crops_of_regions_within_the_same_checks(http):
    from PIL import Image

    found = http.post("/v1/collections/web/search", json={"query": "quarterly revenue", "rerank": False, "top_k": 50,
                                                          "where": "modality = 'pdf_page'", "thumbnails": False})
    pages = sorted(found.json()["results"], key=lambda r: r["page"])
    region = pages[0]["regions"][0]
    assert region["text"] == "Quarterly revenue" and region["kind"] == "text" and 0 < region["norm"][0] < 1
    url = f"/v1/collections/web/items/{pages[0]['id']}/media"
    by_index = http.get(url, params={"region": 0, "query": "quarterly revenue"})
    by_box = http.get(url, params={"box": ",".join(map(str, region["box"]))})
    assert by_index.status_code == by_box.status_code == 200 and by_index.content == by_box.content
    assert by_box.headers["content-type"] == "image/png" and by_box.headers["x-content-type-options"] == "nosniff"
    crop = Image.open(io.BytesIO(by_box.content))
    x0, y0, x1, y1 = region["box"]
    assert crop.size == (x1 - x0, y1 - y0) and min(crop.convert("L").getextrema()) < 100  # the words' ink
    whole = Image.open(io.BytesIO(http.get(url, params={"box": "-50,-50,99999,99999"}).content))
    assert whole.size == (pages[0]["metadata"]["width"], pages[0]["metadata"]["height"])  # kept inside the page
    picture = items(http, "web", "modality = 'image'")[0]["id"]
    small = http.get(f"/v1/collections/web/items/{picture}/media", params={"box": "10,20,50,60"})
    assert Image.open(io.BytesIO(small.content)).size == (40, 40)
    clip = items(http, "web", "modality = 'video'")[0]["id"]
    for target, params, status, fragment in [
            (url, {"box": "1,2,3"}, 400, "four numbers"), (url, {"box": "5,5,5,9"}, 400, "no pixels"),
            (url, {"region": 3, "query": "revenue"}, 400, "gives 1 regions"), (url, {"region": "x"}, 422, "region"),
            (url, {"region": 0, "box": "0,0,9,9"}, 400, "not both"), (url, {"region": 0}, 400, "needs the query"),
            (f"/v1/collections/web/items/{clip}/media", {"box": "0,0,9,9"}, 400, "only pages")]:
        assert_clean_error(http.get(target, params=params), status, fragment)
    stat = os.stat(pages[0]["source"])
    try:
        os.utime(pages[0]["source"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched since indexing
        assert_clean_error(http.get(url, params={"box": "0,0,9,9"}), 404, "changed")
    finally:
        os.utime(pages[0]["source"], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_media_needs_the_api_key(embedder_path, tmp_path, corpus):
    config = ServerConfig(model=str(embedder_path), no_reranker=True, home=tmp_path / "home", api_keys=(KEY,),
                          ingest_workers=0)
    with serve(config) as running, running.client(authorization=f"Bearer {KEY}") as http:
        files = [("files", (corpus["picture"].name, corpus["picture"].read_bytes()))]
        job = wait_for_job(http, http.post("/v1/collections/keyed/ingest", files=files).json()["job_id"])
        assert job["status"] == "done", job
        item = items(http, "keyed", "modality = 'image'")[0]["id"]
        url = f"/v1/collections/keyed/items/{item}/media"
        with running.client() as anonymous:
            assert_clean_error(anonymous.get(url), 401, "API key")
            assert_clean_error(anonymous.get(url, headers={"authorization": "Bearer wrong"}), 401)
            assert anonymous.get(url, headers={"x-api-key": KEY}).content == corpus["picture"].read_bytes()
            page = anonymous.get("/")  # the page and its files need no key
            assert page.status_code == 200 and '<script type="module" src="static/app.js">' in page.text
            script = anonymous.get("/static/app.js")
            assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert http.get(url).status_code == 200


# ------------------------------------------------------------------ the page, in Chromium

@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium executable (Debian: apt-get install chromium); the browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.wait_for_selector("#collection option[value=web]", state="attached")
    page.select_option("#collection", "web")
    yield page
    context.close()
    assert not errors, errors


def run_search(page, query: str = "quarterly revenue", **fields: str) -> None:
    page.fill("#query", query)
    for selector, value in fields.items():
        page.fill(f"#{selector.replace('_', '-')}", value)
    page.evaluate("document.querySelector('#summary').textContent = ''")
    page.press("#query", "Enter")
    page.wait_for_function("() => /results in|No results/.test(document.querySelector('#summary').textContent)"
                           " || !document.querySelector('#message').hidden")


def test_search_shows_cards_scores_and_errors(page):
    run_search(page, top_k="20")
    cards = page.locator("#results .card")
    assert cards.count() == 1 + 1 + 2 + 3  # text, image, pdf pages, video segments
    assert "all reranked" in page.text_content("#summary")
    notes = page.locator("#results .card[data-modality=pdf_page] .note").all_text_contents()
    assert notes == ["reranked at 262,144 pixels (rerank_inputs=cheap)"] * 2  # what the reranker saw, on a CPU
    modalities = sorted(cards.nth(i).get_attribute("data-modality") for i in range(cards.count()))
    assert modalities == ["image", "pdf_page", "pdf_page", "text", "video", "video", "video"]
    thumbs = page.locator("#results .thumb img")
    assert thumbs.count() == 6 and all(thumbs.nth(i).get_attribute("src").startswith("data:image/jpeg;base64,")
                                       for i in range(6))
    assert page.locator("#results img").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    locators = page.locator("#results .locator").all_text_contents()
    assert {"page 1, line 1", "page 2, line 1", "0:00 – 0:02", "0:02 – 0:04", "0:04 – 0:06"} == set(locators)
    assert set(page.locator("#results .source").all_text_contents()) == {"notes.txt", "picture.png", "report.pdf",
                                                                         "clip.webm"}
    assert page.locator(".vector-score").count() == 7 and page.locator(".rerank-score").count() == 7
    assert all(re.fullmatch(r"\d\.\d{3}", s) for s in page.locator(".rerank-score").all_text_contents())

    page.uncheck("#rerank")
    run_search(page)
    assert "vector scores only" in page.text_content("#summary")
    assert page.locator(".vector-score").count() == 7 and page.locator(".rerank-score").count() == 0

    run_search(page, where="nope = 1")
    message = page.locator("#message")
    assert message.is_visible() and "nope" in message.text_content() and page.locator(".card").count() == 0
    run_search(page, where="modality = 'pdf_page'")  # a good search clears the error
    assert not message.is_visible() and page.locator(".card").count() == 2


def test_search_modes_and_highlighted_words(page):
    """The mode selector reaches the server, and the query's words are marked in the snippets."""
    page.select_option("#mode", "lexical")
    page.uncheck("#rerank")
    run_search(page, query="penguins glaciers")
    cards = page.locator("#results .card")
    assert cards.count() == 1 and cards.first.get_attribute("data-modality") == "text"
    marks = page.locator("#results .card mark").all_text_contents()
    assert {m.lower() for m in marks} == {"penguins", "glaciers"} and len(marks) >= 2
    assert page.locator(".lexical-score").count() == 1 and page.locator(".vector-score").count() == 0
    page.select_option("#mode", "dense")
    run_search(page, query="penguins glaciers", top_k="20")
    assert page.locator(".card").count() == 7 and page.locator(".lexical-score").count() == 0
    page.select_option("#mode", "hybrid")
    run_search(page, query="penguins glaciers", top_k="20")
    assert page.locator(".card").count() == 7 and page.locator(".lexical-score").count() >= 1
    page.evaluate("document.querySelector('#query').value = '<img src=x onerror=alert(1)> penguins'")
    run_search(page, query="<img src=x onerror=alert(1)> penguins")
    assert page.locator("#results .card img[src=x]").count() == 0  # the query is text, never markup


def test_regions_are_drawn_over_the_page_and_link_to_their_crops(page):
    page.uncheck("#rerank")
    run_search(page, query="quarterly revenue", where="modality = 'pdf_page'")
    cards = page.locator(".card[data-modality=pdf_page]")
    assert cards.count() == 2 and set(page.locator("#results .locator").all_text_contents()) == {
        "page 1, line 1", "page 2, line 1"}
    region = cards.first.locator(".region")
    assert region.count() == 1 and "Quarterly revenue" in region.get_attribute("title")
    box, img = region.bounding_box(), cards.first.locator(".thumb img").bounding_box()
    assert img["x"] <= box["x"] and box["x"] + box["width"] <= img["x"] + img["width"] + 1
    assert img["y"] <= box["y"] and box["y"] + box["height"] <= img["y"] + img["height"] + 1
    assert box["width"] > 3 * box["height"] > 0  # a line of words, drawn where the thumbnail has them
    crop = page.request.get(region.get_attribute("href"))
    assert crop.status == 200 and crop.headers["content-type"] == "image/png"


def test_video_result_plays_from_its_start(page):
    run_search(page, query="a clip", where="modality = 'video' AND start >= 2", top_k="10")
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.split("#")[0].endswith("/media") else None)
    card = page.locator(".card[data-modality=video]", has_text="0:02 – 0:04")
    card.get_by_role("button", name=re.compile("^Play clip.webm from 0:02")).click()
    assert page.locator("#player").is_visible()
    page.wait_for_function("() => document.querySelector('#player-video').readyState >= 1", timeout=15000)
    time_now = page.evaluate("document.querySelector('#player-video').currentTime")
    assert 2.0 - 0.05 <= time_now <= 2.0 + 1.0, time_now
    assert statuses and set(statuses) == {206}, statuses  # the browser reads the file by byte ranges
    assert "0:02 – 0:04" in page.text_content("#player-title")
    page.keyboard.press("Escape")
    assert not page.locator("#player").is_visible()


def test_video_result_plays_from_its_moment(page):
    """With "Moments" on, the request asks for them and the player seeks to the moment the server gives
    (here a moment set inside the segment, as a longer segment would have one)."""
    sent: list[dict] = []

    def with_moment(route):
        sent.append(route.request.post_data_json)
        answer = route.fetch().json()
        for r in answer["results"]:
            r["moment"] = {"start": r["start"] + 1.0, "end": r["start"] + 1.8, "score": 0.5}
        route.fulfill(json=answer)

    page.route("**/v1/collections/web/search", with_moment)
    page.check("#moments")
    run_search(page, query="a clip", where="modality = 'video' AND start >= 2", top_k="10")
    assert sent[-1]["moments"] is True
    card = page.locator(".card[data-modality=video]", has_text="0:02 – 0:04, best 0:03 – 0:03.8")
    card.get_by_role("button", name=re.compile("^Play clip.webm from 0:03")).click()
    page.wait_for_function("() => document.querySelector('#player-video').readyState >= 1", timeout=15000)
    time_now = page.evaluate("document.querySelector('#player-video').currentTime")
    assert 3.0 - 0.05 <= time_now <= 3.0 + 0.8, time_now
    assert "0:03 – 0:03.8" in page.text_content("#player-title")


def test_upload_shows_progress_and_failures_then_image_search(page, corpus, http):
    before = http.get("/v1/collections/web").json()["items"]
    assert page.input_value("#upload-collection") == "web"
    page.set_input_files("#upload-files", [str(corpus["upload"]), str(corpus["broken"])])
    assert page.locator("#job").is_visible()
    page.wait_for_selector("#job[data-status=done]", timeout=30000)
    status = page.text_content("#job-status")
    assert status == "Done: 2 files, 1 items embedded; 2 new, 0 changed, 0 unchanged, 0 skipped, 1 failed", status
    assert page.evaluate("document.querySelector('#job-progress').value") == 2
    assert page.locator("#job-failures li").all_text_contents()[0].startswith("broken.png: ")
    assert http.get("/v1/collections/web").json()["items"] == before + 1
    page.wait_for_function("() => document.querySelector('#collection-info').textContent.startsWith('8 items')")

    page.set_input_files("#query-image", str(corpus["upload"]))  # a query image from the file picker
    page.wait_for_selector("#query-preview:not([hidden]) img[src^='data:image/png']")
    page.uncheck("#rerank")
    run_search(page, query="", top_k="20")
    assert "new-upload.png" in page.locator("#results .source").all_text_contents()
    page.click("#clear-image")
    assert not page.locator("#query-preview").is_visible()

    page.evaluate("""async (b64) => {  // a pasted clipboard image becomes the query image
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'pasted.png', {type: 'image/png'}));
        document.querySelector('#query').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }""", __import__("base64").b64encode(corpus["query"].read_bytes()).decode())
    page.wait_for_selector("#query-preview:not([hidden]) img[src^='data:image/png']")
    run_search(page, query="", top_k="3")
    assert page.locator(".card").count() == 3 and page.input_value("#query") == ""


def test_api_key_is_sent_and_kept(browser, embedder_path, tmp_path, corpus):
    config = ServerConfig(model=str(embedder_path), no_reranker=True, home=tmp_path / "home", api_keys=(KEY,),
                          ingest_workers=0)
    with serve(config) as running:
        context = browser.new_context(base_url=running.url)
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("#message:not([hidden])")
        assert "API key" in page.text_content("#message")
        page.click("#settings summary")
        page.fill("#api-key", KEY)
        page.press("#api-key", "Enter")  # change: saved, the collections load again
        page.wait_for_selector("#message[hidden]", state="attached")
        page.fill("#upload-collection", "keyed")
        page.set_input_files("#upload-files", [str(corpus["picture"]), str(corpus["video"])])
        page.wait_for_selector("#job[data-status=done]", timeout=30000)
        try:
            page.wait_for_selector("#collection option[value=keyed]", state="attached")
        except Exception as exc:  # say what the page showed, for a failure seen once under load
            raise AssertionError(f"no 'keyed' collection listed; job: {page.text_content('#job')!r}, "
                                 f"message: {page.text_content('#message')!r}") from exc
        page.reload()
        assert page.input_value("#api-key") == KEY  # kept in localStorage
        page.wait_for_selector("#rerank:disabled:not(:checked)")  # no reranker on this server
        page.wait_for_selector("#collection option[value=keyed]", state="attached")
        run_search(page, query="a picture")
        assert page.locator(".card").count() == 2 and page.locator(".rerank-score").count() == 0
        page.get_by_role("button", name=re.compile("^Play clip.webm")).click()  # fetched with the key
        page.wait_for_function("() => document.querySelector('#player-video').readyState >= 1", timeout=15000)
        assert page.evaluate("document.querySelector('#player-video').src").startswith("blob:")
        context.close()


def test_watched_collection_state_and_source_names(browser, embedder_path, tmp_path, monkeypatch):
    """``serve --watch``: the page shows the watcher's state and follows it; cards name a bucket object by
    its URI and an archive member from its archive down."""
    from source_helpers import AWS_VARIABLES, moto_server, s3_client, s3_environment, zip_bytes
    from vlsearch.collection import Collection

    pytest.importorskip("watchdog")
    pytest.importorskip("moto")
    home, folder = tmp_path / "home", tmp_path / "watched"
    folder.mkdir()
    (folder / "pack.zip").write_bytes(zip_bytes({"dir/memo.txt": b"A memo about walruses."}))
    config = ServerConfig(model=str(embedder_path), no_reranker=True, home=home, ingest_workers=0,
                          watch_paths=(folder,), watch_collection="live", watch_debounce=0.3)
    with moto_server() as endpoint:
        for name in AWS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in s3_environment(endpoint).items():
            monkeypatch.setenv(name, value)
        s3_client(endpoint).create_bucket(Bucket="web-bucket")
        s3_client(endpoint).put_object(Bucket="web-bucket", Key="docs/seals.txt", Body=b"A note about seals.")
        Collection(str(home / "collections" / "cloud"), model=str(embedder_path)).add(["s3://web-bucket/docs"],
                                                                                     workers=0)
        with serve(config) as running:
            context = browser.new_context(base_url=running.url)
            page = context.new_page()
            page.goto("/")
            page.wait_for_selector("#collection option[value=live]", state="attached")
            page.select_option("#collection", "live")
            page.wait_for_function("() => /1 indexed/.test(document.querySelector('#watch-info').textContent)")
            assert "watching 1 folder" in page.text_content("#watch-info")
            run_search(page, query="walruses")
            assert page.locator("#results .source").all_text_contents() == ["pack.zip!/dir/memo.txt"]
            (folder / "new.txt").write_text("A new note about walruses.")
            page.wait_for_function("() => /2 indexed/.test(document.querySelector('#watch-info').textContent)",
                                   timeout=30000)
            page.select_option("#collection", "cloud")
            page.wait_for_selector("#watch-info", state="hidden")
            run_search(page, query="seals")
            assert page.locator("#results .source").all_text_contents() == ["s3://web-bucket/docs/seals.txt"]
            context.close()
