"""A collection whose records live in Milvus (Milvus Lite file), end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlsearch.cli import main
from vlsearch.collection import Collection
from vlsearch.errors import StoreError
from vlsearch.testing import gradient_image

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed: pip install -e '.[milvus]'")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_incremental_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLSEARCH_EMBEDDER", str(embedder_path))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.txt").write_text("Quarterly revenue grew by twelve percent.\n\nInvoices are due monthly.")
    (corpus / "b.txt").write_text("A short note about cats and dogs.")
    gradient_image(64, 48, seed=1).save(corpus / "a.png")
    db = tmp_path / "vectors.db"

    code, _, err = run(capsys, "index", str(corpus), "-c", "docs", "--store", str(db), "--workers", "0")
    assert code == 0, err
    assert "3 new" in err
    recorded = json.loads((tmp_path / "home" / "collections" / "docs" / "collection.json").read_text())
    assert recorded == {"store": str(db.resolve())}
    assert not (tmp_path / "home" / "collections" / "docs" / "store").exists()  # no LanceDB next to it

    code, out, err = run(capsys, "search", "revenue", "-c", "docs", "--no-rerank", "--json", "-k", "10",
                         "--where", "modality = 'text' AND source LIKE '%notes%'")
    results = json.loads(out)
    assert code == 0, err
    assert results and {r["modality"] for r in results} == {"text"} and all("notes.txt" in r["source"] for r in results)
    code, out, _ = run(capsys, "search", "-c", "docs", "--image", str(corpus / "a.png"), "--no-rerank", "--json",
                       "-k", "1")
    assert code == 0 and json.loads(out)[0]["source"].endswith("a.png")

    code, _, err = run(capsys, "index", str(corpus), "-c", "docs", "--workers", "0")  # the recorded store
    assert code == 0 and "3 unchanged" in err and "0 items embedded" in err
    (corpus / "b.txt").unlink()
    (corpus / "notes.txt").write_text("Revenue fell.")
    code, _, err = run(capsys, "index", str(corpus), "-c", "docs", "--prune", "--workers", "0")
    assert code == 0 and "1 changed" in err and "1 deleted files pruned" in err, err

    c = Collection("docs")
    assert c.store_uri == str(db.resolve()) and c.meta["dim"] == c.store.dim
    assert sorted(Path(s).name for s in c.store.files()) == ["a.png", "notes.txt"]
    assert c.store.count() == 2 and c.info()["items"] == 2
    with pytest.raises(StoreError, match="lives in"):
        Collection("docs", store=str(tmp_path / "other.db"))
    with pytest.raises(StoreError, match="lives in"):
        Collection(str(tmp_path / "home" / "collections" / "docs"), store="milvus://localhost:19530/x")
    close = getattr(c.store, "close", None)
    if close:
        close()
    Collection.remove("docs")
    assert not (tmp_path / "home" / "collections" / "docs").exists()
