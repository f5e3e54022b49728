"""Ranking metrics: hand-computed cases, and equality with pytrec_eval (trec_eval) on random runs."""

from __future__ import annotations

import random

import pytest

from vlsearch.eval.metrics import evaluate, parse_metric, per_query, pytrec_eval_measures, ranked

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_hand_computed_graded_case():
    # ranking: b (0.9), x (0.5, unjudged), c (0.3, grade 0), a (0.1, grade 2)
    run = {"q": {"a": 0.1, "b": 0.9, "x": 0.5, "c": 0.3}}
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    got = per_query(run, qrels, ["ndcg@3", "ndcg@10", "recall@2", "recall@4", "mrr@10", "map@4", "map@2", "hit@1"])["q"]
    # DCG@3 = 1/log2(2) = 1; IDCG@3 = 2/1 + 1/log2(3) = 2.6309297536
    assert got["ndcg@3"] == pytest.approx(0.38009376671593426, abs=1e-12)
    # DCG@10 = 1 + 2/log2(5) = 1.8613531161; / 2.6309297536
    assert got["ndcg@10"] == pytest.approx(0.7074887171046738, abs=1e-12)
    assert got["recall@2"] == 0.5 and got["recall@4"] == 1.0
    assert got["mrr@10"] == 1.0 and got["hit@1"] == 1.0
    assert got["map@4"] == pytest.approx((1 / 1 + 2 / 4) / 2)  # relevant at ranks 1 and 4, R = 2
    assert got["map@2"] == pytest.approx(1 / 2)  # divided by R, not by min(k, R)


def test_hand_computed_ideal_is_cut_at_k():
    run = {"q": {"x": 0.9, "w": 0.8, "z": 0.7, "y": 0.1}}
    qrels = {"q": {"x": 2, "y": 3, "z": 1}}
    # DCG@3 = 2 + 0 + 1/2 = 2.5; IDCG@3 = 3 + 2/log2(3) + 1/2 = 4.7618595071
    assert per_query(run, qrels, ["ndcg@3"])["q"]["ndcg@3"] == pytest.approx(0.5250049893849101, abs=1e-12)


def test_ties_are_broken_by_doc_id_descending_like_trec_eval():
    assert ranked({"a": 1.0, "b": 1.0, "c": 1.0, "d": 2.0}) == ["d", "c", "b", "a"]
    got = per_query({"q": {"a": 1.0, "b": 1.0, "c": 1.0}}, {"q": {"a": 1}}, ["mrr@10", "hit@1", "ndcg@3", "recall@2"])
    assert got["q"] == {"mrr@10": pytest.approx(1 / 3), "hit@1": 0.0, "ndcg@3": pytest.approx(0.5), "recall@2": 0.0}


def test_mrr_is_cut_at_k_and_missing_rankings_count_zero():
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}
    qrels = {"q1": {"c": 1}, "q2": {"a": 1}}
    assert per_query(run, qrels, ["mrr@2", "mrr@3"]) == {"q1": {"mrr@2": 0.0, "mrr@3": pytest.approx(1 / 3)},
                                                          "q2": {"mrr@2": 0.0, "mrr@3": 0.0}}
    assert evaluate(run, qrels, ["mrr@3"]) == {"mrr@3": pytest.approx(1 / 6)}


def test_no_relevant_document_scores_zero():
    got = per_query({"q": {"a": 1.0}}, {"q": {"a": 0, "b": 0}}, ["ndcg@5", "recall@5", "map@5", "hit@1", "mrr@5"])
    assert set(got["q"].values()) == {0.0}


def test_unknown_metric_is_refused():
    for bad in ("ndcg", "ndcg@0", "precision@5", "mrr@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(60)] + ["D1", "a", "Z"]  # mixed case: byte order matters for ties
    run, qrels = {}, {}
    for q in range(40):
        qid = f"q{q}"
        pool = rng.sample(docs, rng.randint(1, 50))
        # one decimal: many ties; a few queries get all-equal scores
        run[qid] = {d: (1.0 if q % 9 == 0 else round(rng.random(), 1)) for d in pool}
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[qid] = {d: rng.choice([0, 0, 1, 1, 2, 3]) for d in judged}
    return run, qrels


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_pytrec_eval_on_random_runs_with_ties(seed):
    run, qrels = _random_case(seed)
    metrics = ["ndcg@1", "ndcg@5", "ndcg@10", "ndcg@100", "recall@1", "recall@5", "recall@100", "map@5", "map@10",
               "map@100", "hit@1", "hit@5"]
    names = pytrec_eval_measures(metrics)
    measures = {"ndcg_cut.1,5,10,100", "recall.1,5,100", "map_cut.5,10,100", "success.1,5"}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = per_query(run, qrels, metrics)
    assert set(theirs) <= set(ours)
    for qid, values in theirs.items():
        for metric, name in names.items():
            assert ours[qid][metric] == pytest.approx(values[name], abs=1e-9), (qid, metric)
    means = evaluate(run, qrels, metrics)
    for metric, name in names.items():
        assert means[metric] == pytest.approx(sum(v[name] for v in theirs.values()) / len(theirs), abs=1e-9)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_mrr_at_k_equals_pytrec_recip_rank_on_the_cut_run(k):
    run, qrels = _random_case(100 + k)
    cut = {q: {d: scores[d] for d in ranked(scores)[:k]} for q, scores in run.items()}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    ours = per_query(run, qrels, [f"mrr@{k}"])
    for qid, values in theirs.items():
        assert ours[qid][f"mrr@{k}"] == pytest.approx(values["recip_rank"], abs=1e-9)
