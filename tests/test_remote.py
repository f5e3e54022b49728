"""Remote Embedder and Reranker against a live vlsearch server: same results as the local models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from server_helpers import serve  # noqa: E402
from vlsearch.collection import Collection  # noqa: E402
from vlsearch.errors import InputError, MediaError, ModelError  # noqa: E402
from vlsearch.remote import Embedder as RemoteEmbedder  # noqa: E402
from vlsearch.remote import Reranker as RemoteReranker  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402


@pytest.fixture(scope="module")
def server(embedder_path, reranker_path, tmp_path_factory):
    config = ServerConfig(model=str(embedder_path), reranker=str(reranker_path),
                          home=tmp_path_factory.mktemp("home"), api_keys=("s3cret-key-0001",))
    with serve(config) as running:
        yield running


def items(media) -> list:
    return [
        "plain text",
        {"text": "with an instruction", "instruction": "Find charts"},
        {"image": str(media["jpeg"])},
        {"image": Image.open(media["rgba"]), "text": "a PIL image with alpha"},
        {"image": [str(media["small"]), str(media["wide"])]},
        {"video": [str(media[f"frame{i}"]) for i in range(4)], "fps": 2.0},
        {"video": str(media["video"]), "text": "a clip"},
    ]


def test_remote_embeddings_equal_local(server, embedder, media):
    remote = RemoteEmbedder(server.url, api_key="s3cret-key-0001", batch_size=3)
    assert remote.dim == embedder.dim and remote.fingerprint == embedder.fingerprint
    assert np.array_equal(remote.embed(items(media)), embedder.embed(items(media)))
    assert np.array_equal(remote.embed(items(media), dim=16, precision="int8"),
                          embedder.embed(items(media), dim=16, precision="int8"))


def test_remote_rerank_equals_local(server, reranker, media):
    remote = RemoteReranker(server.url + "/v1", api_key="s3cret-key-0001", batch_size=4)
    docs = items(media)[:5]
    query = {"text": "which picture?", "image": str(media["tall"])}
    assert remote.score(query, docs) == reranker.score(query, docs)
    assert remote.rank("q", ["a", "b", "c"], top_k=2) == reranker.rank("q", ["a", "b", "c"], top_k=2)


def test_remote_errors_are_clear(server, media, tmp_path):
    remote = RemoteEmbedder(server.url, api_key="s3cret-key-0001")
    with pytest.raises(MediaError, match=r"^item 1: .*not an image"):
        remote.embed(["fine", {"image": str(media["not_image"])}])  # checked before sending
    with pytest.raises(ModelError, match="HTTP 401"):
        RemoteEmbedder(server.url).embed(["no key"])
    with pytest.raises(InputError, match="HTTP 400"):
        RemoteEmbedder(server.url, api_key="s3cret-key-0001").embed([{"image": "https://example.com/x.png"}])
    with pytest.raises(ModelError, match="cannot reach the model server"):
        RemoteEmbedder("http://127.0.0.1:9", timeout=2).embed(["x"])
    with pytest.raises(InputError, match="must start with http"):
        RemoteEmbedder("ftp://somewhere")


def test_collection_with_remote_models(server, media, tmp_path, monkeypatch, embedder_path, reranker_path):
    monkeypatch.setenv("VLSEARCH_API_KEY", "s3cret-key-0001")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("Remote embedding of a small note about penguins.")
    Image.open(media["small"]).save(folder / "picture.png")
    remote = Collection(str(tmp_path / "c"), model=server.url, reranker=server.url)
    report = remote.add([folder], workers=0)
    assert not report.failed and report.items == 2
    hits = remote.search("penguins", top_k=2)
    assert len(hits) == 2 and all(h.rerank_score is not None for h in hits)
    # the same weights locally: the collection accepts the local model and finds the same order
    local = Collection(str(tmp_path / "c"), model=str(embedder_path), reranker=str(reranker_path))
    assert [h.id for h in local.search("penguins", top_k=2)] == [h.id for h in hits]
