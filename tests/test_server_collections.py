"""Collections over HTTP: ingestion jobs (uploads and allowed paths), search, listing, and the
path guard (outside the roots, ``..`` and symbolic links are refused)."""

from __future__ import annotations

import os
import stat

import pytest

pytest.importorskip("fastapi")

from server_helpers import assert_clean_error, wait_for_job, data_uri, png_bytes, serve  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("tree")
    root, outside = base / "root", base / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "penguins.txt").write_text("Penguins live on glaciers in the far south. " * 5)
    (root / "docs" / "budget.md").write_text("# Budget\n\nThe budget for the year is balanced.\n")
    (root / "docs" / "pic.png").write_bytes(png_bytes(160, 120, seed=4))
    (outside / "secret.txt").write_text("the secret plans of the outside world")
    os.symlink(outside / "secret.txt", root / "docs" / "link.txt")  # inside the root, pointing out
    os.symlink(outside, root / "escape")
    return base


@pytest.fixture(scope="module")
def server(embedder_path, reranker_path, tree):
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=tree / "home",
                          collections_roots=(tree / "root",), ingest_workers=0)
    with serve(config) as running:
        yield running


def test_ingest_uploads_then_search(http, embedder, tree):
    image = png_bytes(200, 150, seed=7)
    files = [("files", ("notes.txt", b"Sentences about penguins and glaciers. " * 10, "text/plain")),
             ("files", ("../../evil name.png", image, "image/png")),
             ("files", ("data.bin", b"\x00" * 10, "application/octet-stream")),
             ("files", ("broken.png", b"not a png at all", "image/png"))]
    response = http.post("/v1/collections/uploads/ingest", files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(http, response.json()["job_id"])
    assert job["status"] == "done", job
    report = job["report"]
    assert (report["seen"], report["new"], report["skipped"]) == (4, 3, 1)
    assert [f["source"].rsplit("/", 1)[-1] for f in report["failed"]] == ["broken.png"]
    assert job["progress"] == {"files_done": 3, "files_total": 3, "items": 2}
    (folder,) = (tree / "home" / "server" / "uploads" / "uploads").iterdir()  # one folder per upload
    saved = sorted(p.name for p in folder.iterdir())
    assert {stat.S_IMODE(p.stat().st_mode) for p in (folder, folder.parent)} == {0o700}  # the server's user's only
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    assert saved == ["broken.png", "data.bin", "evil_name.png", "notes.txt"]  # under the data dir, safe names

    found = http.post("/v1/collections/uploads/search", json={"query": "penguins", "top_k": 5})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert found.json()["reranked"] and len(results) == 2
    assert set(results[0]) >= {"rank", "id", "score", "vector_score", "rerank_score", "source", "modality", "page",
                               "start", "end", "text", "thumbnail"}
    by_modality = {r["modality"]: r for r in results}
    assert by_modality["image"]["thumbnail"].startswith("data:image/jpeg;base64,")
    assert by_modality["text"]["rerank_score"] == by_modality["text"]["score"]

    # the same search through the library, on the same collection, gives the same results
    from vlsearch.collection import Collection

    library = Collection(str(tree / "home" / "collections" / "uploads"), create=False, loaded_embedder=embedder)
    expected = library.search("penguins", top_k=5, rerank=False)
    plain = http.post("/v1/collections/uploads/search", json={"query": "penguins", "rerank": False}).json()["results"]
    assert [(r["id"], r["score"]) for r in plain] == [(r.id, r.score) for r in expected]
    assert all(r["rerank_score"] is None for r in plain)

    by_image = http.post("/v1/collections/uploads/search",
                         json={"image": data_uri(image), "rerank": False, "top_k": 1}).json()["results"]
    assert by_image[0]["modality"] == "image"
    filtered = http.post("/v1/collections/uploads/search",
                         json={"query": {"text": "penguins"}, "where": "modality = 'text'", "top_k": 5}).json()
    assert [r["modality"] for r in filtered["results"]] == ["text"]
    assert_clean_error(http.post("/v1/collections/uploads/search", json={"query": "x", "where": "nope = 1"}), 400)

    listing = http.get("/v1/collections").json()["data"]
    assert [(c["name"], c["items"], c["files"]) for c in listing if c["name"] == "uploads"] == [("uploads", 2, 2)]
    info = http.get("/v1/collections/uploads").json()
    assert info["items"] == 2 and info["dim"] == embedder.dim and len(info["failed"]) == 1
    assert "path" not in info


def test_search_says_what_was_reranked_and_how_long_each_stage_took(http, server):
    from vlsearch.integrations.common import RemoteCollection

    answer = http.post("/v1/collections/uploads/search", json={"query": "penguins", "rerank_budget": 0}).json()
    assert set(answer["timings"]) == {"embed", "search", "rerank"} and answer["reranked"]
    assert all(r["reranked"] and r["note"] == "" for r in answer["results"])
    plain = http.post("/v1/collections/uploads/search", json={"query": "penguins", "rerank": False}).json()
    assert not plain["reranked"] and not any(r["reranked"] for r in plain["results"])
    assert_clean_error(http.post("/v1/collections/uploads/search", json={"query": "penguins", "rerank_budget": -1}),
                       422, "rerank_budget")
    files = [("files", (f"n{i}.txt", f"penguin note {i}".encode(), "text/plain")) for i in range(4)]
    job = wait_for_job(http, http.post("/v1/collections/budget/ingest", files=files).json()["job_id"])
    assert job["status"] == "done", job
    timings: dict[str, float] = {}
    results = RemoteCollection(server.url, "budget").search("penguins", rerank_budget=0.001, timings=timings)
    assert [r.reranked for r in results] == [True, False, False, False]  # the first, whatever the budget
    assert results[-1].note.startswith("not reranked: the 0.001 s rerank budget") and timings["rerank"] > 0


def test_ingest_allowed_paths(http, tree):
    response = http.post("/v1/collections/paths/ingest", json={"paths": [str(tree / "root" / "docs")]})
    assert response.status_code == 202, response.text
    job = wait_for_job(http, response.json()["job_id"])
    assert job["status"] == "done" and not job["report"]["failed"], job
    assert job["report"]["new"] == 3  # penguins.txt, budget.md, pic.png: the symlink to the outside is skipped
    results = http.post("/v1/collections/paths/search", json={"query": "secret plans", "top_k": 10}).json()["results"]
    assert results and not any("secret" in r["text"] or "outside" in r["source"] for r in results)
    relative = http.post("/v1/collections/paths/ingest", json={"paths": ["docs/penguins.txt"]})
    assert relative.status_code == 202 and wait_for_job(http, relative.json()["job_id"])["report"]["unchanged"] == 1
    jobs = http.get("/v1/jobs").json()["data"]
    assert {j["collection"] for j in jobs} >= {"paths"}


@pytest.mark.parametrize("path", ["/etc/passwd", "{root}/../outside/secret.txt", "{root}/docs/link.txt",
                                  "{root}/escape", "{root}/escape/secret.txt", "../outside", "/"])
def test_paths_outside_the_roots_are_forbidden(http, tree, path):
    given = path.format(root=tree / "root")
    error = assert_clean_error(http.post("/v1/collections/x/ingest", json={"paths": [given]}), 403, "outside")
    assert error["type"] == "permission_error" and str(tree / "outside") not in error["message"]


def test_ingest_errors(http, server, tree, embedder_path, reranker_path):
    assert_clean_error(http.post("/v1/collections/x/ingest", json={"paths": [str(tree / "root" / "nope")]}), 400,
                       "no such file")
    assert_clean_error(http.post("/v1/collections/x/ingest", json={"paths": []}), 422)
    assert_clean_error(http.post("/v1/collections/x/ingest", content=b"x", headers={"content-type": "text/plain"}),
                       415)
    assert_clean_error(http.post("/v1/collections/x/ingest", files={"note": (None, "no file here")}), 400, "no files")
    assert_clean_error(http.post("/v1/collections/nope/search", json={"query": "x"}), 404, "no collection 'nope'")
    assert_clean_error(http.get("/v1/collections/nope"), 404)
    assert_clean_error(http.post("/v1/collections/nope/search", json={}), 400, "give a query")
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path), home=tree / "home2")
    with serve(config) as running, running.client() as other:  # no --collections-root: paths are refused
        assert_clean_error(other.post("/v1/collections/x/ingest", json={"paths": [str(tree / "root")]}), 403,
                           "disabled")


def test_collection_built_with_other_weights_is_a_conflict(http, tree):
    import json

    files = [("files", ("hello.txt", b"hello there, general", "text/plain"))]
    assert wait_for_job(http, http.post("/v1/collections/conflict/ingest", files=files).json()["job_id"])["status"] == "done"
    meta = tree / "home" / "collections" / "conflict" / "store" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "fingerprint": "0" * 16}))
    error = assert_clean_error(http.post("/v1/collections/conflict/search", json={"query": "hello"}), 409,
                               "has other weights")
    assert error["type"] == "conflict_error"
    files = [("files", ("more.txt", b"more text", "text/plain"))]
    job = wait_for_job(http, http.post("/v1/collections/conflict/ingest", files=files).json()["job_id"])
    assert job["status"] == "failed" and "has other weights" in job["error"] and job["report"] is None
