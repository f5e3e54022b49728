"""The seams between layers: the wire format, the model contract and loading rule, the catalog, the
index writer on its own, the store registry, and a CLI that takes no abbreviations."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import numpy as np
import pytest

from vlsearch.catalog import Catalog
from vlsearch.cli import build_parser, main
from vlsearch.collection import Collection
from vlsearch.errors import CollectionNotFound, InputError, ModelError, StoreError
from vlsearch.ingest import ExtractOptions, content_hash, discover, extract
from vlsearch.ingest.writer import IndexReport, IndexWriter
from vlsearch.items import Item
from vlsearch.locator import Locator
from vlsearch.media.images import MediaLimits
from vlsearch.models.contract import EmbedderBase, EmbedderLike, RerankerBase, RerankerLike
from vlsearch.models.loading import FAMILIES, embedder_name, load_embedder
from vlsearch.models.remote import RemoteEmbedder, RemoteReranker
from vlsearch.server.runtime import BatchedEmbedder, BatchedReranker
from vlsearch.stores import BACKENDS, backend_of, open_store
from vlsearch.wire import content_parts, to_item


class DataOnly:
    """A source policy that takes data URIs only (what the server does without URL hosts)."""

    def check(self, src):
        assert isinstance(src, str) and src.startswith("data:"), src
        return src

    def frames(self, frames):
        return [self.check(f) for f in frames]


def _payload(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


# ---------------------------------------------------------------- wire

def test_wire_round_trip(media):
    frames = [str(media[f"frame{i}"]) for i in range(3)]
    item = Item(text=["a caption", "more"], image=[str(media["small"]), str(media["jpeg"])],
                video=[frames, str(media["video"])], fps=2.0, max_frames=8, instruction="Find it.")
    parts = content_parts(item, MediaLimits())
    assert [p["type"] for p in parts] == ["video_url", "video_url", "image_url", "image_url", "text", "text"]
    back = to_item({"content": parts, "instruction": item.instruction}, DataOnly())
    assert back.text == item.text and back.instruction == item.instruction
    assert back.fps == 2.0 and back.max_frames == 8
    assert [_payload(u) for u in back.image] == [Path(p).read_bytes() for p in item.image]
    assert [_payload(f) for f in back.video[0]] == [Path(f).read_bytes() for f in frames]
    assert _payload(back.video[1]) == Path(media["video"]).read_bytes()
    assert to_item(content_parts(Item(text="plain"), MediaLimits()), DataOnly()).text == ["plain"]


def test_wire_refuses_what_the_policy_refuses():
    class NoMedia(DataOnly):
        def check(self, src):
            raise InputError(f"{src[:10]!r}: refused")

    with pytest.raises(InputError, match="refused"):
        to_item([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}], NoMedia())
    with pytest.raises(InputError, match="unknown content part type"):
        to_item([{"type": "audio_url", "audio_url": "x"}], DataOnly())


# ---------------------------------------------------------------- models

def test_every_model_backend_is_an_adapter_of_the_contract(embedder, reranker):
    assert isinstance(embedder, EmbedderLike) and isinstance(reranker, RerankerLike)
    for cls in (type(embedder), RemoteEmbedder, BatchedEmbedder):
        assert issubclass(cls, EmbedderBase) and "embed" not in vars(cls), cls
    for cls in (type(reranker), RemoteReranker, BatchedReranker):
        assert issubclass(cls, RerankerBase) and "score" not in vars(cls) and "rank" not in vars(cls), cls


def test_shared_contract_behaviour(embedder, reranker):
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert embedder.embed([], dim=8, precision="ubinary").shape == (0, 1)
    with pytest.raises(InputError, match="precision"):
        embedder.embed(["x"], precision="int4")
    with pytest.raises(InputError, match="dim must be between"):
        embedder.embed(["x"], dim=embedder.dim + 1)
    assert reranker.score("q", []) == [] and reranker.rank("q", []) == []
    with pytest.raises(InputError, match="query: "):
        reranker.score({"bogus": 1}, ["doc"])


def test_the_model_name_rule(monkeypatch):
    monkeypatch.delenv("VLSEARCH_EMBEDDER", raising=False)
    assert embedder_name() == "Qwen/Qwen3-VL-Embedding-2B"
    assert embedder_name(None, "recorded/model") == "recorded/model"
    monkeypatch.setenv("VLSEARCH_EMBEDDER", "env/model")
    assert embedder_name(None, "recorded/model") == "env/model"
    assert embedder_name("given/model", "recorded/model") == "given/model"
    monkeypatch.setenv("VLSEARCH_API_KEY", "secret")
    remote = load_embedder("http://127.0.0.1:9")
    assert isinstance(remote, RemoteEmbedder) and remote.client.api_key == "secret"


def test_an_unknown_model_family_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match=r"model type 'bert' is not supported \(supported: qwen3_vl\)"):
        load_embedder(str(tmp_path))
    assert "qwen3_vl" in FAMILIES


# ---------------------------------------------------------------- stores and catalog

def test_the_store_registry():
    assert backend_of("/data/idx") == "file" and backend_of("file:///data/idx") == "file"
    assert backend_of("/data/idx.db") == ".db" and backend_of("milvus+https://h/c") == "milvus+https"
    assert set(BACKENDS) >= {"file", ".db", "milvus"}
    with pytest.raises(StoreError, match="unsupported store URI scheme 's3'"):
        open_store("s3://bucket/idx")


def test_the_catalog_raises_a_typed_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path))
    with pytest.raises(CollectionNotFound, match="no collection 'nope'"):
        Collection("nope", create=False)
    with pytest.raises(CollectionNotFound):
        Catalog().remove("nope")
    server_side = Catalog(tmp_path, names_only=True)
    with pytest.raises(InputError, match="invalid collection name"):
        server_side.path("../escape")
    assert Catalog().path("./here") == Path("./here").resolve()


# ---------------------------------------------------------------- the writer on its own

def test_the_index_writer_without_a_collection(tmp_path, embedder, media):
    notes = tmp_path / "notes.txt"
    notes.write_text("Alpha beta gamma. " * 200)
    (found,) = list(discover([notes]))
    digest = content_hash(notes)
    pieces = extract(notes, "text", digest, ExtractOptions(chunk_chars=500, chunk_overlap=50))
    store, report = open_store(str(tmp_path / "store")), IndexReport()
    with IndexWriter(store, embedder, None, report, batch_items=2) as writer:
        writer.start(2)
        writer.pieces(str(notes), pieces)
        writer.complete(found, digest)
        writer.failed(str(tmp_path / "broken.pdf"), "corrupt PDF")
    assert report.items == len(pieces) > 2 and report.failed == [(str(tmp_path / "broken.pdf"), "corrupt PDF")]
    stored = store.get([p.record_id for p in pieces])
    assert [r.locator for r in stored] == [Locator("text", chunk=i) for i in range(len(pieces))]
    assert np.allclose([r.vector for r in stored], embedder.embed([p.item for p in pieces]))
    files = store.files()
    assert files[str(notes)].status == "done" and files[str(notes)].items == len(pieces)
    assert files[str(tmp_path / "broken.pdf")].status == "failed"


# ---------------------------------------------------------------- CLI

def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_takes_abbreviations(capsys):
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 5 and all(not p.allow_abbrev for p in parsers)
    with pytest.raises(SystemExit) as exit_:
        main(["search", "x", "--candid", "5"])  # once taken for --candidates
    assert exit_.value.code == 2 and "unrecognized arguments: --candid 5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "docs", "--mod", "x"])  # --model or --mode? neither: spelled out only
    assert "unrecognized arguments: --mod x" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "x", "--coll", "docs"])
    assert "unrecognized arguments: --coll" in capsys.readouterr().err
