"""Hugging Face hub layouts (ViDoRe v1/v2/v3, JinaVDR, VisRAG, MTEB), online or from a copy.

Online, tables come from ``datasets.load_dataset``; offline, the same files are read from
a local copy of the dataset repository (``huggingface-cli download --repo-type dataset
REPO --local-dir DIR``), with pyarrow. Images stay undecoded until they are embedded.

Layouts (checked against the official loaders, see ``registry.py`` for sources):

- **BEIR-parquet** (``*_beir`` ViDoRe v1, ViDoRe v2, ViDoRe v3, JinaVDR, VisRAG, ViDoSeek):
  three tables in ``corpus/``, ``queries/``, ``qrels/`` (``<split>-*.parquet``); JinaVDR's
  multilingual sets put them under ``<lang>/corpus`` etc. Ids are ``corpus-id``/``query-id``
  (ViDoRe v1/v2, JinaVDR) or ``corpus_id``/``query_id`` (ViDoRe v3); the corpus has
  ``image``; queries have ``query`` and, in ViDoRe v2/v3, ``language`` (filtered on when a
  language is asked for); qrels have ``score`` (graded 1/2 in ViDoRe v3).
- **ViDoRe v1 QA** (``vidore/docvqa_test_subsampled`` ...): one table of rows ``query``,
  ``image``, ``image_filename``; the corpus is the distinct ``image_filename`` values,
  queries are the distinct non-empty ``query`` values (ids ``q0, q1, ...`` in order of first
  appearance), and each query's relevant page is the ``image_filename`` of its last row —
  as vidore-benchmark's ``ViDoReEvaluatorQA`` builds them.
- **MTEB text retrieval** (``mteb/scifact`` ...): configs ``corpus`` (``_id``, ``title``,
  ``text``), ``queries`` (``_id``, ``text``) and ``default`` (qrels). A local copy in the
  BEIR jsonl layout is read by ``datasets.load_beir_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputError, MissingExtraError, VlsearchError
from .datasets import DocLike, ItemDict, RetrievalTask, media_value, read_jsonl

CORPUS_IDS = ("corpus-id", "corpus_id", "_id", "id", "docid")
QUERY_IDS = ("query-id", "query_id", "_id", "id", "qid")
QUERY_TEXT = ("query", "text")


class Rows:
    """Column access and lazy cell access over a pyarrow table, a ``datasets.Dataset`` or a list
    of dicts, so that image cells are read only when an item is built."""

    def __init__(self, columns: Sequence[str], column: Callable[[str], list], cell: Callable[[int, str], Any],
                 length: int) -> None:
        self.columns, self._column, self.cell, self.length = list(columns), column, cell, length

    def column(self, name: str) -> list:
        return list(self._column(name))

    def first(self, names: Sequence[str], what: str) -> str:
        found = next((n for n in names if n in self.columns), None)
        if found is None:
            raise InputError(f"{what}: none of the columns {list(names)} (has {self.columns})")
        return found

    @classmethod
    def of(cls, table: Any) -> Rows:
        if isinstance(table, list):
            cols = list(dict.fromkeys(k for r in table for k in r))
            return cls(cols, lambda c: [r.get(c) for r in table], lambda i, c: table[i].get(c), len(table))
        if hasattr(table, "column_names") and hasattr(table, "select_columns"):  # datasets.Dataset
            return cls(table.column_names, lambda c: table[c], lambda i, c: table[i][c], len(table))
        return cls(table.column_names, lambda c: table.column(c).to_pylist(),  # pyarrow.Table
                   lambda i, c: table.column(c)[i].as_py(), table.num_rows)


# ---------------------------------------------------------------- local copies
def data_files(directory: Path, split: str | None) -> list[Path]:
    """The parquet (else jsonl) files of a table directory, the split's own when named so."""
    directory = Path(directory)
    for ext in ("parquet", "jsonl"):
        files = sorted(p for p in directory.rglob(f"*.{ext}") if p.is_file())
        if split:
            own = [p for p in files if p.name.startswith((f"{split}-", f"{split}.")) or p.parent.name == split]
            files = own or files
        if files:
            return files
    return []


def read_table(directory: Path, split: str | None = "test") -> Rows:
    """All rows of the parquet/jsonl files in ``directory`` as one table."""
    files = data_files(directory, split)
    if not files:
        raise InputError(f"{directory}: no .parquet or .jsonl files")
    if files[0].suffix == ".jsonl":
        return Rows.of([row for f in files for row in read_jsonl(f)])
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in files]
    return Rows.of(pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0])


def is_beir_parquet(root: Path, lang: str | None = None) -> bool:
    base = Path(root) / lang if lang else Path(root)
    return all(data_files(base / part, None) for part in ("corpus", "queries", "qrels"))


# ---------------------------------------------------------------- the hub (datasets)
def hub_table(repo: str, *, config: str | None = None, data_dir: str | None = None, split: str = "test",
              revision: str | None = None) -> Rows:
    """One table of a hub dataset through ``datasets.load_dataset`` (cached; works offline once cached)."""
    try:
        import datasets
    except ImportError:
        raise MissingExtraError("datasets", "eval") from None
    try:
        table = datasets.load_dataset(repo, config, data_dir=data_dir, split=split, revision=revision)
    except Exception as exc:  # the hub, the network or the cache: say which dataset
        raise VlsearchError(f"{repo}{'/' + (config or data_dir) if (config or data_dir) else ''}: cannot load split "
                         f"{split!r}: {exc}") from exc
    return Rows.of(table)


def beir_tables(source: str | Path, *, split: str = "test", lang: str | None = None, hub: bool = False,
                configs: bool = False, revision: str | None = None) -> tuple[Rows, Rows, Rows]:
    """(corpus, queries, qrels) of a BEIR-parquet dataset from a local copy or the hub.

    ``configs=True`` loads hub configs named corpus/queries/qrels instead of data dirs.
    """
    parts = ("corpus", "queries", "qrels")
    if not hub:
        base = Path(source) / lang if lang else Path(source)
        return tuple(read_table(base / p, split) for p in parts)  # type: ignore[return-value]
    prefix = f"{lang}/" if lang else ""
    if configs:
        return tuple(hub_table(str(source), config=p, split=split, revision=revision) for p in parts)  # type: ignore
    return tuple(hub_table(str(source), data_dir=prefix + p, split=split, revision=revision)  # type: ignore
                 for p in parts)


def beir_task(name: str, corpus: Rows, queries: Rows, qrels: Rows, *, language: str | None = None,
              root: Path | None = None, source: str = "") -> RetrievalTask:
    """A task from BEIR-style tables (hyphen or underscore id columns, image or text corpus)."""
    cid = corpus.first(CORPUS_IDS, f"{name} corpus")
    docs: dict[str, DocLike] = {}
    text_cols = [c for c in ("title", "text") if c in corpus.columns]
    titles = {c: corpus.column(c) for c in text_cols}
    for i, doc_id in enumerate(corpus.column(cid)):
        if "image" in corpus.columns:
            docs[str(doc_id)] = _lazy_media(corpus, i, "image", root)
        else:
            texts = [str(titles[c][i]) for c in text_cols if titles[c][i]]
            docs[str(doc_id)] = {"text": " ".join(t.strip() for t in texts)}
    qid_col = queries.first(QUERY_IDS, f"{name} queries")
    text_col = queries.first(QUERY_TEXT, f"{name} queries")
    langs = queries.column("language") if language and "language" in queries.columns else None
    items: dict[str, DocLike] = {}
    for i, (qid, text) in enumerate(zip(queries.column(qid_col), queries.column(text_col))):
        if langs is not None and langs[i] != language:
            continue
        if str(qid) in items:
            raise InputError(f"{name}: query id {qid} appears twice" + (
                " (one per language? choose one with --language)" if "language" in queries.columns else ""))
        if text:
            items[str(qid)] = {"text": str(text)}
    if language and langs is None:
        raise InputError(f"{name}: language {language!r} asked, but the queries have no 'language' column")
    q_col, d_col = qrels.first(QUERY_IDS, f"{name} qrels"), qrels.first(CORPUS_IDS, f"{name} qrels")
    judged: dict[str, dict[str, int]] = {}
    for qid, doc, score in zip(qrels.column(q_col), qrels.column(d_col), qrels.column("score")):
        if str(qid) in items:
            judged.setdefault(str(qid), {})[str(doc)] = int(score)
    return RetrievalTask(name, docs, items, judged, source=source)


def vidore_qa_task(name: str, rows: Rows, *, root: Path | None = None, source: str = "") -> RetrievalTask:
    """ViDoRe v1 QA rows (query, image, image_filename) as a task (see the module doc)."""
    for col in ("query", "image", "image_filename"):
        rows.first([col], name)
    corpus: dict[str, DocLike] = {}
    qids: dict[str, str] = {}
    target: dict[str, str] = {}
    for i, (query, filename) in enumerate(zip(rows.column("query"), rows.column("image_filename"))):
        filename = str(filename)
        if filename not in corpus:
            corpus[filename] = _lazy_media(rows, i, "image", root)
        if query is not None and str(query).strip():
            qids.setdefault(str(query), f"q{len(qids)}")
            target[str(query)] = filename  # the last row of a query wins, as in vidore-benchmark
    queries: dict[str, DocLike] = {qid: {"text": text} for text, qid in qids.items()}
    qrels = {qids[text]: {filename: 1} for text, filename in target.items()}
    return RetrievalTask(name, corpus, queries, qrels, source=source)


def _lazy_media(rows: Rows, index: int, column: str, root: Path | None) -> Callable[[], ItemDict]:
    def build() -> ItemDict:
        return {column: media_value(rows.cell(index, column), root)}

    return build
