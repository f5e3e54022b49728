"""``tune``: check and split the data, mine negatives, evaluate, train both adapters, evaluate again.

Output directory::

    state.json                  settings digest, split, stages done (a re-run resumes, or refuses other settings)
    neighbours.json             each query's nearest documents by the base model (negatives, eval pool)
    checkpoints/<model>/        step-NNNNNNN/ (adapter + optimiser state), log.jsonl (loss, lr per step)
    embedder-adapter/           the trained adapters: Embedder(model, adapter=DIR)
    reranker-adapter/
    eval-before/, eval-after/   the eval harness's output on the held-out queries (with --eval)
    report.md                   data, training and the held-out metrics before and after
    embedder-merged/            with merge: checkpoints with the adapter merged in
    reranker-merged/
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..collection import Collection
from ..errors import InputError
from ..files import read_json, write_json
from ..models.adapters import merge_checkpoint, write_meta
from ..models.embedder import Embedder
from ..models.loading import embedder_name, is_remote, reranker_name
from ..models.qwen3vl import checkpoint_fingerprint, pick_device, resolve_checkpoint
from ..models.reranker import Reranker
from . import report
from .data import TrainingData, checked, held_out, neighbours, pooled, positives, split
from .loop import TrainOptions, TrainResult, read_log, train
from .objectives import EmbedderObjective, RerankerObjective

STAGES = ("embedder", "reranker")
POOL_DEPTH = 100  # a collection's eval corpus: each held-out query's top 100 plus its judged documents


@dataclass
class TuneOptions:
    """What ``tune`` does and where it writes.

    Attributes:
        output: the run's directory (see the module doc); a re-run with the same settings resumes.
        model, reranker: base checkpoints (default: the collection's model, ``$VLSEARCH_EMBEDDER``
            / ``$VLSEARCH_RERANKER``, the Qwen3-VL 2B models).
        stages: "embedder", "reranker" or both.
        train: hyperparameters of the embedder; ``reranker_train`` of the reranker (default: the same).
        val_fraction: share of the queries held out (never trained on; evaluated with ``evaluate``).
        mine_depth: mined negatives kept per query (its nearest documents, positives excluded).
        evaluate: run the eval harness on the held-out queries before and after training.
        rerank_top: documents reranked per query in the evaluation.
        merge: also write each base model with its adapter merged in.
        restart: discard what an earlier run left in ``output`` first.
        device, dtype: model placement (bfloat16 on GPU, float32 on CPU by default).
        progress: progress bars (default: on a terminal); quiet: no messages.
    """

    output: Path
    model: str | None = None
    reranker: str | None = None
    stages: Sequence[str] = STAGES
    train: TrainOptions = field(default_factory=TrainOptions)
    reranker_train: TrainOptions | None = None
    val_fraction: float = 0.2
    mine_depth: int = 30
    evaluate: bool = False
    rerank_top: int = 100
    merge: bool = False
    restart: bool = False
    device: str | None = None
    dtype: str = "auto"
    progress: bool | None = None
    quiet: bool = False


@dataclass
class TuneResult:
    """Where the run wrote its results, and what it measured."""

    output: Path
    adapters: dict[str, Path]
    merged: dict[str, Path]
    training: dict[str, TrainResult | None]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    report: Path


OWNED = ("state.json", "neighbours.json", "checkpoints", "embedder-adapter", "reranker-adapter", "eval-before",
         "eval-after", "cache", "report.md", "embedder-merged", "reranker-merged")


def tune(data: TrainingData, options: TuneOptions) -> TuneResult:
    """Adapt the embedder and the reranker to ``data`` with LoRA; with ``evaluate``, measure the gain.

    Example:
        >>> from vlsearch.tune import from_task, tune, TuneOptions
        >>> tune(from_task("my-task"), TuneOptions(Path("tuned"), evaluate=True))  # doctest: +SKIP
    """
    stages = [s for s in STAGES if s in options.stages]
    unknown = [s for s in options.stages if s not in STAGES]
    if unknown or not stages:
        raise InputError(f"stages must be among {STAGES}, not {list(options.stages)}")
    if options.mine_depth < 0 or options.rerank_top < 1:
        raise InputError("mine_depth must be >= 0 and rerank_top >= 1")
    train_options = {"embedder": options.train, "reranker": options.reranker_train or options.train}
    for value in train_options.values():
        value.check()
    out = Path(options.output).expanduser()
    if options.restart:
        for name in OWNED:
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    say = _say(options)

    data, notes = checked(data)
    task = data.task
    train_q, val_q = split(task, options.val_fraction, options.train.seed)
    if options.evaluate and not val_q:
        raise InputError("evaluation needs held-out queries: give a validation fraction above 0")
    recorded = data.collection.meta.get("model") if data.collection is not None else None
    names = {"embedder": embedder_name(options.model, recorded), "reranker": reranker_name(options.reranker)}
    for role, name in names.items():
        if is_remote(name):
            raise InputError(f"{name}: tuning needs the {role}'s weights here, not a model server")
    say(f"{task.name}: {len(task.qrels)} queries with positives ({len(train_q)} to train on, {len(val_q)} held "
        f"out), {len(task.corpus)} judged documents" + "".join(f"; {n}" for n in notes))

    on_cpu = pick_device(options.device) == "cpu"  # training keeps float32 there (bfloat16 is inference's default)
    loaded = {"device": options.device, "dtype": "float32" if on_cpu and options.dtype == "auto" else options.dtype}
    embedder = Embedder(names["embedder"], **loaded)
    if data.collection is not None:  # the collection's own check: same weights, usable dimension
        Collection(str(data.collection.path), create=False, model=names["embedder"], loaded_embedder=embedder,
                   catalog=data.collection.catalog).embedder
    fingerprints = {"embedder": embedder.fingerprint}
    if "reranker" in stages or options.reranker is not None:
        fingerprints["reranker"] = checkpoint_fingerprint(resolve_checkpoint(names["reranker"]))
    settings = {"stages": stages, "models": names, "val_fraction": options.val_fraction,
                "mine_depth": options.mine_depth, "train": {k: v.record() for k, v in train_options.items()},
                "split": {"train": train_q, "val": val_q}, "qrels": task.qrels}
    state = _state(out, settings, fingerprints)

    depth = options.mine_depth + max(len(positives(task, q)) for q in task.qrels)
    if data.collection is not None and options.evaluate:
        depth = max(depth, POOL_DEPTH)
    ranked = _neighbours(out, data, embedder, [*train_q, *val_q], depth, state, options, say)
    negatives = {q: [d for d in ranked[q] if task.qrels[q].get(d, 0) < 1][:options.mine_depth] for q in ranked}
    eval_task = pooled(task, val_q, ranked, POOL_DEPTH) if data.collection is not None else held_out(task, val_q)
    dims = [int(data.collection.dim)] if data.collection is not None and data.collection.dim else None

    def evaluate(label: str, emb: Any, rr: Any) -> dict[str, Any]:
        from ..eval.runner import EvalOptions, run_eval

        folder = out / f"eval-{label}"
        if (folder / "results.json").is_file() and state["done"].get(f"eval-{label}"):
            return json.loads((folder / "results.json").read_text(encoding="utf-8"))
        say(f"evaluating {label} training: {len(eval_task.queries)} held-out queries, "
            f"{len(eval_task.corpus)} documents")
        results = run_eval([eval_task], EvalOptions(
            output=folder, model=names["embedder"], reranker=names["reranker"] if rr is not None else None,
            rerank_top=options.rerank_top, dims=dims, cache_dir=out / "cache", quiet=True,
            progress=options.progress), embedder=emb, reranker=rr)
        _done(out, state, f"eval-{label}")
        return results

    before = after = None
    # the evaluation reranks with the reranker being tuned, or with the one given when only the embedder is
    reranks = "reranker" in stages or options.reranker is not None
    if options.evaluate:
        base_reranker = Reranker(names["reranker"], **loaded) if reranks else None
        before = evaluate("before", embedder, base_reranker)
        del base_reranker
    del embedder
    _free()

    adapters = {stage: out / f"{stage}-adapter" for stage in stages}
    training: dict[str, TrainResult | None] = {}
    for stage in stages:
        if state["done"].get(stage) and adapters[stage].is_dir():
            say(f"{stage}: trained already ({adapters[stage]})")
            training[stage] = None
            continue
        training[stage] = _train_stage(stage, names[stage], loaded, task, (train_q, val_q), negatives,
                                       train_options[stage], out, state, options, say)

    if options.evaluate:
        tuned_embedder = Embedder(names["embedder"], adapter=adapters.get("embedder"), **loaded)
        tuned_reranker = Reranker(names["reranker"], adapter=adapters.get("reranker"), **loaded) if reranks else None
        after = evaluate("after", tuned_embedder, tuned_reranker)
        del tuned_embedder, tuned_reranker
        _free()

    merged: dict[str, Path] = {}
    if options.merge:
        for stage, adapter in adapters.items():
            merged[stage] = merge_checkpoint(names[stage], adapter, out / f"{stage}-merged")
            say(f"{stage}: merged checkpoint written to {merged[stage]}")
    logs = {stage: read_log(out / "checkpoints" / stage / "log.jsonl") for stage in stages}
    path = report.write(out / "report.md", data=data, names=names, adapters=adapters, merged=merged, logs=logs,
                        training=training, split=(train_q, val_q), before=before, after=after, options=options)
    say(f"wrote {path}")
    return TuneResult(out, adapters, merged, training, before, after, path)


# ---------------------------------------------------------------- state and helpers

def _train_stage(stage: str, name: str, loaded: dict[str, Any], task: Any, split: tuple[list[str], list[str]],
                 negatives: dict[str, list[str]], train_options: TrainOptions, out: Path, state: dict[str, Any],
                 options: TuneOptions, say: Callable[[str], None]) -> TrainResult:
    """Train one model's adapter (resuming its checkpoints) and save it as ``OUT/<stage>-adapter``."""
    cls, objective_cls = (Embedder, EmbedderObjective) if stage == "embedder" else (Reranker, RerankerObjective)
    model = cls(name, batch_invariant=False, **loaded)  # training never runs the invariant path
    objective = objective_cls(model, task, split[0], split[1], negatives, train_options)
    say(f"{stage}: training on {len(split[0])} queries ({_trainable(objective.model)} LoRA parameters)")
    result = train(objective, train_options, out / "checkpoints" / stage, digest=f"{state['digest']}:{stage}",
                   progress=options.progress, say=say)
    _save_adapter(objective.model, out / f"{stage}-adapter", stage, name, model.fingerprint, train_options, result)
    _done(out, state, stage)
    del model, objective
    _free()
    return result


def _say(options: TuneOptions) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not options.quiet:
            print(f"vlsearch tune: {message}", file=sys.stderr, flush=True)
    return say


def _state(out: Path, settings: dict[str, Any], fingerprints: dict[str, str]) -> dict[str, Any]:
    """The run's state file: refuses a directory holding another run, else starts or resumes it."""
    digest = hashlib.sha256(json.dumps({**settings, "fingerprints": fingerprints}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:24]
    state = read_json(out / "state.json")
    if state and state.get("digest") != digest:
        raise InputError(f"{out}: holds a tuning run with other settings, data or models; use another output "
                         "directory, or restart (--restart) to discard it")
    if not state:
        state = {"digest": digest, "settings": settings, "fingerprints": fingerprints, "done": {}}
        write_json(out / "state.json", state)
    return state


def _done(out: Path, state: dict[str, Any], what: str) -> None:
    state["done"][what] = True
    write_json(out / "state.json", state)


def _neighbours(out: Path, data: TrainingData, embedder: Any, qids: list[str], depth: int, state: dict[str, Any],
                options: TuneOptions, say: Callable[[str], None]) -> dict[str, list[str]]:
    """Mined once per run and kept: a resumed run trains on the same negatives."""
    path = out / "neighbours.json"
    saved = read_json(path)
    if saved.get("digest") == state["digest"] and saved.get("depth") == depth:
        ranked = saved["ranked"]
        if data.collection is not None and data.records is not None:  # the mined records join the corpus again
            missing = sorted({d for ids in ranked.values() for d in ids} - set(data.task.corpus))
            for record in data.collection.records(missing):
                data.task.corpus[record.id] = data.records.item(record)
        return ranked
    where = f"collection {data.collection.name!r}" if data.collection is not None else "the corpus"
    say(f"mining negatives: the {depth} nearest documents of {len(qids)} queries in {where}")
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    ranked = neighbours(data, embedder, qids, depth, out / "cache", show and not options.quiet)
    write_json(path, {"digest": state["digest"], "depth": depth, "ranked": ranked})
    return ranked


def _save_adapter(model: Any, folder: Path, role: str, base: str, fingerprint: str, options: TrainOptions,
                  result: TrainResult) -> None:
    """The trained adapter with what it was trained on; written beside, then renamed into place."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    write_meta(tmp, role=role, base_model=base, base_fingerprint=fingerprint, training=options.record(),
               steps=result.steps)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _trainable(model: Any) -> str:
    return f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}"


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
