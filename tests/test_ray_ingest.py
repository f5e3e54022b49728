"""Ingestion on Ray: same records as the local path, a killed worker survived, the ``--ray`` flag."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'vlsearch[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'vlsearch[ray]')")

from test_collection import OPTIONS, make_corpus

from vlsearch.cli import main
from vlsearch.collection import Collection
from vlsearch.ingest.ray import KILL_HOOK_ENV
from vlsearch.testing import gradient_image


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (start-up is slow)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _records(collection: Collection) -> dict[str, np.ndarray]:
    import lancedb

    table = lancedb.connect(str(collection.path / "store")).open_table("records").to_arrow()
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate record ids"
    return {i: np.asarray(v, np.float32) for i, v in zip(ids, table.column("vector").to_pylist())}


def _same(ray_path: Collection, local: Collection) -> None:
    got, want = _records(ray_path), _records(local)
    assert sorted(got) == sorted(want)
    assert all(np.array_equal(got[i], want[i]) for i in want)
    assert ray_path.store.files().keys() == local.store.files().keys()
    assert {s: e.status for s, e in ray_path.store.files().items()} == \
        {s: e.status for s, e in local.store.files().items()}


def test_ray_matches_local(cluster, tmp_path, embedder_path):
    make_corpus(tmp_path / "corpus")
    local = Collection(str(tmp_path / "local"), model=str(embedder_path))
    expected = local.add([tmp_path / "corpus"], options=OPTIONS, workers=1, progress=False)
    on_ray = Collection(str(tmp_path / "ray"), model=str(embedder_path))
    report = on_ray.add([tmp_path / "corpus"], options=OPTIONS, progress=False, engine="ray", batch_items=4)
    assert report.items == expected.items > 0
    assert sorted(s for s, _ in report.failed) == sorted(s for s, _ in expected.failed)
    _same(on_ray, local)
    again = on_ray.add([tmp_path / "corpus"], options=OPTIONS, progress=False, engine="ray")
    assert again.items == 0 and again.new == again.changed == 0 and again.unchanged > 0


def _small_corpus(root: Path) -> Path:
    root.mkdir()
    for i in range(8):
        (root / f"note{i}.txt").write_text(f"note {i} " + "about things " * (30 + 20 * i))
    for i in range(4):
        gradient_image(100 + 10 * i, 80, seed=i).save(root / f"pic{i}.png")
    return root


def test_killed_worker_is_survived(cluster, tmp_path, embedder_path, monkeypatch):
    corpus = _small_corpus(tmp_path / "corpus")
    options = OPTIONS
    local = Collection(str(tmp_path / "local"), model=str(embedder_path))
    local.add([corpus], options=options, workers=0, progress=False)
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_HOOK_ENV, str(marker))
    on_ray = Collection(str(tmp_path / "ray"), model=str(embedder_path))
    report = on_ray.add([corpus], options=options, progress=False, engine="ray", batch_items=4)
    assert marker.exists(), "the test hook did not kill the embedding actor"
    assert not report.failed
    _same(on_ray, local)


def test_cli_ray_flag(cluster, tmp_path, embedder_path, monkeypatch, capsys):
    corpus = _small_corpus(tmp_path / "corpus")
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLSEARCH_EMBEDDER", str(embedder_path))
    assert main(["index", str(corpus), "-c", "viaray", "--ray", "--quiet"]) == 0
    assert main(["index", str(corpus), "-c", "local", "--workers", "0", "--quiet"]) == 0
    _same(Collection("viaray", create=False), Collection("local", create=False))
    assert cluster.is_initialized(), "a cluster the caller started must be left running"

    # --ray ADDRESS is handed to ray.init(address=...) (the running cluster stands in for it here)
    from vlsearch.ingest import ray as ray_ingest

    addresses: list[str | None] = []
    monkeypatch.setattr(ray_ingest, "connect", lambda address=None: addresses.append(address) or False)
    (corpus / "extra.txt").write_text("one more note about glaciers")
    assert main(["index", str(corpus), "-c", "viaray", "--ray", "ray://head:10001"]) == 0
    assert "1 new" in capsys.readouterr().err and addresses == ["ray://head:10001"]


def test_connect_joins_or_starts(monkeypatch):
    from vlsearch.ingest import ray as ray_ingest

    class FakeRay:
        calls: ClassVar[list[dict]] = []

        @staticmethod
        def is_initialized() -> bool:
            return False

        @classmethod
        def init(cls, **kwargs) -> None:
            cls.calls.append(kwargs)

    monkeypatch.setattr(ray_ingest, "_ray", lambda: FakeRay)
    assert ray_ingest.connect("ray://head:10001") and FakeRay.calls[-1]["address"] == "ray://head:10001"
    assert ray_ingest.connect(None) and "address" not in FakeRay.calls[-1]
    monkeypatch.setattr(FakeRay, "is_initialized", staticmethod(lambda: True))
    assert not ray_ingest.connect("auto")  # a running ray.init is reused, not shut down later
