"""Buckets as sources, against moto's S3 server on loopback (nothing of vlsearch is mocked): listing,
incremental indexing by ETag / size / time, prune, URIs everywhere, read-back for reranking and media,
and the faults: no bucket, denied, refused or expired credentials, an object deleted between listing
and reading, a connection dropped mid-download."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ingest_files import write_text_pdf
from source_helpers import (AWS_VARIABLES, cutting_proxy, expired_credentials_endpoint, moto_server, s3_client,
                            s3_environment, set_auth, zip_bytes)
from vlsearch.collection import Collection
from vlsearch.ingest import ExtractOptions, discover
from vlsearch.ingest.objects import object_digest
from vlsearch.ingest.sources import changed_reason, spool
from vlsearch.media.images import MediaLimits
from vlsearch.testing import gradient_image

pytest.importorskip("s3fs")
pytest.importorskip("moto")

OPTIONS = ExtractOptions(chunk_chars=400, chunk_overlap=50)


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture()
def s3(endpoint, monkeypatch, tmp_path):
    """A fresh bucket with a small corpus, and the credential chain pointing at the loopback server."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_environment(endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    client = s3_client(endpoint)
    bucket = f"b{time.time_ns()}"
    client.create_bucket(Bucket=bucket)
    pdf = write_text_pdf(tmp_path / "report.pdf", 2, text="Bucket revenue").read_bytes()
    gradient_image(96, 64, seed=3).save(tmp_path / "a.png")
    objects = {"docs/report.pdf": pdf, "docs/pics/a.png": (tmp_path / "a.png").read_bytes(),
               "docs/notes.txt": b"Notes about glaciers and penguins.",
               "docs/pack.zip": zip_bytes({"inner/memo.txt": b"A memo about walruses."}),
               "docs/data.bin": b"\0" * 10, "other/skip.txt": b"not under the prefix"}
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return {"client": client, "bucket": bucket, "root": f"s3://{bucket}/docs", "objects": objects,
            "endpoint": endpoint}


def test_listing_gives_uris_sizes_times_and_tags(s3):
    found = {f.relative: f for f in discover([s3["root"]])}
    assert set(found) == {"report.pdf", "pics/a.png", "notes.txt", "pack.zip!/inner/memo.txt", "data.bin"}
    notes = found["notes.txt"]
    assert notes.source == f"{s3['root']}/notes.txt" and notes.kind == "text" and notes.ok
    assert notes.size == len(s3["objects"]["docs/notes.txt"]) and notes.mtime > 1e9 and len(notes.etag) == 32
    assert found["pack.zip!/inner/memo.txt"].source == f"{s3['root']}/pack.zip!/inner/memo.txt"
    assert found["data.bin"].kind is None
    assert [f.relative for f in discover([s3["root"]], include=["*.pdf"])] == ["report.pdf"]
    (single,) = discover([f"{s3['root']}/notes.txt"])
    assert single.source == f"{s3['root']}/notes.txt" and single.ok
    limits = MediaLimits()
    with spool(single.source, limits, digest=object_digest(single.etag)) as copy:
        assert copy.read() == s3["objects"]["docs/notes.txt"]
    assert changed_reason(single.source, object_digest(single.etag), single.size, single.mtime) == ""


def test_a_key_holding_the_separator_is_not_read_as_a_member(s3):
    client, bucket = s3["client"], s3["bucket"]
    client.put_object(Bucket=bucket, Key="docs/pack.zip!/inner/memo.txt", Body=b"a plain object, not the member")
    client.put_object(Bucket=bucket, Key="docs/pack.zip!/other.txt", Body=b"another plain object")
    found = [f for f in discover([s3["root"]]) if "pack.zip!" in f.relative]
    assert [(f.relative, f.ok) for f in found] == [("pack.zip!/inner/memo.txt", True), ("pack.zip!/other.txt", False)]
    assert "'!/' after 'pack.zip'" in found[1].error
    with spool(found[0].source, MediaLimits()) as copy:
        assert copy.read() == b"A memo about walruses."  # the member, listed once


def test_bucket_is_indexed_incrementally_searched_reranked_and_pruned(s3, embedder_path, reranker_path):
    c = Collection("bucket", model=str(embedder_path), reranker=str(reranker_path))
    report = c.add([s3["root"]], options=OPTIONS, workers=2)
    assert (report.new, report.skipped, report.failed, report.items) == (4, 1, [], 2 + 1 + 1 + 1), report.summary()
    sources = set(c.store.files())
    assert sources == {f"{s3['root']}/{k}" for k in ("report.pdf", "pics/a.png", "notes.txt", "pack.zip!/inner/memo.txt")}
    results = c.search("revenue glaciers", top_k=10, rerank_inputs="full")  # as indexed, from the source
    assert {r.source for r in results} == sources
    assert all(r.note == "" for r in results), [r.note for r in results]  # each object read back for the reranker
    # unchanged: nothing downloaded or embedded; the same bytes written again (a new time, the same ETag): touched
    again = c.add([s3["root"]], options=OPTIONS, workers=0)
    assert (again.unchanged, again.items) == (4, 0), again.summary()
    client, bucket = s3["client"], s3["bucket"]
    time.sleep(1.1)  # S3 times have whole seconds
    client.put_object(Bucket=bucket, Key="docs/notes.txt", Body=s3["objects"]["docs/notes.txt"])
    touched = c.add([s3["root"]], options=OPTIONS, workers=0)
    assert (touched.unchanged, touched.changed, touched.items) == (4, 0, 0), touched.summary()
    client.put_object(Bucket=bucket, Key="docs/notes.txt", Body=b"New notes about icebergs.")
    client.delete_object(Bucket=bucket, Key="docs/pics/a.png")
    changed = c.add([s3["root"]], options=OPTIONS, workers=0, prune=True)
    assert (changed.changed, changed.pruned, changed.items) == (1, 1, 1), changed.summary()
    assert [r.text for r in c.search("icebergs", mode="lexical", rerank=False)] == ["New notes about icebergs."]
    assert f"{s3['root']}/pics/a.png" not in c.store.files()
    # the object changed behind the index: the reranker says so and uses the thumbnail
    pdf = next(r for r in c.search("revenue", top_k=10) if r.source.endswith("report.pdf"))
    client.put_object(Bucket=bucket, Key="docs/report.pdf", Body=b"%PDF-1.4 replaced")
    stale = next(r for r in c.search("revenue", top_k=10) if r.id == pdf.id)
    assert stale.note.startswith("reranked on the thumbnail: source changed")
    assert c.delete(sources=[f"{s3['root']}/notes.txt"]) == 1


def test_cli_and_server_show_uris_and_serve_objects(s3, embedder_path, capsys):
    from server_helpers import serve
    from vlsearch.cli import main
    from vlsearch.server.config import ServerConfig

    code = main(["index", s3["root"], "-c", "cloud", "--model", str(embedder_path), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 0 and "4 new" in err, err
    code = main(["search", "glaciers", "-c", "cloud", "--model", str(embedder_path), "--no-rerank", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and {r["source"] for r in printed} >= {f"{s3['root']}/notes.txt"}
    config = ServerConfig(model=str(embedder_path), no_reranker=True, home=Path(os.environ["VLSEARCH_HOME"]))
    with serve(config) as running, running.client() as http:
        found = http.post("/v1/collections/cloud/search", json={"query": "picture", "top_k": 10}).json()["results"]
        by_source = {r["source"]: r for r in found}
        image = by_source[f"{s3['root']}/pics/a.png"]
        media = http.get(f"/v1/collections/cloud/items/{image['id']}/media")
        assert media.status_code == 200 and media.content == s3["objects"]["docs/pics/a.png"]
        assert media.headers["content-type"] == "image/png"
        ranged = http.get(f"/v1/collections/cloud/items/{image['id']}/media", headers={"range": "bytes=0-7"})
        assert ranged.status_code == 206 and ranged.content == s3["objects"]["docs/pics/a.png"][:8]
        page = by_source[f"{s3['root']}/report.pdf"]
        assert http.get(f"/v1/collections/cloud/items/{page['id']}/media").content == s3["objects"]["docs/report.pdf"]
        s3["client"].put_object(Bucket=s3["bucket"], Key="docs/pics/a.png", Body=b"another picture")
        gone = http.get(f"/v1/collections/cloud/items/{image['id']}/media")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "source_changed"


def test_bucket_faults_each_get_a_reason_and_the_run_goes_on(s3, embedder_path, monkeypatch):
    c = Collection("faults", model=str(embedder_path))
    report = c.add([s3["root"], f"s3://missing-{s3['bucket']}/x"], options=OPTIONS, workers=0)
    assert report.new == 4 and report.failed == [(f"s3://missing-{s3['bucket']}/x", "no such bucket")]
    empty = c.add([f"s3://{s3['bucket']}/nothing-here"], options=OPTIONS, workers=0, prune=True)
    assert empty.failed[0][1] == "no objects under this prefix" and empty.pruned == 0
    # an object deleted between listing and reading: it fails alone, nothing of it is stored
    client, bucket = s3["client"], s3["bucket"]
    client.put_object(Bucket=bucket, Key="docs/late.txt", Body=b"about to vanish")
    client.put_object(Bucket=bucket, Key="docs/kept.txt", Body=b"this one stays")

    def delete_once(done: int, total: int, items: int) -> None:
        if done == 0:
            client.delete_object(Bucket=bucket, Key="docs/late.txt")

    deleted = c.add([s3["root"]], options=OPTIONS, workers=0, on_progress=delete_once)
    assert deleted.new == 2 and deleted.items == 1 and [s for s, _ in deleted.failed] == [f"{s3['root']}/late.txt"], deleted.summary()
    assert "no such object" in deleted.failed[0][1]
    assert c.store.count(f"source = '{s3['root']}/late.txt'") == 0
    assert c.store.files()[f"{s3['root']}/late.txt"].status == "failed"
    # credentials: refused, denied (a user without rights) and expired (from the chain's credential endpoint)
    import boto3

    iam = boto3.client("iam", endpoint_url=s3["endpoint"], aws_access_key_id="testing",
                       aws_secret_access_key="testing", region_name="us-east-1")
    user = f"nobody{time.time_ns()}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    set_auth(s3["endpoint"], True)
    try:
        reasons = {}
        for case, env in {"unknown key": {}, "no rights": {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                                           "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]},
                          "wrong secret": {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                           "AWS_SECRET_ACCESS_KEY": "not-the-secret"}}.items():
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            (entry,) = discover([s3["root"]])
            reasons[case] = entry.error
        with expired_credentials_endpoint() as url:
            monkeypatch.delenv("AWS_ACCESS_KEY_ID")
            monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
            monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
            expired = c.add([s3["root"]], options=OPTIONS, workers=0, prune=True)
    finally:
        set_auth(s3["endpoint"], False)
    assert reasons == {"unknown key": "credentials refused (unknown access key)", "no rights": "access denied",
                       "wrong secret": "credentials refused (wrong secret key)"}
    assert expired.failed == [(s3["root"], "credentials expired (the cloud's credential chain gave expired ones: "
                                           "refresh them)")]
    assert expired.pruned == 0 and len([s for s, e in c.store.files().items() if e.status == "done"]) == 5


def test_a_download_cut_short_fails_its_file_alone(s3, embedder_path, monkeypatch):
    client, bucket = s3["client"], s3["bucket"]
    big = write_text_pdf(Path(os.environ["VLSEARCH_HOME"]).parent / "cut.pdf", 40, text="Cut short").read_bytes()
    client.put_object(Bucket=bucket, Key="docs/cut-me.pdf", Body=big)
    with cutting_proxy(s3["endpoint"], "cut-me") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        c = Collection("cut", model=str(embedder_path))
        report = c.add([s3["root"]], options=OPTIONS, workers=2)
    assert proxy.cuts >= 1, report.summary()
    assert [s for s, _ in report.failed] == [f"{s3['root']}/cut-me.pdf"], report.summary()
    assert "network error" in report.failed[0][1], report.failed
    assert report.new == 5 and report.items == 5 and c.store.count(f"source = '{s3['root']}/cut-me.pdf'") == 0
