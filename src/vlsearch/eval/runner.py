"""Run retrieval tasks through the production path and score them.

For each task: embed the corpus and the queries with ``Embedder.embed`` (full dimension,
float32, cached on disk in chunks), then for every (dimension, precision) configuration
load the document vectors into a :class:`~vlsearch.stores.lancedb.LanceStore` in a
temporary directory and rank each query with the store's exact ``search`` — the code that
serves ``Collection.search``. MMEB "local" tasks rank each query against its own
candidates through the store's ``where`` filter (``id IN (...)``). With a reranker, the top
``rerank_top`` documents of each ranking are scored with ``Reranker.score`` and re-sorted.

Dimensions and precisions use the embedder's own functions (``truncate_dim``, ``quantize``):

- ``float32``: the truncated, re-normalised vectors; score = cosine (the store's).
- ``int8``: ``quantize(v, "int8")`` rows, cast back to float; score = the cosine of the
  int8 rows (the per-row scale does not change it).
- ``ubinary``: ``quantize(v, "ubinary")`` bits, unpacked to ±1; the cosine of ±1 vectors is
  ``1 - 2 * hamming / d``, so ranking by it is ranking by Hamming distance.

Bytes per vector: ``4 d`` (float32), ``d`` (int8), ``ceil(d / 8)`` (ubinary).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, VlsearchError, in_context
from ..files import atomic_write
from ..models.contract import quantize, truncate_dim
from ..models.loading import DEFAULT_EMBEDDER, load_embedder, load_reranker
from .datasets import RetrievalTask
from .metrics import DEFAULT_METRICS, evaluate, ranked

PRECISIONS = ("float32", "int8", "ubinary")


@dataclass(frozen=True)
class Setting:
    """One first-stage configuration: Matryoshka dimension, precision and search mode (lexical
    search uses neither dimension nor precision: one lexical setting per task)."""

    dim: int
    precision: str
    mode: str = "dense"

    @property
    def name(self) -> str:
        if self.mode == "lexical":
            return "lexical"
        return f"d{self.dim}-{self.precision}" + ("-hybrid" if self.mode == "hybrid" else "")

    @property
    def bytes_per_vector(self) -> int:
        if self.mode == "lexical":
            return 0
        return {"float32": 4 * self.dim, "int8": self.dim, "ubinary": math.ceil(self.dim / 8)}[self.precision]

    def vectors(self, full: np.ndarray) -> np.ndarray:
        """The float32 vectors the store holds for this setting (see the module doc)."""
        cut = truncate_dim(np.asarray(full, np.float32), self.dim)
        coded = quantize(cut, self.precision)  # type: ignore[arg-type]
        if self.precision == "ubinary":
            bits = np.unpackbits(coded, axis=1, count=self.dim)
            return bits.astype(np.float32) * 2.0 - 1.0
        return coded.astype(np.float32)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def model_identity(model: Any) -> dict[str, Any]:
    """What decides a model's outputs: weights fingerprint, dtype, vision budget."""
    return {"fingerprint": model.fingerprint, "dtype": str(getattr(model, "dtype", "")),
            "budget": repr(getattr(model, "budget", ""))}


class EmbeddingCache:
    """Vectors of a task's corpus or queries on disk, one ``.npy`` file per chunk.

    The key is (model identity, task name, role, ids in order, instruction); each chunk is
    written atomically once embedded, so an interrupted run resumes at the first missing
    chunk. Layout: ``ROOT/<key>/meta.json`` and ``chunk-000000.npy`` ... (float32, full dim).
    """

    def __init__(self, root: Path, chunk_size: int = 256) -> None:
        self.root = Path(root)
        self.chunk_size = chunk_size

    def vectors(self, embedder: Any, task: RetrievalTask, role: str, ids: Sequence[str], instruction: str | None,
                progress: bool = False, embedded: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(ids), full dim) float32 unit rows, embedding only the chunks not on disk yet."""
        key = _digest({**model_identity(embedder), "task": task.name, "role": role, "ids": list(ids),
                       "instruction": instruction})
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            chunk = int(json.loads(meta_path.read_text())["chunk_size"])
        else:
            chunk = self.chunk_size
            meta = {"task": task.name, "role": role, "count": len(ids), "chunk_size": chunk,
                    "instruction": instruction, "model": getattr(embedder, "model_id", ""), **model_identity(embedder)}
            atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=2)), "w")
        starts = range(0, len(ids), chunk)
        done = sum(min(chunk, len(ids) - s) for s in starts if (folder / f"chunk-{s // chunk:06d}.npy").is_file())
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(ids), initial=done, unit="item", desc=f"{task.name} {role}", disable=not progress,
                  dynamic_ncols=True, leave=False) as bar:
            for start in starts:
                path = folder / f"chunk-{start // chunk:06d}.npy"
                if path.is_file():
                    parts.append(np.load(path))
                    continue
                block = list(ids[start:start + chunk])
                vecs = self._embed(embedder, task, role, block, instruction)
                atomic_write(path, lambda f, v=vecs: np.save(f, v))
                parts.append(vecs)
                bar.update(len(block))
                if embedded:
                    embedded(len(block))
        if not parts:
            return np.zeros((0, embedder.dim), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    @staticmethod
    def _embed(embedder: Any, task: RetrievalTask, role: str, ids: list[str], instruction: str | None) -> np.ndarray:
        items = []
        for key in ids:
            try:
                items.append(task.item(role, key))
            except VlsearchError as exc:
                raise in_context(f"{task.name}: {role} {key!r}", exc) from None
        try:
            return np.asarray(embedder.embed(items, instruction=instruction, progress=False), np.float32)
        except VlsearchError as exc:
            index = getattr(exc, "item", None)
            if index is None:
                raise
            what = "query" if role == "queries" else "document"
            raise in_context(f"{task.name}: {what} {ids[index]!r}", exc) from None


class RerankCache:
    """Reranker scores per (query, document), appended to a JSON-lines file as each query
    is scored, so an interrupted reranking resumes; keyed by reranker identity, task and
    instruction."""

    def __init__(self, root: Path, reranker: Any, task: RetrievalTask, instruction: str | None) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        key = _digest({**model_identity(reranker), "task": task.name, "instruction": instruction})
        self.path = root / f"rerank-{key}.jsonl"
        self.scores: dict[str, dict[str, float]] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a kill: scored again
                    self.scores.setdefault(row["qid"], {}).update(row["scores"])

    def add(self, qid: str, scores: dict[str, float]) -> None:
        self.scores.setdefault(qid, {}).update(scores)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"qid": qid, "scores": scores}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def modality(value: Any) -> str:
    """The store modality of a corpus entry (deferred entries are images or PDF pages)."""
    if callable(value):
        return "image"
    if value.get("video") is not None:
        return "video"
    return "image" if value.get("image") is not None else "text"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _text(value: Any) -> str:
    """The text of a corpus or query item (images given as callables have none)."""
    if callable(value) or not isinstance(value, dict):
        return value if isinstance(value, str) else ""
    text = value.get("text") or ""
    return " ".join(text) if isinstance(text, list) else str(text)


def first_stage(task: RetrievalTask, doc_ids: Sequence[str], doc_vectors: np.ndarray, query_ids: Sequence[str],
                query_vectors: np.ndarray, setting: Setting, depth: int, workdir: Path,
                progress: bool = False) -> dict[str, dict[str, float]]:
    """Rank every query with the store (LanceDB) in this setting's mode: exact vector search over its
    vectors, BM25 over the documents' text (the store's own full-text search), or both fused by
    reciprocal rank as ``Collection.search`` does."""
    from tqdm.auto import tqdm

    from ..collection import fuse
    from ..locator import Locator
    from ..stores import Record, open_store

    store = open_store(str(workdir / setting.name), dim=setting.dim)
    docs, queries = setting.vectors(doc_vectors), setting.vectors(query_vectors)
    for start in range(0, len(doc_ids), 2000):
        store.add([Record(id=d, source=d, content_hash="", locator=Locator(modality(task.corpus[d])),
                          text=_text(task.corpus[d]) if setting.mode != "dense" else "", vector=docs[i])
                   for i, d in enumerate(doc_ids[start:start + 2000], start)])
    store.optimize()
    run: dict[str, dict[str, float]] = {}
    for i, qid in enumerate(tqdm(query_ids, desc=f"{task.name} {setting.name}", unit="query", disable=not progress,
                                 dynamic_ncols=True, leave=False)):
        where, k = None, min(depth, len(doc_ids))
        if task.candidates is not None:
            allowed = task.candidates[qid]
            where, k = f"id IN ({', '.join(_quote(d) for d in allowed)})", len(allowed)
        words = _text(task.queries[qid]) if setting.mode != "dense" else ""
        dense = [] if setting.mode == "lexical" else store.search(queries[i], k=k, where=where, exact=True)
        lexical = store.lexical_search(words, k=k, where=where) if setting.mode != "dense" and \
            any(c.isalnum() for c in words) else []
        hits = fuse(dense, lexical) if setting.mode == "hybrid" else None
        run[qid] = ({r.id: r.score for r in hits} if hits is not None else
                    {hit.record.id: hit.score for hit in (lexical if setting.mode == "lexical" else dense)})
    return run


def rerank(task: RetrievalTask, run: dict[str, dict[str, float]], reranker: Any, top: int, cache: RerankCache,
           instruction: str | None, progress: bool = False) -> dict[str, dict[str, float]]:
    """The top ``top`` documents of each ranking, scored by the reranker (other documents dropped)."""
    from tqdm.auto import tqdm

    out: dict[str, dict[str, float]] = {}
    for qid in tqdm(list(run), desc=f"{task.name} rerank", unit="query", disable=not progress, dynamic_ncols=True,
                    leave=False):
        head = ranked(run[qid])[:top]
        known = cache.scores.get(qid, {})
        missing = [d for d in head if d not in known]
        if missing:
            query = {k: v for k, v in task.item("queries", qid).items() if k != "instruction"}
            try:
                docs = [task.item("corpus", d) for d in missing]
                scores = reranker.score(query, docs, instruction, progress=False)
            except VlsearchError as exc:
                index = getattr(exc, "item", None)
                where = f"query {qid!r}" + (f", document {missing[index]!r}" if index is not None else "")
                raise in_context(f"{task.name}: {where}", exc) from None
            cache.add(qid, {d: float(s) for d, s in zip(missing, scores)})
        out[qid] = {d: cache.scores[qid][d] for d in head}
    return out


@dataclass
class EvalOptions:
    """What to run: models, configurations, depth, where to write and cache."""

    output: Path
    model: str = DEFAULT_EMBEDDER
    reranker: str | None = None
    rerank_top: int = 100
    dims: Sequence[int] | None = None
    precisions: Sequence[str] = ("float32",)
    depth: int = 100
    limit_queries: int | None = None
    cache_dir: Path | None = None
    data_dir: Path | None = None
    media_root: Path | None = None
    queries: Path | None = None
    qrels: Path | None = None
    language: str | None = None
    modes: Sequence[str] = ("dense",)
    metrics: Sequence[str] = DEFAULT_METRICS
    chunk_size: int = 256
    progress: bool | None = None
    quiet: bool = False
    model_options: dict[str, Any] | None = None
    adapter: str | None = None
    reranker_adapter: str | None = None


def run_eval(tasks: Sequence[str | RetrievalTask], options: EvalOptions, *, embedder: Any = None,
             reranker: Any = None) -> dict:
    """Evaluate ``tasks`` (registered names, directories or loaded tasks); writes ``results.json``,
    ``report.md`` and one ``run.trec`` per task and configuration under ``options.output``.

    ``embedder`` / ``reranker`` may be given already loaded (else loaded from the options).

    Example:
        >>> run_eval(["vidore1-docvqa"], EvalOptions(Path("out"), dims=[2048, 512]))  # doctest: +SKIP
    """
    from ..catalog import vlsearch_home
    from ..version import __version__
    from . import report

    if not tasks:
        raise InputError("no task given")
    bad = [p for p in options.precisions if p not in PRECISIONS]
    if bad:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {bad[0]!r}")
    if options.depth < 1 or options.rerank_top < 1:
        raise InputError("depth and rerank_top must be >= 1")
    show = (options.progress if options.progress is not None else sys.stderr.isatty()) and not options.quiet

    def log(message: str) -> None:
        if not options.quiet:
            print(message, file=sys.stderr, flush=True)

    if embedder is None:
        log(f"loading {options.model}")
        embedder = load_embedder(options.model, **_with_adapter(options.model_options, options.adapter))
    dims = list(options.dims or [embedder.dim])
    for d in dims:
        if not 1 <= d <= embedder.dim:
            raise InputError(f"dim must be between 1 and {embedder.dim}, not {d}")
    from ..collection import MODES

    bad = [m for m in options.modes if m not in MODES]
    if bad:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {bad[0]!r}")
    settings = [Setting(d, p, m) for m in options.modes if m != "lexical" for d in dims for p in options.precisions]
    if "lexical" in options.modes:
        settings.append(Setting(embedder.dim, "float32", "lexical"))
    if options.reranker and reranker is None:
        log(f"loading {options.reranker}")
        reranker = load_reranker(options.reranker, **_with_adapter(options.model_options, options.reranker_adapter))
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    cache_root = Path(options.cache_dir) if options.cache_dir else vlsearch_home() / "eval-cache"
    cache = EmbeddingCache(cache_root, options.chunk_size)
    results = report.new_results(__version__, options, embedder, reranker, settings)
    for name in tasks:
        _run_task(name, options, embedder, reranker, settings, cache, cache_root, results, log, show)
    report.write(output, results)
    log(f"wrote {output / 'results.json'} and {output / 'report.md'}")
    return results


def _with_adapter(options: dict[str, Any] | None, adapter: str | None) -> dict[str, Any]:
    return {**(options or {}), **({"adapter": adapter} if adapter else {})}


def _run_task(name: str | RetrievalTask, options: EvalOptions, embedder: Any, reranker: Any, settings: list[Setting],
              cache: EmbeddingCache, cache_root: Path, results: dict[str, Any], log: Callable[[str], None],
              show: bool) -> None:
    """One task: embed (cached), rank each setting, rerank, score; adds the task to ``results``."""
    from . import report
    from .loader import load_task

    output = Path(options.output)
    started = time.perf_counter()
    if isinstance(name, RetrievalTask):
        task, spec = name, None
    else:
        task, spec = load_task(name, data_dir=options.data_dir, media_root=options.media_root,
                               queries=options.queries, qrels=options.qrels, language=options.language)
    task = task.limited(options.limit_queries)
    if task.name in results["tasks"]:  # two directories with the same name
        task = replace(task, name=next(f"{task.name}-{i}" for i in range(2, 10_000)
                                       if f"{task.name}-{i}" not in results["tasks"]))
    metrics = list(dict.fromkeys([*options.metrics, task.metric]))
    log(f"{task.name}: {len(task.corpus)} documents, {len(task.queries)} queries ({task.source})")
    doc_ids, query_ids = list(task.corpus), list(task.queries)
    doc_vecs = cache.vectors(embedder, task, "corpus", doc_ids, task.doc_instruction, show)
    query_vecs = cache.vectors(embedder, task, "queries", query_ids, task.query_instruction, show)
    entry = report.task_entry(task, spec, options, metrics)
    results["tasks"][task.name] = entry
    rerank_cache = RerankCache(cache_root, reranker, task, task.rerank_instruction or task.query_instruction) \
        if reranker is not None else None
    depth = max(options.depth, options.rerank_top if reranker is not None else 0)
    with tempfile.TemporaryDirectory(prefix="vlsearch-eval-", dir=output) as work:
        for setting in settings:
            run = first_stage(task, doc_ids, doc_vecs, query_ids, query_vecs, setting, depth, Path(work), show)
            report.add_run(output, entry, task, setting, run, evaluate(run, task.qrels, metrics), False)
            if rerank_cache is not None:
                reranked = rerank(task, run, reranker, options.rerank_top, rerank_cache,
                                  task.rerank_instruction or task.query_instruction, show)
                report.add_run(output, entry, task, setting, reranked, evaluate(reranked, task.qrels, metrics),
                               True)
    entry["seconds"] = round(time.perf_counter() - started, 2)
    report.write(output, results)
    for config, value in entry["runs"].items():
        log(f"  {config:28} {task.metric} {100 * value['metrics'][task.metric]:6.2f}")
