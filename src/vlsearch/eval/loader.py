"""``load_task``: a registered task name or a directory → a :class:`RetrievalTask`.

A registered task is read from a local copy when one is found under ``data_dir`` (tried:
``DATA_DIR/<hub repo id>``, ``DATA_DIR/<repo name>``, ``DATA_DIR/<task name>``; MMEB-eval
tasks also ``.../<config>``), else from the Hugging Face hub through ``datasets``.

A directory is recognised by its content:

=====================================================  ==========================================
``vlsearch-task.json``                                 ``{"layout": ..., "name", "metric",
                                                       "query_instruction", "language", ...}``
``corpus/``, ``queries/``, ``qrels/`` tables           BEIR-parquet (ViDoRe v2/v3, JinaVDR ...)
``corpus.jsonl`` + ``queries.jsonl`` + ``qrels/``      BEIR
tables with ``query``, ``image``, ``image_filename``   ViDoRe v1 QA
tables with ``qry_text``, ``tgt_text``, ``tgt_img_path``  MMEB pairs (image retrieval)
tables with ``video_id``, ``video``, ``caption``       MMEB video retrieval
anything else                                          a folder of files + queries + qrels
=====================================================  ==========================================
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import hub, mmeb
from .datasets import RetrievalTask, load_beir_dir, load_folder
from .registry import TASKS, TaskSpec

LAYOUTS = ("beir", "beir-parquet", "mteb", "vidore-qa", "mmeb-pairs", "mmeb-video", "folder")


def load_task(task: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
              media_root: str | os.PathLike | None = None, queries: str | os.PathLike | None = None,
              qrels: str | os.PathLike | None = None,
              language: str | None = None) -> tuple[RetrievalTask, TaskSpec | None]:
    """The task and, for a registered one, its spec.

    Args:
        task: a registered name (``vlsearch eval --list``) or a dataset directory.
        data_dir: where local copies of registered datasets live (default ``$VLSEARCH_EVAL_DATA``).
        media_root: images/videos of MMEB tasks (default: the dataset directory).
        queries, qrels: files for a folder task.
        language: keep only queries whose ``language`` column has this value (ViDoRe v2/v3),
            instead of the registered default.

    Example:
        >>> task, spec = load_task("vidore1-docvqa")  # doctest: +SKIP
    """
    data_dir = data_dir or os.environ.get("VLSEARCH_EVAL_DATA")
    root = Path(media_root).expanduser().resolve() if media_root else None
    name = str(task)
    if name in TASKS:
        spec = TASKS[name]
        local = _local_copy(spec, Path(data_dir).expanduser()) if data_dir else None
        if language:
            spec = replace(spec, language=language)
        loaded = _load_local(local, spec.layout, _spec_options(spec), root) if local else _load_hub(spec, root)
        loaded = replace(loaded, name=spec.name, metric=spec.metric,
                         query_instruction=loaded.query_instruction or spec.query_instruction,
                         source=loaded.source or spec.hub)
        return loaded, spec
    path = Path(name).expanduser()
    if not path.is_dir():
        raise InputError(f"{name}: neither a registered task (vlsearch eval --list) nor a directory")
    path = path.resolve()
    options: dict[str, Any] = {}
    descriptor = path / "vlsearch-task.json"
    if descriptor.is_file():
        try:
            options = json.loads(descriptor.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{descriptor}: not JSON: {exc}") from None
    if language:
        options["language"] = language
    layout = options.get("layout") or detect_layout(path, bool(queries or qrels))
    if layout not in LAYOUTS:
        raise InputError(f"{descriptor}: layout must be one of {LAYOUTS}, not {layout!r}")
    if layout == "folder":
        loaded = load_folder(path, queries=queries, qrels=qrels, name=options.get("name"))
    else:
        loaded = _load_local(path, layout, options, root)
    for key in ("name", "metric", "query_instruction", "doc_instruction", "rerank_instruction"):
        if options.get(key):
            loaded = replace(loaded, **{key: options[key]})
    return loaded, None


def detect_layout(path: Path, folder: bool = False) -> str:
    """The layout of a dataset directory (see the module doc)."""
    if folder:
        return "folder"
    if hub.is_beir_parquet(path):
        return "beir-parquet"
    if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
        return "beir"
    files = hub.data_files(path, None)
    if files:
        columns = _columns(files[0])
        if mmeb.is_pairs(columns):
            return "mmeb-pairs"
        if mmeb.is_video_captions(columns):
            return "mmeb-video"
        if {"query", "image", "image_filename"} <= set(columns):
            return "vidore-qa"
    return "folder"


def _columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return list(json.loads(line))
    return []


def _spec_options(spec: TaskSpec) -> dict[str, Any]:
    return {"split": spec.split, "language": spec.language, "lang_dir": spec.lang_dir, "name": spec.name}


def _local_copy(spec: TaskSpec, data_dir: Path) -> Path | None:
    repo_name = spec.hub.rsplit("/", 1)[-1]
    tries = [data_dir / spec.hub, data_dir / repo_name, data_dir / spec.name]
    if spec.config:
        tries = [base / spec.config for base in tries[:2]] + [data_dir / spec.config] + tries
    return next((p for p in tries if p.is_dir()), None)


def _load_local(path: Path, layout: str, options: dict[str, Any], media_root: Path | None) -> RetrievalTask:
    name = options.get("name") or path.name
    split = options.get("split", "test")
    root = media_root or path
    if layout == "beir" or (layout == "mteb" and (path / "corpus.jsonl").is_file()):
        return load_beir_dir(path, name=name, split=split)
    if layout in ("beir-parquet", "mteb"):
        corpus, queries, qrels = hub.beir_tables(path, split=split, lang=options.get("lang_dir"))
        return hub.beir_task(name, corpus, queries, qrels, language=options.get("language"), root=root,
                             source=str(path))
    rows = hub.read_table(path, split)
    if layout == "vidore-qa":
        return hub.vidore_qa_task(name, rows, root=root, source=str(path))
    if layout == "mmeb-pairs":
        return mmeb.pairs_task(name, rows, media_root=root, source=str(path))
    if layout == "mmeb-video":
        return mmeb.video_task(name, rows, media_root=root, source=str(path))
    raise InputError(f"{path}: unknown layout {layout!r}")


def _load_hub(spec: TaskSpec, media_root: Path | None) -> RetrievalTask:
    source = spec.hub + (f" ({spec.config})" if spec.config else "")
    if spec.layout == "beir-parquet":
        corpus, queries, qrels = hub.beir_tables(spec.hub, split=spec.split, lang=spec.lang_dir, hub=True)
        return hub.beir_task(spec.name, corpus, queries, qrels, language=spec.language, source=source)
    if spec.layout == "mteb":
        corpus = hub.hub_table(spec.hub, config="corpus", split="corpus")
        queries = hub.hub_table(spec.hub, config="queries", split="queries")
        qrels = hub.hub_table(spec.hub, config="default", split=spec.split)
        return hub.beir_task(spec.name, corpus, queries, qrels, source=source)
    if spec.layout == "vidore-qa":
        return hub.vidore_qa_task(spec.name, hub.hub_table(spec.hub, split=spec.split), source=source)
    if media_root is None:
        raise InputError(f"{spec.name}: the MMEB tables name image/video files that are downloaded separately "
                         "(VLM2Vec's download script); give their directory with --media-root")
    rows = hub.hub_table(spec.hub, config=spec.config, split=spec.split)
    if spec.layout == "mmeb-pairs":
        return mmeb.pairs_task(spec.name, rows, media_root=media_root, source=source)
    return mmeb.video_task(spec.name, rows, media_root=media_root, source=source)
