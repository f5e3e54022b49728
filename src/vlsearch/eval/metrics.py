"""Ranking metrics: nDCG@k, Recall@k, MRR@k, MAP@k and Hit@k, computed as trec_eval does.

A *run* maps a query id to ``{doc_id: score}``; *qrels* map a query id to ``{doc_id: grade}``
(grade >= 1 is relevant, higher is more relevant). Definitions (trec_eval 9, as wrapped by
``pytrec_eval``; the tests check equality with it to 1e-9):

- **Ranking order**: documents sorted by score, highest first; equal scores are ordered by
  doc id in *descending* byte order (trec_eval's ``strcmp(b, a)``). The rank column of a run
  file is ignored, exactly like trec_eval.
- **nDCG@k** (``ndcg_cut.k``): gain = grade, discount ``log2(rank + 1)``, over the top k;
  the ideal DCG ranks all judged grades > 0 highest first, cut at k. 0 when no grade > 0.
- **Recall@k** (``recall.k``): relevant documents in the top k / all relevant documents.
- **MRR@k**: 1 / rank of the first relevant document when it is within the top k, else 0
  (trec_eval's ``recip_rank`` on the run cut at k).
- **MAP@k** (``map_cut.k``): sum of precision@i at each relevant rank i <= k, divided by the
  number of relevant documents (not by min(k, R)).
- **Hit@k** (``success.k``): 1 when a relevant document is within the top k. Hit@1 is the
  MMEB "precision@1 / hit@1".

Means are taken over every query that has judgments (a query without a ranking counts 0).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

METRIC_NAMES = ("ndcg", "recall", "mrr", "map", "hit")
DEFAULT_METRICS = ("ndcg@5", "ndcg@10", "recall@10", "recall@100", "mrr@10", "map@10", "hit@1")


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval order: score descending, ties by doc id descending.

    Example:
        >>> ranked({"a": 1.0, "b": 1.0, "c": 2.0})
        ['c', 'b', 'a']
    """
    return [doc for doc, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)]


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; raises ValueError for an unknown metric."""
    base, _, k = name.partition("@")
    if base not in METRIC_NAMES or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {name!r}: use one of {', '.join(m + '@K' for m in METRIC_NAMES)}")
    return base, int(k)


def query_metric(base: str, k: int, order: Sequence[str], judged: Mapping[str, int]) -> float:
    """One metric for one query's ranking ``order`` (already in trec_eval order)."""
    relevant = {d for d, g in judged.items() if g >= 1}
    top = order[:k]
    if base == "ndcg":
        dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(top))
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        return dcg / idcg if idcg > 0 else 0.0
    if base == "recall":
        return sum(d in relevant for d in top) / len(relevant) if relevant else 0.0
    if base == "mrr":
        return next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    if base == "map":
        hits, total = 0, 0.0
        for i, d in enumerate(top):
            if d in relevant:
                hits += 1
                total += hits / (i + 1)
        return total / len(relevant) if relevant else 0.0
    if base == "hit":
        return 1.0 if any(d in relevant for d in top) else 0.0
    raise ValueError(f"unknown metric {base!r}")


def per_query(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """``{qid: {metric: value}}`` for every judged query (no ranking: all zeros).

    Example:
        >>> per_query({"q": {"a": 0.9, "b": 0.5}}, {"q": {"b": 1}}, ["mrr@10"])
        {'q': {'mrr@10': 0.5}}
    """
    parsed = [(m, *parse_metric(m)) for m in metrics]
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        order = ranked(run.get(qid, {}))
        out[qid] = {m: query_metric(base, k, order, judged) for m, base, k in parsed}
    return out


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries.

    Example:
        >>> evaluate({"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 1.0}}, {"q1": {"b": 1}, "q2": {"a": 2}}, ["hit@1"])
        {'hit@1': 0.5}
    """
    values = per_query(run, qrels, metrics)
    n = len(values)
    return {m: (sum(v[m] for v in values.values()) / n if n else 0.0) for m in metrics}


def pytrec_eval_measures(metrics: Sequence[str]) -> dict[str, str]:
    """Our metric names → pytrec_eval measure keys (mrr@k needs the run cut at k first).

    Example:
        >>> pytrec_eval_measures(["ndcg@10", "hit@1"])
        {'ndcg@10': 'ndcg_cut_10', 'hit@1': 'success_1'}
    """
    names = {"ndcg": "ndcg_cut_{}", "recall": "recall_{}", "map": "map_cut_{}", "hit": "success_{}",
             "mrr": "recip_rank"}
    return {m: names[parse_metric(m)[0]].format(parse_metric(m)[1]) for m in metrics}
