"""``report.md`` of a tuning run: the data, the training, and the held-out metrics before and after."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..files import atomic_write
from .loop import TrainResult, mean_loss

#: the metrics the report compares (all of the eval harness's are in eval-*/results.json)
SHOWN = ("ndcg@10", "recall@10", "recall@100")


def metrics_of(results: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """{configuration: {metric: value}} of a one-task eval result ({} when there is none)."""
    if not results or not results.get("tasks"):
        return {}
    entry = next(iter(results["tasks"].values()))
    return {config: dict(run["metrics"]) for config, run in entry["runs"].items()}


def comparison(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """Markdown table rows: each configuration and metric, before, after and the change (×100)."""
    old, new = metrics_of(before), metrics_of(after)
    lines = ["| configuration | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for config in new:
        # the reranked configuration compares the tuned pipeline with the base pipeline
        for metric in SHOWN:
            a = old.get(config, {}).get(metric)
            b = new[config].get(metric)
            if a is None or b is None:
                continue
            lines.append(f"| {config} | {metric} | {100 * a:.2f} | {100 * b:.2f} | {100 * (b - a):+.2f} |")
    return lines


def _number(value: float, digits: int = 4) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def write(path: Path, *, data: Any, names: Mapping[str, str], adapters: Mapping[str, Path],
          merged: Mapping[str, Path], logs: Mapping[str, Sequence[Mapping[str, Any]]],
          training: Mapping[str, TrainResult | None], split: tuple[Sequence[str], Sequence[str]],
          before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, options: Any) -> Path:
    task = data.task
    train_q, val_q = split
    lines = ["# vlsearch tune", "",
             f"- data: {data.source or task.name}: {len(train_q)} training queries, {len(val_q)} held out "
             f"(validation fraction {options.val_fraction}, seed {options.train.seed})",
             f"- negatives: the {options.mine_depth} nearest documents of each query by the base embedder, "
             "positives excluded" + (f" (collection {data.collection.name!r}'s index)" if data.collection is not None
                                    else " (the corpus, exact cosine)")]
    for stage, adapter in adapters.items():
        lines.append(f"- {stage}: `{names[stage]}` + adapter `{adapter}`"
                     + (f", merged: `{merged[stage]}`" if stage in merged else ""))
    lines += ["", "## Training", "",
              "| model | steps | loss (first 5 steps) | loss (last 5 steps) | held-out loss | samples/s |",
              "|---|---:|---:|---:|---:|---:|"]
    for stage in adapters:
        log = logs.get(stage, [])
        steps = max((e["step"] for e in log), default=0)
        val = [e["val_loss"] for e in log if "val_loss" in e]
        result = training.get(stage)
        rate = result.samples_per_second if result is not None else math.nan
        lines.append(f"| {stage} | {steps} | {mean_loss(log, True):.4f} | {mean_loss(log, False):.4f} | "
                     f"{_number(val[-1] if val else math.nan)} | {_number(rate, 2)} |")
    lines += ["", "Samples are training queries (each with its positive and mined negatives); the loss per step is "
              "in `checkpoints/<model>/log.jsonl`.", ""]
    if after is not None:
        lines += ["## Held-out retrieval", "",
                  f"{len(val_q)} queries never trained on, through the eval harness (`eval-before/`, `eval-after/`). "
                  "Scores ×100; `+rerank`: the top documents reranked (base reranker before, tuned after).", ""]
        lines += comparison(before, after) + [""]
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda f: f.write(text), "w")
    return path
