"""``vlsearch mcp`` with the MCP SDK's own client: over streamable HTTP on loopback (behind the API key)
and over stdio with the command started as a subprocess. Answers are compared with the library's own
search; bad arguments must come back as tool errors naming the argument, with the session alive."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import sys
from pathlib import Path

import anyio
import pytest
from PIL import Image

pytest.importorskip("mcp")
pytest.importorskip("fastapi")

from agent_corpus import NAME, open_collection  # noqa: E402
from server_helpers import data_uri, png_bytes, serve_app  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

KEY = "test-key-0123456789"
TOOLS = {"list_collections", "collection_info", "search", "get_item", "ingest", "job_status"}


@pytest.fixture(scope="module")
def collection(indexed, embedder, reranker):
    return open_collection(indexed, embedder, reranker)


@pytest.fixture(scope="module")
def config(indexed, reranker_path, tmp_path_factory):
    inbox = tmp_path_factory.mktemp("inbox")
    (inbox / "more.txt").write_text("Walruses rest on ice floes in the Arctic. " * 4)
    return ServerConfig(model=indexed.model, reranker=str(reranker_path), home=indexed.home, api_keys=(KEY,),
                        collections_roots=(inbox,), ingest_workers=0, max_media_bytes=200_000,
                        max_image_pixels=1_000_000)


@pytest.fixture(scope="module")
def mcp_url(config, embedder, reranker):
    from vlsearch.mcp import create_mcp_server, http_app
    from vlsearch.server.runtime import Models

    server, tools = create_mcp_server(config, models=Models(config, embedder=embedder, reranker=reranker))
    try:
        with serve_app(http_app(server, config), config) as running:
            yield running.url + "/mcp"
    finally:
        tools.close()


def call_all(url_or_params, calls, key=KEY):
    """Run ``calls(client)`` (an async function) in one MCP session; its return value."""
    from mcp import Client

    async def main():
        if isinstance(url_or_params, str):
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
            async with http, Client(streamable_http_client(url_or_params, http_client=http)) as client:
                return await calls(client)
        async with Client(url_or_params, read_timeout_seconds=120) as client:
            return await calls(client)

    return anyio.run(main)


def texts(result):
    return [b.text for b in result.content if b.type == "text"]


def images(result):
    return [Image.open(io.BytesIO(base64.b64decode(b.data))) for b in result.content if b.type == "image"]


MODES = ("dense", "lexical", "hybrid")


def test_tools_and_search_over_http(mcp_url, collection):
    async def calls(client):
        tools = await client.list_tools()
        listed = await client.call_tool("list_collections", {})
        info = await client.call_tool("collection_info", {"collection": NAME})
        found = await client.call_tool("search", {"collection": NAME, "query": "penguins on glaciers", "top_k": 6})
        by_words = [await client.call_tool("search", {"collection": NAME, "query": "penguins on glaciers",
                                                      "rerank": False, "mode": mode}) for mode in MODES]
        return tools, listed, info, found, by_words

    tools, listed, info, found, by_words = call_all(mcp_url, calls)
    assert [texts(result)[0].split(", ", 1)[1] for result in by_words] == \
        ["by vector similarity.", "by BM25.", "by vector similarity and BM25 (fused)."]
    assert {t.name for t in tools.tools} == TOOLS
    search_tool = next(t for t in tools.tools if t.name == "search")
    assert search_tool.description.startswith("Two-stage search of a collection")
    assert all("\n " not in t.description for t in tools.tools)  # no docstring indentation
    schema = search_tool.input_schema["properties"]
    assert schema["top_k"]["type"] == "integer" and schema["top_k"]["maximum"] == 100
    assert NAME in [c["name"] for c in listed.structured_content["collections"]]
    assert info.structured_content["items"] == 6 and not info.is_error

    want = collection.search("penguins on glaciers", top_k=6)
    results = found.structured_content["results"]
    assert [(r["id"], r["score"], r["rerank_score"]) for r in results] == [(r.id, r.score, r.rerank_score) for r in want]
    blocks = texts(found)
    assert blocks[0].startswith("6 results from collection 'docs', reranked")
    for block, r in zip(blocks[1:], want):
        assert block.startswith(f"#{r.rank} score {r.score:.4f} (rerank ")
        assert f"id: {r.id}" in block and r.source in block
    pdf = next(b for b in blocks if "modality: pdf_page" in b)
    assert ", page " in pdf and "Quarterly revenue table" in pdf
    video = next(b for b in blocks if "modality: video" in b)
    assert "0:00.0-0:05.0 (0.0-5.0 s)" in video or "0:05.0-0:10.0 (5.0-10.0 s)" in video
    thumbs = images(found)
    assert len(thumbs) == sum(1 for r in want if r.thumbnail) and all(t.format == "JPEG" for t in thumbs)


def test_image_search_and_get_item(mcp_url, collection, indexed):
    picture = indexed.files["image"].read_bytes()
    pdf_page = next(r for r in collection.search("revenue", top_k=6, rerank=False) if r.modality == "pdf_page")
    segment = next(r for r in collection.search("clip", top_k=6, rerank=False) if r.modality == "video")
    chunk = next(r for r in collection.search("penguins", top_k=6, rerank=False) if r.modality == "text")

    async def calls(client):
        by_image = await client.call_tool("search", {"collection": NAME, "image": data_uri(picture), "rerank": False,
                                                     "top_k": 2, "thumbnails": False})
        page = await client.call_tool("get_item", {"collection": NAME, "id": pdf_page.id})
        video = await client.call_tool("get_item", {"collection": NAME, "id": segment.id, "frames": 3})
        text = await client.call_tool("get_item", {"collection": NAME, "id": chunk.id})
        return by_image, page, video, text

    by_image, page, video, text = call_all(mcp_url, calls)
    want = collection.search(image=picture, top_k=2, rerank=False)
    assert [r["id"] for r in by_image.structured_content["results"]] == [r.id for r in want]
    assert not images(by_image) and "by vector similarity" in texts(by_image)[0]

    (view,) = images(page)
    assert view.width % 32 == 0 and view.height % 32 == 0  # resized as the model sees it
    assert f"image: {view.width}x{view.height} pixels" in texts(page)[0]
    assert "Quarterly revenue table" in texts(page)[0] and page.structured_content["page"] == pdf_page.page

    frames = images(video)
    times = video.structured_content["frame_times"]
    assert len(frames) == len(times) == 3 and segment.start <= times[0] < times[-1] < segment.end
    assert f"{segment.start:.1f}-{segment.end:.1f} s" in texts(video)[0]
    assert not images(text) and texts(text)[0].endswith(chunk.text)


def test_search_regions_and_get_item_crops(mcp_url, collection):
    """Search results carry the query's regions; get_item shows just a region's crop, at its size."""
    query = "quarterly revenue"

    async def calls(client):
        found = await client.call_tool("search", {"collection": NAME, "query": query, "rerank": False,
                                                  "mode": "lexical", "top_k": 2, "thumbnails": False})
        page = found.structured_content["results"][0]
        crops = [await client.call_tool("get_item", {"collection": NAME, "id": page["id"], **args}) for args in (
            {"region": 0, "query": query}, {"box": "0,0,40,30"}, {"region": 5, "query": query},
            {"box": "1,2,3"}, {"region": 0, "box": "0,0,4,4", "query": query})]
        return found, page, crops

    found, page, (region, box, beyond, malformed, both) = call_all(mcp_url, calls)
    assert page["modality"] == "pdf_page" and page["regions"][0]["text"] == "Quarterly revenue"
    assert "query words at: line 1, 1 regions" in texts(found)[1]
    (crop,) = images(region)
    x0, y0, x1, y1 = page["regions"][0]["box"]
    assert crop.size == (x1 - x0, y1 - y0) and "crop: " in texts(region)[0]
    assert images(box)[0].size == (40, 30)
    assert beyond.is_error and "region: region 5: the query 'quarterly revenue' gives 1 regions" in texts(beyond)[0]
    assert malformed.is_error and "box: box must be four numbers" in texts(malformed)[0]
    assert both.is_error and "not both" in texts(both)[0]


def test_bad_arguments_are_tool_errors_naming_the_argument(mcp_url):
    huge = data_uri(os.urandom(300_000))
    big = data_uri(png_bytes(1200, 1000))  # under the byte cap, over the pixel cap

    async def calls(client):
        out = {}
        for name, tool, args in [
            ("unknown", "search", {"collection": "nope", "query": "x"}),
            ("bad_name", "collection_info", {"collection": "../etc"}),
            ("type", "search", {"collection": NAME, "query": "x", "top_k": "ten"}),
            ("range", "search", {"collection": NAME, "query": "x", "top_k": 0}),
            ("missing", "search", {"query": "x"}),
            ("oversize", "search", {"collection": NAME, "image": huge}),
            ("pixels", "search", {"collection": NAME, "image": big}),
            ("path", "search", {"collection": NAME, "image": "/etc/passwd"}),
            ("url", "search", {"collection": NAME, "image": "https://example.com/a.png"}),
            ("where", "search", {"collection": NAME, "query": "x", "where": "secret = 1"}),
            ("empty", "search", {"collection": NAME, "query": "  "}),
            ("like", "search", {"collection": NAME, "like": "f" * 32}),
            ("item", "get_item", {"collection": NAME, "id": "f" * 32}),
            ("frames", "get_item", {"collection": NAME, "id": "x", "frames": 99}),
            ("job", "job_status", {"job_id": "nope"}),
            ("outside", "ingest", {"collection": "more", "paths": ["/etc"]}),
            ("paths_type", "ingest", {"collection": "more", "paths": "not-a-list"}),
        ]:
            out[name] = await client.call_tool(tool, args)
        out["still_alive"] = await client.call_tool("list_collections", {})
        return out

    out = call_all(mcp_url, calls)
    expected = {
        "unknown": "collection: no collection 'nope'", "bad_name": "collection: invalid collection name",
        "type": "top_k: Input should be a valid integer", "range": "top_k: Input should be greater",
        "missing": "collection: required", "oversize": "image: data:", "pixels": "image: ",
        "path": "image: '/etc/passwd': media must be a data URI", "url": "image: 'https://example.com/a.png'",
        "where": "where: ", "empty": "query: give a query text", "like": "like: no item",
        "item": "id: no item", "frames": "frames: Input should be less than or equal to 16",
        "job": "job_id: no job 'nope'", "outside": "paths: '/etc' is outside the allowed roots",
        "paths_type": "paths: Input should be a valid list",
    }
    for name, fragment in expected.items():
        result = out[name]
        assert result.is_error, (name, texts(result))
        assert fragment in texts(result)[0], (name, texts(result))
        assert "Traceback" not in texts(result)[0] and len(texts(result)[0]) < 1000, name
    assert "larger than 200000 bytes" in texts(out["oversize"])[0]
    assert "over the limit of 1000000" in texts(out["pixels"])[0]
    assert "URL inputs are disabled" in texts(out["url"])[0]
    assert not out["still_alive"].is_error


def test_http_needs_the_key_and_refuses_cross_site_requests(mcp_url):
    import httpx

    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"accept": "application/json, text/event-stream"}
    assert httpx.post(mcp_url, json=hello, headers=headers).status_code == 401
    cross = httpx.post(mcp_url, json=hello, headers={**headers, "authorization": f"Bearer {KEY}",
                                                     "origin": "https://evil.example"})
    assert cross.status_code == 403 and "another origin" in cross.json()["error"]["message"]


def test_stdio_subprocess_search_ingest_and_poll(indexed, reranker_path, tmp_path, collection):
    from mcp import StdioServerParameters

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "walrus.txt").write_text("Walruses rest on ice floes in the Arctic. " * 4)
    src = str(Path(__import__("vlsearch").__file__).parent.parent)
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "VLSEARCH_DTYPE")},
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1",
           "VLSEARCH_HOME": str(indexed.home)}
    params = StdioServerParameters(
        command=sys.executable, env=env,
        args=["-m", "vlsearch", "mcp", "--model", indexed.model, "--reranker", str(reranker_path),
              "--collections-root", str(inbox), "--ingest-workers", "0", "--torch-threads", "1"])

    async def calls(client):
        found = await client.call_tool("search", {"collection": NAME, "query": "penguins on glaciers", "top_k": 3})
        bad = await client.call_tool("search", {"collection": NAME, "query": "x", "top_k": -1})
        job = await client.call_tool("ingest", {"collection": "walruses", "paths": [str(inbox)]})
        status = job.structured_content
        for _ in range(600):
            if status["status"] in ("done", "failed"):
                break
            await anyio.sleep(0.1)
            status = (await client.call_tool("job_status", {"job_id": status["id"]})).structured_content
        listed = await client.call_tool("list_collections", {})
        return found, bad, status, listed

    found, bad, status, listed = call_all(params, calls)
    want = collection.search("penguins on glaciers", top_k=3)
    assert [(r["id"], r["score"]) for r in found.structured_content["results"]] == [(r.id, r.score) for r in want]
    assert bad.is_error and "top_k" in texts(bad)[0]
    assert status["status"] == "done" and status["progress"]["items"] == 1, status
    assert {"docs", "walruses"} <= {c["name"] for c in listed.structured_content["collections"]}


def test_cli_refuses_a_public_http_bind_without_a_key(capsys, monkeypatch):
    from vlsearch.cli import main

    monkeypatch.delenv("VLSEARCH_API_KEY", raising=False)
    assert main(["mcp", "--transport", "http", "--host", "0.0.0.0", "--model", "/nonexistent"]) == 2
    assert "refusing to bind 0.0.0.0 without an API key" in capsys.readouterr().err


def test_missing_mcp_extra(monkeypatch, capsys):
    from vlsearch.cli import main

    monkeypatch.setitem(sys.modules, "mcp", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)
    monkeypatch.delitem(sys.modules, "vlsearch.mcp.server", raising=False)
    import vlsearch.mcp

    with pytest.raises(vlsearch.MissingExtraError, match=r"pip install 'vlsearch\[mcp\]'"):
        _ = vlsearch.mcp.create_mcp_server
    assert main(["mcp", "--model", "/nonexistent"]) == 1
    assert "pip install 'vlsearch[mcp]'" in capsys.readouterr().err


# ---------------------------------------------------------------- the README's client configurations

README = Path(__file__).resolve().parent.parent / "README.md"
CLIENTS = ("Claude Desktop", "Claude Code", "Cursor", "VS Code", "MCP Inspector")


def readme_configs() -> dict[str, tuple[str, str]]:
    """Client name -> (language, code) of each block after a bold client name in the README's MCP section."""
    section = README.read_text(encoding="utf-8").split("\n### MCP: `vlsearch mcp`\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.finditer(r"\*\*(.+?)\*\*(?:(?!```).)*```(json|bash)\n(.*?)```", section, re.S)
    return {m[1]: (m[2], m[3]) for m in blocks}


def claude_code_servers(code: str) -> dict[str, dict]:
    """``claude mcp add`` lines as configuration entries."""
    found = {}
    for line in code.strip().splitlines():
        words = shlex.split(line)
        assert words[:3] == ["claude", "mcp", "add"], line
        words, command = (words[3:words.index("--")], words[words.index("--") + 1:]) if "--" in words else \
            (words[3:], [])
        options = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}
        positional = [w for i, w in enumerate(words) if not w.startswith("--") and not words[i - 1].startswith("--")]
        if command:
            found[positional[0]] = {"command": command[0], "args": command[1:],
                                    "env": dict([options["--env"].split("=", 1)])}
        else:
            assert options["--transport"] == "http"
            found[positional[0]] = {"url": positional[1], "headers": dict([options["--header"].split(": ", 1)])}
    return found


def test_readme_client_configurations_parse_and_work(mcp_url, indexed, reranker_path, tmp_path):
    from mcp import StdioServerParameters

    from vlsearch.cli import build_parser

    configs = readme_configs()
    assert set(CLIENTS) <= set(configs), sorted(configs)
    servers = {"Claude Desktop": json.loads(configs["Claude Desktop"][1])["mcpServers"],
               "Claude Code": claude_code_servers(configs["Claude Code"][1]),
               "Cursor": json.loads(configs["Cursor"][1])["mcpServers"],
               "VS Code": json.loads(configs["VS Code"][1])["servers"]}
    stdio = {json.dumps({k: entry["vlsearch"][k] for k in ("command", "args", "env")}) for entry in servers.values()}
    assert len(stdio) == 1  # one command for every client
    assert servers["VS Code"]["vlsearch"]["type"] == "stdio" and servers["VS Code"]["vlsearch-http"]["type"] == "http"
    command = json.loads(stdio.pop())
    assert command["command"] == "vlsearch" and build_parser().parse_args(command["args"]).command == "mcp"
    remotes = [entry["vlsearch-http"] for name, entry in servers.items() if name != "Claude Desktop"]
    assert all(r["url"] == "http://127.0.0.1:8001/mcp" and r["headers"] == {"Authorization": "Bearer KEY"}
               for r in remotes)
    inspector = configs["MCP Inspector"][1]
    assert "--header \"Authorization: Bearer KEY\"" in inspector
    versions = {tuple(int(n) for n in v.split(".")) for v in re.findall(r"inspector@([\d.]+)", inspector)}
    assert versions and all(v >= (0, 16, 6) for v in versions)  # the first CLI with --header

    # the HTTP entry's header opens a session on a running server; the stdio entry starts one
    async def listed(client):
        return {t.name for t in (await client.list_tools()).tools}

    assert call_all(mcp_url, listed, key=KEY) == TOOLS  # "Authorization: Bearer KEY", with the server's key
    args = [str(tmp_path) if a == "/home/me/papers" else a for a in command["args"]]
    src = str(Path(__import__("vlsearch").__file__).parent.parent)
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1",
           "VLSEARCH_HOME": str(indexed.home), "VLSEARCH_EMBEDDER": indexed.model,
           "VLSEARCH_RERANKER": str(reranker_path)}
    assert set(command["env"]) <= set(env)
    params = StdioServerParameters(command=sys.executable, args=["-m", "vlsearch", *args, "--torch-threads", "1"],
                                   env=env)
    assert call_all(params, listed) == TOOLS
