"""``vlsearch eval`` end to end with the tiny checkpoints: outputs, TREC files re-scored with
pytrec_eval, the dimension/precision sweep, and resuming an interrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

import eval_data
from vlsearch.cli import main
from vlsearch.eval.runner import EvalOptions, run_eval

pytrec_eval = pytest.importorskip("pytrec_eval")


def _read_trec(path: Path, run: bool) -> dict:
    out: dict = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if run:
            out.setdefault(unquote(f[0]), {})[unquote(f[2])] = (int(f[3]), float(f[4]))
        else:
            out.setdefault(unquote(f[0]), {})[unquote(f[2])] = int(f[3])
    return out


def _rescore(output: Path, task: str, config: str, metrics: list[str]) -> dict[str, float]:
    """The metrics of a run file, computed by pytrec_eval from the files alone."""
    qrels = _read_trec(output / task / "qrels.txt", run=False)
    ranked = _read_trec(output / task / config / "run.trec", run=True)
    run = {q: {d: s for d, (_, s) in docs.items()} for q, docs in ranked.items()}
    names = {"ndcg@5": "ndcg_cut_5", "ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100",
             "map@10": "map_cut_10", "hit@1": "success_1"}
    per_q = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5,10", "recall.10,100", "map_cut.10", "success.1"}
                                           ).evaluate(run)
    out = {m: sum(v[n] for v in per_q.values()) / len(qrels) for m, n in names.items() if m in metrics}
    cut = {q: {d: s for d, (rank, s) in docs.items() if rank <= 10} for q, docs in ranked.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    out["mrr@10"] = sum(v["recip_rank"] for v in rr.values()) / len(qrels)
    return out


@pytest.fixture()
def datasets(tmp_path):
    roots = {name: tmp_path / "data" / name for name in ("beir", "v3", "mmeb", "folder")}
    eval_data.beir_dir(roots["beir"])
    eval_data.vidore_beir_dir(roots["v3"], underscore=True)
    expected = {"mmeb": eval_data.mmeb_pairs_dir(roots["mmeb"]), "folder": eval_data.folder_dir(roots["folder"])}
    return roots, expected


def test_cli_end_to_end_with_reranker(tmp_path, datasets, embedder_path, reranker_path, embedder, capsys):
    roots, expected = datasets
    out = tmp_path / "out"
    code = main(["eval", *map(str, roots.values()), "--model", str(embedder_path), "--reranker", str(reranker_path),
                 "--rerank-top", "4", "--output", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["beir", "v3", "mmeb", "folder"]
    assert results["fingerprint"] == embedder.fingerprint and results["rerank_top"] == 4
    for name, task in results["tasks"].items():
        assert set(task["runs"]) == {"d64-float32", "d64-float32+rerank"}
        for config, entry in task["runs"].items():
            assert entry["run"] == f"{name}/{config}/run.trec"
            rescored = _rescore(out, name, config, list(entry["metrics"]))
            for metric, value in rescored.items():
                assert entry["metrics"][metric] == pytest.approx(value, abs=1e-9), (name, config, metric)
    assert results["tasks"]["v3"]["runs"]["d64-float32"]["metrics"]["recall@100"] == 1.0  # every page ranked
    # MMEB: each query ranked against its own candidates only
    ranked = _read_trec(out / "mmeb" / "d64-float32" / "run.trec", run=True)
    for qid, docs in ranked.items():
        assert set(docs) == set(expected["mmeb"]["candidates"][qid])
    # the reranker reorders the top 4 with its scores in [0, 1]
    reranked = _read_trec(out / "beir" / "d64-float32+rerank" / "run.trec", run=True)
    assert all(len(d) == 4 and all(0 <= s <= 1 for _, s in d.values()) for d in reranked.values())
    report = (out / "report.md").read_text()
    assert "## beir" in report and "## folder" in report and "| d64-float32+rerank |" in report
    assert "photos%2Fcat" not in (out / "folder" / "qrels.txt").read_text()  # '/' kept, space encoded
    assert "photos/cat%20one.png" in (out / "folder" / "qrels.txt").read_text()


def test_first_stage_scores_are_the_embedders_cosines(tmp_path, datasets, embedder):
    roots, _ = datasets
    results = run_eval([str(roots["beir"])], EvalOptions(tmp_path / "o", cache_dir=tmp_path / "c", quiet=True),
                       embedder=embedder)
    assert results["tasks"]["beir"]["runs"]
    ranked = _read_trec(tmp_path / "o" / "beir" / "d64-float32" / "run.trec", run=True)
    rows = [json.loads(line) for line in (roots["beir"] / "corpus.jsonl").read_text().splitlines()]
    docs = {r["_id"]: {"text": f"{r['title']} {r['text']}"} for r in rows}
    docs["d1"]["image"] = str(roots["beir"] / "img.png")
    ids = list(docs)
    vectors = embedder.embed([docs[d] for d in ids])
    query = embedder.embed([{"text": "cat dog"}])[0]  # q0
    for doc, (_, score) in ranked["q0"].items():
        assert score == pytest.approx(float(vectors[ids.index(doc)] @ query), abs=2e-5)


def test_dimension_and_precision_sweep(tmp_path, datasets, embedder):
    roots, _ = datasets
    options = EvalOptions(tmp_path / "o", dims=[32, 16], precisions=["float32", "int8", "ubinary"],
                          cache_dir=tmp_path / "c", quiet=True)
    results = run_eval([str(roots["beir"]), str(roots["v3"])], options, embedder=embedder)
    sizes = {s["name"]: s["bytes_per_vector"] for s in results["settings"]}
    assert sizes == {"d32-float32": 128, "d32-int8": 32, "d32-ubinary": 4, "d16-float32": 64, "d16-int8": 16,
                     "d16-ubinary": 2}
    report = (tmp_path / "o" / "report.md").read_text()
    assert "## Size and accuracy" in report and "| d16-ubinary | 2 |" in report
    # scores = what the embedder's own int8 / ubinary outputs give: cosine of int8 rows, 1 - 2 hamming / d
    rows = [json.loads(line) for line in (roots["beir"] / "corpus.jsonl").read_text().splitlines()]
    items = [{"text": f"{r['title']} {r['text']}"} for r in rows]
    items[1]["image"] = str(roots["beir"] / "img.png")
    ids = [r["_id"] for r in rows]
    for precision, dim in [("int8", 32), ("ubinary", 16)]:
        docs = embedder.embed(items, dim=dim, precision=precision)
        query = embedder.embed([{"text": "cat dog"}], dim=dim, precision=precision)[0]
        if precision == "int8":
            d, q = docs.astype(np.float64), query.astype(np.float64)
            expected = d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
        else:
            hamming = np.unpackbits(docs ^ query, axis=1, count=dim).sum(axis=1)
            expected = 1 - 2 * hamming / dim
        ranked = _read_trec(tmp_path / "o" / "beir" / f"d{dim}-{precision}" / "run.trec", run=True)["q0"]
        for doc, (_, score) in ranked.items():
            assert score == pytest.approx(expected[ids.index(doc)], abs=2e-5), (precision, doc)


class _Counting:
    """The real model, counting what it is asked to embed or score; optionally failing on call ``fail_on``."""

    def __init__(self, model, fail_on: int | None = None) -> None:
        self._model, self.fail_on, self.calls, self.items = model, fail_on, 0, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def embed(self, items, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        self.items += len(items)
        return self._model.embed(items, **kwargs)

    def score(self, query, documents, *args, **kwargs):
        self.items += len(documents)
        return self._model.score(query, documents, *args, **kwargs)


def test_interrupted_run_resumes_without_embedding_cached_chunks(tmp_path, datasets, embedder, reranker):
    roots, _ = datasets
    options = EvalOptions(tmp_path / "o", cache_dir=tmp_path / "cache", chunk_size=4, quiet=True, rerank_top=3,
                          reranker="tiny-reranker")
    failing = _Counting(embedder, fail_on=2)  # dies while embedding the second chunk of the corpus
    with pytest.raises(KeyboardInterrupt):
        run_eval([str(roots["beir"])], options, embedder=failing, reranker=reranker)
    chunks = sorted((tmp_path / "cache").rglob("chunk-*.npy"))
    assert [c.name for c in chunks] == ["chunk-000000.npy"]
    first = chunks[0].stat().st_mtime_ns, chunks[0].read_bytes()

    resumed, scorer = _Counting(embedder), _Counting(reranker)
    results = run_eval([str(roots["beir"])], options, embedder=resumed, reranker=scorer)
    assert resumed.items == (12 - 4) + 5  # the rest of the corpus, then the 5 judged queries
    assert (chunks[0].stat().st_mtime_ns, chunks[0].read_bytes()) == first
    assert scorer.items == 5 * 3
    again, scorer_again = _Counting(embedder), _Counting(reranker)
    run_eval([str(roots["beir"])], options, embedder=again, reranker=scorer_again)
    assert again.items == 0 and scorer_again.items == 0  # everything from the caches
    # the resumed run scores exactly as an uninterrupted one (batch composition never changes a vector)
    fresh = run_eval([str(roots["beir"])], EvalOptions(tmp_path / "o2", cache_dir=tmp_path / "other", quiet=True,
                                                       rerank_top=3, reranker="tiny-reranker"),
                     embedder=embedder, reranker=reranker)
    for config, entry in fresh["tasks"]["beir"]["runs"].items():
        assert entry["metrics"] == results["tasks"]["beir"]["runs"][config]["metrics"]
    assert (tmp_path / "o" / "beir" / "d64-float32" / "run.trec").read_text() == \
        (tmp_path / "o2" / "beir" / "d64-float32" / "run.trec").read_text()


def test_list_limit_and_usage_errors(tmp_path, datasets, embedder_path, capsys):
    roots, _ = datasets
    assert main(["eval", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "vidore1-docvqa" in listed and "MMEB-V2 VisDoc" in listed and "79.2" in listed
    common = ["--model", str(embedder_path), "--output", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "-q"]
    assert main(["eval", str(roots["beir"]), "--limit-queries", "2", *common]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["tasks"]["beir"]["queries"] == 2
    assert main(["eval", str(roots["beir"]), "--precision", "float16", *common]) == 2
    assert "precision must be one of" in capsys.readouterr().err
    assert main(["eval", str(roots["beir"]), "--dim", "128", *common]) == 2
    assert main(["eval", "no-such-task", *common]) == 2
