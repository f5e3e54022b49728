"""Training data for ``vlsearch tune``: where it comes from, how it is checked and split, and the
neighbours that hard negatives are mined from.

A training set is a :class:`~vlsearch.eval.datasets.RetrievalTask` (corpus, queries, qrels,
instructions), so the held-out queries run through the eval harness unchanged. It comes from:

- an eval task directory (or registered task): its corpus, queries and qrels;
- a collection with ``queries`` and ``qrels`` files (BEIR format): documents are the collection's
  records, named in the qrels by record id, by source path (every item of that file) or by
  ``path#page=N`` (one PDF page); relative paths are read from the qrels file's directory;
- (query, document) pairs given in Python.

Neighbours come from the collection's own index (its stored vectors) when there is one, else
from the task's corpus embedded by the current model (exact cosine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..collection import Collection
from ..errors import InputError
from ..eval.datasets import RetrievalTask, read_qrels, read_queries
from ..items import Item, ItemLike
from ..stores import Record

SHOW = 5  # ids listed in an error message


class _Sources:
    """The per-source checks of one collection, shared by the items of its records."""

    def __init__(self, collection: Collection) -> None:
        self.collection, self.entries, self.checked = collection, collection.store.files(), {}

    def item(self, record: Record) -> Callable[[], dict[str, Any]]:
        return lambda: self.collection.model_input(record, self.entries, self.checked)[0].to_dict()


@dataclass
class TrainingData:
    """What ``tune`` trains and evaluates on.

    Attributes:
        task: corpus, queries, judgments and instructions. With a collection the corpus holds the
            judged records only; mined neighbours join it as they are found.
        collection: the collection whose index negatives are mined from (None: the corpus itself).
        source: where the data came from, for the report.
    """

    task: RetrievalTask
    collection: Collection | None = None
    source: str = ""
    records: _Sources | None = None  # builds the model inputs of the collection's records


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:SHOW])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > SHOW else "")


def from_task(task: str | os.PathLike, *, queries: str | os.PathLike | None = None,
              qrels: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None) -> TrainingData:
    """An eval task directory (any layout ``vlsearch eval`` reads) or a registered task name."""
    from ..eval.loader import load_task

    loaded, _ = load_task(task, queries=queries, qrels=qrels, data_dir=data_dir)
    if loaded.candidates is not None:
        raise InputError(f"{loaded.name}: tasks that rank each query against its own candidates cannot be "
                         "trained on (negatives are mined from the whole corpus)")
    return TrainingData(loaded, None, str(task))


def from_collection(collection: Collection, queries: str | os.PathLike, qrels: str | os.PathLike) -> TrainingData:
    """A collection's records as documents, with a queries file (jsonl/tsv) and a qrels file
    (``qid doc grade`` or TREC) naming record ids, source paths or ``path#page=N``."""
    from ..models.reranker import DEFAULT_INSTRUCTION

    queries_path, qrels_path = Path(queries).expanduser(), Path(qrels).expanduser()
    for path in (queries_path, qrels_path):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    if not collection.meta.get("fingerprint"):
        raise InputError(f"collection {collection.name!r} is empty: index some files first")
    judged = read_qrels(qrels_path)
    names = sorted({d for docs in judged.values() for d in docs})
    records = resolve_documents(collection, names, qrels_path.parent.resolve())
    unknown = [d for d in names if d not in records]
    if unknown:
        raise InputError(f"{qrels_path}: {len(unknown)} judged documents are not in collection "
                         f"{collection.name!r}: {_listed(unknown)} (name a record id, a source file, or "
                         "'file.pdf#page=N')")
    corpus: dict[str, Any] = {}
    qrels: dict[str, dict[str, int]] = {}
    sources = _Sources(collection)
    for qid, docs in judged.items():
        for name, grade in docs.items():
            for record in records[name]:
                corpus[record.id] = sources.item(record)
                qrels.setdefault(qid, {})[record.id] = max(grade, qrels.get(qid, {}).get(record.id, grade))
    task = RetrievalTask(collection.name, corpus, read_queries(queries_path), qrels,
                         query_instruction=collection.instruction, rerank_instruction=DEFAULT_INSTRUCTION,
                         source=str(collection.path))
    return TrainingData(task, collection, f"collection {collection.name} ({queries_path.name}, {qrels_path.name})",
                        sources)


def from_pairs(pairs: Sequence[tuple[ItemLike, ItemLike]], *, name: str = "pairs",
               query_instruction: str | None = None) -> TrainingData:
    """(query, relevant document) pairs; equal documents (same content) are one document."""
    if not pairs:
        raise InputError("no training pairs given")
    corpus: dict[str, Any] = {}
    queries: dict[str, Any] = {}
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[str, str] = {}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError(f"pair {i}: expected (query, document)")
        query, document = (Item.of(v).to_dict() for v in pair)
        key = repr(sorted(document.items()))  # content identity for plain values; objects stay apart
        doc = seen.setdefault(key, f"d{len(seen)}")
        corpus.setdefault(doc, document)
        queries[f"q{i}"] = query
        qrels[f"q{i}"] = {doc: 1}
    task = RetrievalTask(name, corpus, queries, qrels, query_instruction=query_instruction, source="pairs")
    return TrainingData(task, None, f"{len(pairs)} pairs")


def resolve_documents(collection: Collection, names: Sequence[str], base: Path) -> dict[str, list[Record]]:
    """The records each qrels name stands for: a record id, a source (all its items) or a PDF page."""
    found: dict[str, list[Record]] = {r.id: [r] for r in collection.records(list(names))}
    files = collection.store.files()
    dim = int(collection.dim or collection.store.dim or 0)
    probe = np.full(dim, 1.0 / np.sqrt(max(dim, 1)), np.float32)  # any vector: the filter picks the rows
    for name in names:
        if name in found:
            continue
        path, _, page = name.partition("#page=")
        source = str((base / Path(path).expanduser()).resolve())
        entry = files.get(source)
        if entry is None or entry.status != "done" or (page and not page.isdigit()):
            continue
        where = f"source = '{source.replace(chr(39), chr(39) * 2)}'" + (f" AND page = {int(page)}" if page else "")
        hits = collection.store.search(probe, k=max(entry.items, 1), where=where, exact=True)
        if hits:
            found[name] = [h.record for h in hits]
    return found


def checked(data: TrainingData) -> tuple[TrainingData, list[str]]:
    """The judged queries only, after refusing bad judgments; returns the data and notes.

    Refused, listing the first few: judgments of unknown queries or documents, judged queries
    without a positive (grade >= 1), empty queries. Queries with no judgment at all are skipped.
    """
    task = data.task
    if not task.corpus:
        raise InputError(f"{task.name}: the corpus is empty")
    unknown_q = sorted(q for q in task.qrels if q not in task.queries)
    if unknown_q:
        raise InputError(f"{task.name}: the qrels judge {len(unknown_q)} queries that are not in the queries: "
                         f"{_listed(unknown_q)}")
    unknown_d = sorted({d for docs in task.qrels.values() for d in docs if d not in task.corpus})
    if unknown_d:
        raise InputError(f"{task.name}: the qrels name {len(unknown_d)} documents that are not in the corpus: "
                         f"{_listed(unknown_d)}")
    no_positive = sorted(q for q, docs in task.qrels.items() if not any(g >= 1 for g in docs.values()))
    if no_positive:
        raise InputError(f"{task.name}: {len(no_positive)} judged queries have no positive document "
                         f"(grade >= 1): {_listed(no_positive)}")
    empty = sorted(q for q in task.qrels if _empty(task.queries[q]))
    if empty:
        raise InputError(f"{task.name}: {len(empty)} queries are empty (no text, image or video): {_listed(empty)}")
    if not task.qrels:
        raise InputError(f"{task.name}: no query has relevance judgments")
    notes = []
    skipped = len(task.queries) - len(task.qrels)
    if skipped:
        notes.append(f"{skipped} queries without judgments skipped")
    queries = {q: task.queries[q] for q in sorted(task.qrels)}
    qrels = {q: {d: g for d, g in task.qrels[q].items()} for q in queries}
    return replace(data, task=replace(task, queries=queries, qrels=qrels)), notes


def _empty(value: Any) -> bool:
    item = value() if callable(value) else value
    if not isinstance(item, Mapping):
        return True
    text = item.get("text")
    texts = text if isinstance(text, (list, tuple)) else [text]
    has_text = any(isinstance(t, str) and t.strip() for t in texts)
    return not has_text and not item.get("image") and not item.get("video")


def positives(task: RetrievalTask, qid: str) -> list[str]:
    """The query's relevant documents, most relevant first (ties in id order)."""
    docs = task.qrels[qid]
    return sorted((d for d, g in docs.items() if g >= 1), key=lambda d: (-docs[d], d))


def split(task: RetrievalTask, fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, validation) query ids: a seeded shuffle, ``fraction`` of the queries held out.

    Raises InputError with the counts when there are too few queries (at least 2 to train on,
    with in-batch negatives, and 1 to validate on when ``fraction`` > 0).
    """
    if not 0 <= fraction < 1:
        raise InputError(f"the validation fraction must be in [0, 1), not {fraction}")
    ids = sorted(task.qrels)
    held = int(round(len(ids) * fraction))
    if fraction > 0:
        held = max(held, 1)
    if len(ids) - held < 2:
        raise InputError(f"{task.name}: {len(ids)} queries with positives are not enough for a validation split "
                         f"of {fraction:.0%}: {held} held out would leave {len(ids) - held} to train on (at least 2 "
                         "needed); add queries or lower the validation fraction")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:held])
    train = sorted(ids[i] for i in order[held:])
    return train, val


def neighbours(data: TrainingData, embedder: Any, qids: Sequence[str], depth: int, cache_dir: Path,
               progress: bool = False) -> dict[str, list[str]]:
    """Each query's ``depth`` nearest documents by the current model, best first.

    With a collection: its own index (the stored vectors), and the records found join the
    corpus. Otherwise: the corpus embedded through the eval harness's cache (so that the
    evaluation before training reuses it), ranked by exact cosine.
    """
    from ..eval.runner import EmbeddingCache

    task = data.task
    cache = EmbeddingCache(cache_dir)
    query_vecs = cache.vectors(embedder, replace(task, queries={q: task.queries[q] for q in qids}), "queries",
                               list(qids), task.query_instruction, progress)
    out: dict[str, list[str]] = {}
    if data.collection is not None and data.records is not None:
        from ..models.contract import truncate_dim

        vectors = truncate_dim(query_vecs, data.collection.dim)
        for qid, vector in zip(qids, vectors):
            hits = data.collection.store.search(vector, k=depth)
            for hit in hits:
                task.corpus.setdefault(hit.record.id, data.records.item(hit.record))
            out[qid] = [h.record.id for h in hits]
        return out
    doc_ids = list(task.corpus)
    doc_vecs = cache.vectors(embedder, task, "corpus", doc_ids, task.doc_instruction, progress)
    k = min(depth, len(doc_ids))
    for start in range(0, len(qids), 256):
        scores = query_vecs[start:start + 256] @ doc_vecs.T  # (q, n)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for qid, row in zip(qids[start:start + 256], top):
            out[qid] = [doc_ids[j] for j in row]
    return out


def pooled(task: RetrievalTask, qids: Sequence[str], ranked: Mapping[str, Sequence[str]], depth: int,
           name: str | None = None) -> RetrievalTask:
    """The task restricted to ``qids``, its corpus to their top ``depth`` neighbours and judged
    documents (TREC pooling: with the current model the top ``depth`` are the same as over the
    whole collection)."""
    keep = {d for q in qids for d in list(ranked[q])[:depth]} | {d for q in qids for d in task.qrels[q]}
    corpus = {d: v for d, v in task.corpus.items() if d in keep}
    return replace(task, name=name or task.name, corpus=corpus, queries={q: task.queries[q] for q in qids},
                   qrels={q: task.qrels[q] for q in qids})


def held_out(task: RetrievalTask, qids: Sequence[str]) -> RetrievalTask:
    """The task with only the held-out queries (the whole corpus)."""
    return replace(task, queries={q: task.queries[q] for q in qids}, qrels={q: task.qrels[q] for q in qids})
