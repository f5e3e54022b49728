"""Evaluation outputs: ``results.json``, TREC run and qrels files, and ``report.md``.

Layout of an output directory::

    results.json                       every metric of every task and configuration
    report.md                          ours beside the published numbers; the size/accuracy sweep
    <task>/qrels.txt                   the judgments, TREC qrels format (qid 0 doc grade)
    <task>/<config>/run.trec           the ranking, TREC run format (qid Q0 doc rank score run)

Configurations are ``d<dim>-<precision>`` and ``d<dim>-<precision>+rerank``. Ids holding
whitespace or ``%`` are percent-encoded (``urllib.parse.quote``) in the TREC files, so that
``trec_eval -m ndcg_cut.10 <task>/qrels.txt <task>/<config>/run.trec`` (or pytrec_eval)
recomputes ``results.json``; scores are written with full precision (``repr``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote

from .datasets import RetrievalTask
from .metrics import ranked
from .registry import AGGREGATES, TaskSpec, model_key, published

_SAFE = "".join(chr(c) for c in range(33, 127) if chr(c) != "%")


def trec_id(value: str) -> str:
    """An id safe for whitespace-separated TREC files: ``trec_id("a b.png")`` → ``'a%20b.png'``."""
    return value if value and not any(c.isspace() or c == "%" for c in value) else quote(value, safe=_SAFE)


def untrec_id(value: str) -> str:
    """The inverse of :func:`trec_id`."""
    return unquote(value) if "%" in value else value


def write_run(path: Path, run: Mapping[str, Mapping[str, float]], name: str) -> None:
    """A TREC run file, each query's documents in trec_eval order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, scores in run.items():
            for rank, doc in enumerate(ranked(scores), 1):
                f.write(f"{trec_id(qid)} Q0 {trec_id(doc)} {rank} {float(scores[doc])!r} {name}\n")


def read_run(path: Path) -> dict[str, dict[str, float]]:
    """A TREC run file back into ``{qid: {doc: score}}``."""
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                qid, _, doc, _, score, _ = line.split()
                run.setdefault(untrec_id(qid), {})[untrec_id(doc)] = float(score)
    return run


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """A TREC qrels file (``qid 0 doc grade``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, docs in qrels.items():
            for doc, grade in docs.items():
                f.write(f"{trec_id(qid)} 0 {trec_id(doc)} {int(grade)}\n")


def new_results(version: str, options: Any, embedder: Any, reranker: Any, settings: list[Any]) -> dict[str, Any]:
    return {
        "vlsearch": version, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": options.model if embedder is None else getattr(embedder, "model_id", options.model),
        "fingerprint": getattr(embedder, "fingerprint", None), "adapter": _adapter(embedder),
        "reranker": None if reranker is None else getattr(reranker, "model_id", options.reranker),
        "reranker_adapter": _adapter(reranker),
        "reranker_fingerprint": getattr(reranker, "fingerprint", None) if reranker is not None else None,
        "rerank_top": options.rerank_top if reranker is not None else None, "depth": options.depth,
        "limit_queries": options.limit_queries,
        "settings": [{"name": s.name, "mode": s.mode, "dim": s.dim, "precision": s.precision,
                      "bytes_per_vector": s.bytes_per_vector} for s in settings],
        "tasks": {}, "aggregates": [],
    }


def _adapter(model: Any) -> str | None:
    info = getattr(model, "adapter", None)
    return str(info.path) if info is not None else None


def task_entry(task: RetrievalTask, spec: TaskSpec | None, options: Any, metrics: list[str]) -> dict[str, Any]:
    return {"benchmark": spec.benchmark if spec else None, "source": task.source, "metric": task.metric,
            "metrics": metrics, "documents": len(task.corpus), "queries": len(task.queries),
            "local_candidates": task.candidates is not None, "tags": list(spec.tags) if spec else [],
            "instructions": {"query": task.query_instruction, "document": task.doc_instruction,
                             "rerank": task.rerank_instruction or task.query_instruction},
            "published": {"first_stage": published(spec, options.model),
                          "reranked": published(spec, options.model, options.reranker) if options.reranker else None},
            "runs": {}}


def add_run(output: Path, entry: dict[str, Any], task: RetrievalTask, setting: Any,
            run: Mapping[str, Mapping[str, float]], values: dict[str, float], reranked: bool) -> None:
    """Write a configuration's run file (and the task's qrels) and record its metrics."""
    config = setting.name + ("+rerank" if reranked else "")
    rel = Path(task.name) / config / "run.trec"
    write_run(output / rel, run, config)
    if not (output / task.name / "qrels.txt").is_file():
        write_qrels(output / task.name / "qrels.txt", task.qrels)
    entry["runs"][config] = {"mode": setting.mode, "dim": setting.dim, "precision": setting.precision,
                             "reranked": reranked,
                             "bytes_per_vector": setting.bytes_per_vector, "metrics": values, "run": rel.as_posix()}


def aggregates(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Published benchmark averages with our mean over the tasks of each that were run."""
    out = []
    model, reranker = model_key(results["model"]), model_key(results["reranker"])
    for agg in AGGREGATES:
        members = {n: t for n, t in results["tasks"].items() if agg.tag in t["tags"]}
        if not members:
            continue
        configs = set.intersection(*(set(t["runs"]) for t in members.values()))
        ours = {c: 100 * sum(t["runs"][c]["metrics"][t["metric"]] for t in members.values()) / len(members)
                for c in sorted(configs)}
        out.append({"name": agg.name, "metric": agg.metric, "n_tasks": agg.n_tasks, "ran": len(members),
                    "published": dict(agg.published), "ours": ours, "note": agg.note,
                    "published_first_stage": agg.published.get(model) if model else None,
                    "published_reranked": agg.published.get(reranker) if reranker else None})
    return out


def write(output: Path, results: dict[str, Any]) -> None:
    """``results.json`` and ``report.md`` (rewritten after every task)."""
    results["aggregates"] = aggregates(results)
    (output / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    (output / "report.md").write_text(markdown(results), encoding="utf-8")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The report: per task, every configuration's metrics beside the published score; the
    size/accuracy table when several configurations ran; the benchmark averages."""
    lines = ["# vlsearch eval", "",
             f"- embedder: `{results['model']}`" + (f" + adapter `{results['adapter']}`" if results.get("adapter") else "")
             + f" (weights {results['fingerprint']})",
             f"- reranker: `{results['reranker']}`" + (f" + adapter `{results['reranker_adapter']}`"
                                                       if results.get("reranker_adapter") else "")
             + f" (top {results['rerank_top']})" if results["reranker"] else "- reranker: none",
             f"- depth {results['depth']}" + (f", first {results['limit_queries']} queries per task"
                                               if results["limit_queries"] else ""),
             f"- vlsearch {results['vlsearch']}, {results['created']}", "",
             ("Scores are ×100. *Published*: the model's own number where the official README gives one "
              "for this dataset (— when not published)."), ""]
    for name, task in results["tasks"].items():
        metrics = task["metrics"]
        lines += [f"## {name}", "", (f"{task['benchmark'] or 'dataset'} · `{task['source']}` · {task['documents']} "
                                     f"documents · {task['queries']} queries · main metric **{task['metric']}**"), "",
                  "| configuration | bytes/vector | " + " | ".join(metrics) + " | published |",
                  "|---|---:|" + "---:|" * len(metrics) + "---:|"]
        for config, run in task["runs"].items():
            pub = task["published"]["reranked" if run["reranked"] else "first_stage"]
            cells = " | ".join(_pct(100 * run["metrics"][m]) for m in metrics)
            lines.append(f"| {config} | {run['bytes_per_vector']} | {cells} | {_pct(pub)} |")
        lines.append("")
    lines += _sweep(results)
    aggs = results.get("aggregates") or []
    if aggs:
        lines += ["## Benchmark averages", "",
                  "Ours: the mean of each task's main metric over the registered tasks of the benchmark that ran.", "",
                  "| benchmark | metric | tasks run | configuration | ours | published (this model) | note |",
                  "|---|---|---:|---|---:|---:|---|"]
        for agg in aggs:
            total = agg["n_tasks"] if agg["n_tasks"] is not None else "?"
            for config, value in agg["ours"].items():
                pub = agg["published_reranked"] if config.endswith("+rerank") else agg["published_first_stage"]
                lines.append(f"| {agg['name']} | {agg['metric']} | {agg['ran']} of {total} | {config} | "
                             f"{value:.2f} | {_pct(pub)} | {agg['note']} |")
        lines += ["", ("Published averages: QwenLM/Qwen3-VL-Embedding README (Model Performance). A comparison "
                       "is exact only when all of a benchmark's datasets ran with the same protocol."), ""]
    return "\n".join(lines) + "\n"


def _sweep(results: dict[str, Any]) -> list[str]:
    """One row per configuration: bytes per vector and each task's main metric."""
    configs: dict[str, int] = {}
    for task in results["tasks"].values():
        for config, run in task["runs"].items():
            configs.setdefault(config, run["bytes_per_vector"])
    if len({c.removesuffix("+rerank") for c in configs}) < 2:
        return []
    names = list(results["tasks"])
    lines = ["## Size and accuracy", "", "Main metric of each task by stored vector size.", "",
             "| configuration | bytes/vector | " + " | ".join(names) + " | mean |",
             "|---|---:|" + "---:|" * (len(names) + 1)]
    for config, size in configs.items():
        values = [results["tasks"][n]["runs"].get(config) for n in names]
        scores = [100 * v["metrics"][results["tasks"][n]["metric"]] if v else None for n, v in zip(names, values)]
        known = [s for s in scores if s is not None]
        mean = sum(known) / len(known) if known else None
        lines.append(f"| {config} | {size} | " + " | ".join(_pct(s) for s in scores) + f" | {_pct(mean)} |")
    return lines + [""]
