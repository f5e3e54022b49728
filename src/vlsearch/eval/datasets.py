"""Retrieval tasks: the common ``RetrievalTask`` shape and the local, file-based loaders.

Every loader returns a :class:`RetrievalTask`: ``corpus`` and ``queries`` map ids to item
dicts (the keys of :class:`vlsearch.Item`: ``text``, ``image``, ``video``) or to zero-argument
callables that build one on demand (PDF pages and dataset images are decoded only when they
are embedded); ``qrels`` map a query id to ``{doc_id: grade}``. Images may be PIL images,
bytes or paths. Hub layouts live in ``hub.py``, MMEB in ``mmeb.py``; ``load_task`` picks one.

Local layouts read here:

- **BEIR** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``): corpus rows
  ``{"_id", "title", "text"}``, queries ``{"_id", "text"}``; qrels TSV ``query-id corpus-id
  score`` with an optional header. Extension: a row may carry ``image`` / ``video`` (paths
  relative to the directory, or lists of them).
- **Folder + qrels**: every supported file under a folder is a document whose id is its
  path relative to the folder (POSIX ``/``): images and videos whole, ``.txt``/``.md`` as
  text, PDFs one document per page with the id ``path.pdf#page=N`` (1-based). Queries come
  from a JSONL (``{"_id"|"id"|"qid", "text"|"query", "image"?}``) or a TSV (``qid<TAB>text``);
  qrels from a TSV (``qid doc grade``) or a TREC qrels file (``qid 0 doc grade``).
  ``queries.jsonl``/``queries.tsv`` and ``qrels.tsv``/``qrels.txt`` at the folder root are
  found without options and are not documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

from ..errors import InputError

ItemDict = dict[str, Any]
DocLike = Union[ItemDict, Callable[[], ItemDict]]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
TEXT_EXTS = {".txt", ".md"}
QUERY_FILES = ("queries.jsonl", "queries.tsv")
QRELS_FILES = ("qrels.tsv", "qrels.txt")


@dataclass
class RetrievalTask:
    """A retrieval task: what to index, what to ask, and what is relevant.

    Attributes:
        name: task name (used in output paths and the embedding cache key).
        corpus: doc id → item dict (or a callable returning one).
        queries: query id → item dict (or a callable returning one).
        qrels: query id → {doc id: grade}; grade >= 1 is relevant.
        query_instruction: embedder instruction for queries (None: the embedder's default).
        doc_instruction: embedder instruction for documents (None: the embedder's default).
        rerank_instruction: reranker instruction (None: the reranker's default).
        candidates: query id → the doc ids it is ranked against (MMEB "local" tasks);
            None ranks every query against the whole corpus.
        metric: the headline metric, e.g. "ndcg@10".
        source: where the data came from (hub id or directory).

    Example:
        >>> t = RetrievalTask("toy", {"d1": {"text": "a cat"}}, {"q1": {"text": "cat"}}, {"q1": {"d1": 1}})
        >>> t.item("queries", "q1")
        {'text': 'cat'}
    """

    name: str
    corpus: dict[str, DocLike]
    queries: dict[str, DocLike]
    qrels: dict[str, dict[str, int]]
    query_instruction: str | None = None
    doc_instruction: str | None = None
    rerank_instruction: str | None = None
    candidates: dict[str, list[str]] | None = None
    metric: str = "ndcg@10"
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def item(self, role: str, key: str) -> ItemDict:
        """The item dict of a query or a document, built now if it was deferred."""
        value = (self.queries if role == "queries" else self.corpus)[key]
        item = value() if callable(value) else value
        if not isinstance(item, Mapping) or not any(_filled(item.get(k)) for k in ("text", "image", "video")):
            raise InputError(f"{self.name}: {'query' if role == 'queries' else 'document'} {key!r} is empty")
        return dict(item)

    def checked(self) -> RetrievalTask:
        """Keep the judged queries that exist; refuse an empty task. Qrels of unknown
        queries are dropped; qrels may name documents missing from the corpus (they count
        as relevant but cannot be retrieved, as in trec_eval)."""
        qrels = {q: dict(d) for q, d in self.qrels.items() if q in self.queries and d}
        queries = {q: v for q, v in self.queries.items() if q in qrels}
        if not self.corpus:
            raise InputError(f"{self.name}: the corpus is empty")
        if not queries:
            raise InputError(f"{self.name}: no query has relevance judgments")
        candidates = self.candidates
        if candidates is not None:
            missing = [q for q in queries if q not in candidates]
            if missing:
                raise InputError(f"{self.name}: queries without candidate lists: {missing[:5]}")
            candidates = {q: candidates[q] for q in queries}
        return replace(self, queries=queries, qrels=qrels, candidates=candidates)

    def limited(self, n: int | None) -> RetrievalTask:
        """The first ``n`` judged queries (load order); with candidate lists the corpus
        shrinks to the candidates of those queries (the others can never be ranked)."""
        task = self.checked()
        if n is None or n >= len(task.queries):
            return task
        if n < 1:
            raise InputError(f"limit_queries must be >= 1, not {n}")
        keep = list(task.queries)[:n]
        queries = {q: task.queries[q] for q in keep}
        qrels = {q: task.qrels[q] for q in keep}
        corpus, candidates = task.corpus, task.candidates
        if candidates is not None:
            candidates = {q: candidates[q] for q in keep}
            wanted = {d for ids in candidates.values() for d in ids}
            corpus = {d: v for d, v in corpus.items() if d in wanted}
        return replace(task, queries=queries, qrels=qrels, corpus=corpus, candidates=candidates)


def _filled(value: Any) -> bool:
    return value is not None and not (isinstance(value, (str, bytes, list, tuple)) and len(value) == 0)


# ---------------------------------------------------------------- shared readers
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (blank lines skipped); errors name the line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise InputError(f"{path}:{number}: not JSON: {exc}") from None
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A qrels file: ``qid doc grade`` (TSV, BEIR) or ``qid iter doc grade`` (TREC).

    Lines with a tab are split on tabs (ids may then hold spaces), others on whitespace;
    a first line whose grade is not a number is a header.

    Example:
        >>> read_qrels(Path("qrels/test.tsv"))  # doctest: +SKIP
        {'q1': {'d3': 1}}
    """
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) not in (3, 4):
                raise InputError(f"{path}:{number}: expected 'qid doc grade' or 'qid 0 doc grade'")
            qid, doc, grade = fields[0], fields[-2], fields[-1]  # TREC: qid iter doc grade
            try:
                value = int(float(grade))
            except ValueError:
                if number == 1:
                    continue  # header
                raise InputError(f"{path}:{number}: grade {grade!r} is not a number") from None
            qrels.setdefault(qid.strip(), {})[doc.strip()] = value
    return qrels


def media_value(value: Any, root: Path | None) -> Any:
    """A dataset's image or video cell as an item value: PIL images and bytes as they are,
    ``{"bytes", "path"}`` structs (Hugging Face ``Image``) as bytes or a path, relative
    paths resolved against ``root``; lists element-wise; empty → None."""
    if value is None or (isinstance(value, (str, bytes, list, tuple)) and len(value) == 0):
        return None
    if isinstance(value, (list, tuple)):
        out = [media_value(v, root) for v in value]
        out = [v for v in out if v is not None]
        return out or None
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        return media_value(value.get("path"), root)
    if isinstance(value, str) and root is not None and "://" not in value[:16] and not value.startswith("data:"):
        path = Path(value)
        return str(path if path.is_absolute() else root / path)
    return value


def row_item(row: Mapping[str, Any], root: Path | None, text_keys: Iterable[str] = ("text",)) -> ItemDict:
    """An item from a row: title + text, and image / video columns when present."""
    texts = [str(row[k]) for k in ("title", *text_keys) if row.get(k)]
    item: ItemDict = {}
    if texts:
        item["text"] = " ".join(t.strip() for t in texts if t.strip())
    for key in ("image", "video"):
        media = media_value(row.get(key), root)
        if media is not None:
            item[key] = media
    return item


def _row_id(row: Mapping[str, Any], keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    raise InputError(f"{where}: a row has none of the id fields {list(keys)}")


# ---------------------------------------------------------------- BEIR directory
def load_beir_dir(root: Path, *, name: str | None = None, split: str = "test") -> RetrievalTask:
    """A BEIR directory: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Example:
        >>> load_beir_dir(Path("scifact"), split="test").metric
        'ndcg@10'
    """
    root = Path(root)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise InputError(f"{root}: not a BEIR directory (no {path.relative_to(root)})")
    corpus = {_row_id(r, ("_id", "id"), "corpus.jsonl"): row_item(r, root) for r in read_jsonl(root / "corpus.jsonl")}
    queries = {_row_id(r, ("_id", "id"), "queries.jsonl"): row_item(r, root)
               for r in read_jsonl(root / "queries.jsonl")}
    return RetrievalTask(name or root.name, corpus, queries, read_qrels(qrels_path), source=str(root))


# ---------------------------------------------------------------- folder + qrels
def read_queries(path: Path, root: Path | None = None) -> dict[str, ItemDict]:
    """Queries from a JSONL (``_id``/``id``/``qid`` + ``text``/``query`` [+ ``image``]) or a
    TSV (``qid<TAB>text``, optional header ``qid<TAB>text``)."""
    path = Path(path)
    base = root or path.parent
    if path.suffix == ".jsonl":
        out = {}
        for r in read_jsonl(path):
            item = row_item(r, base, ("text", "query"))
            if r.get("instruction"):
                item["instruction"] = r["instruction"]
            out[_row_id(r, ("_id", "id", "qid", "query-id"), str(path))] = item
        return out
    out = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            qid, sep, text = line.rstrip("\n\r").partition("\t")
            if not sep:
                raise InputError(f"{path}:{number}: expected 'qid<TAB>query text'")
            if number == 1 and qid.lower() in ("qid", "query-id", "id", "_id"):
                continue
            out[qid] = {"text": text}
    return out


def load_folder(root: Path, *, queries: Path | None = None, qrels: Path | None = None,
                name: str | None = None) -> RetrievalTask:
    """A user's folder of files as the corpus, with its queries and qrels.

    Args:
        root: the folder; doc ids are paths relative to it (``a/b.png``, ``doc.pdf#page=2``).
        queries, qrels: the files (default: ``queries.jsonl|tsv`` and ``qrels.tsv|txt`` in ``root``).

    Example:
        >>> load_folder(Path("photos"), queries=Path("q.jsonl"), qrels=Path("qrels.tsv"))  # doctest: +SKIP
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    queries = Path(queries) if queries else next((root / n for n in QUERY_FILES if (root / n).is_file()), None)
    qrels = Path(qrels) if qrels else next((root / n for n in QRELS_FILES if (root / n).is_file()), None)
    if queries is None or qrels is None:
        raise InputError(f"{root}: a folder task needs queries ({' or '.join(QUERY_FILES)}) and qrels "
                         f"({' or '.join(QRELS_FILES)}), in the folder or given as options")
    skip = {queries.resolve(), qrels.resolve()}
    corpus: dict[str, DocLike] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.resolve() in skip or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        rel, ext = path.relative_to(root).as_posix(), path.suffix.lower()
        if ext in IMAGE_EXTS:
            corpus[rel] = {"image": str(path)}
        elif ext in VIDEO_EXTS:
            corpus[rel] = {"video": str(path)}
        elif ext in TEXT_EXTS:
            corpus[rel] = {"text": path.read_text(encoding="utf-8", errors="replace")}
        elif ext == ".pdf":
            from ..media.pdf import page_count

            for page in range(1, page_count(path) + 1):
                corpus[f"{rel}#page={page}"] = _pdf_page(path, page)
    task = RetrievalTask(name or root.name, corpus, read_queries(queries, root), read_qrels(qrels), source=str(root))
    unknown = sorted({d for docs in task.qrels.values() for d in docs} - set(corpus))
    if unknown:
        raise InputError(f"{qrels}: {len(unknown)} judged documents are not files under {root}, e.g. {unknown[:3]} "
                         "(ids are paths relative to the folder; PDF pages are 'file.pdf#page=N')")
    return task


def _pdf_page(path: Path, page: int) -> Callable[[], ItemDict]:
    def build() -> ItemDict:
        from ..ingest.extractors import piece_item
        from ..locator import Locator

        return {"image": piece_item(str(path), Locator("pdf_page", page=page)).image}

    return build
