"""MMEB-V2 retrieval tasks as the official evaluation (TIGER-AI-Lab VLM2Vec) lays them out.

Two layouts, one row per query:

- **Pairs** (image retrieval: MSCOCO_t2i, VisDial, CIRR, WebQA, ...; hub
  ``TIGER-Lab/MMEB-eval``, config = task, split ``test``): ``qry_text`` (with an
  ``<|image_1|>`` marker where the query image goes), ``qry_img_path`` (may be empty),
  ``tgt_text`` and ``tgt_img_path`` (lists, one entry per candidate; the first candidate
  is the answer), optional ``qry_inst``/``tgt_inst``. Evaluation is *local*: each query is
  ranked against its own candidates only. A candidate's id is its image path, or
  ``path:caption`` when candidates carry text (VLM2Vec's de-duplication key), or the caption
  alone for text candidates; the corpus is the union of all candidates.
- **Video captions** (MSR-VTT, MSVD, DiDeMo, YouCook2, VATEX; hub ``VLM2Vec/<task>``):
  ``video_id``, ``video`` (a path under the video root) and ``caption`` (a string, or a
  list whose first entry is used). Evaluation is *global*: each caption is ranked against
  every video of the task; its own video is the one relevant document.

Media paths are relative to ``media_root`` (the images / videos downloaded with the
benchmark; default: the directory the rows were read from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .datasets import DocLike, ItemDict, RetrievalTask, media_value
from .hub import Rows

IMAGE_TOKEN = "<|image_1|>"


def _clean(text: Any) -> str:
    return " ".join(str(text or "").replace(IMAGE_TOKEN, " ").split())


def is_pairs(columns: list[str]) -> bool:
    return {"qry_text", "tgt_text", "tgt_img_path"} <= set(columns)


def is_video_captions(columns: list[str]) -> bool:
    return {"video_id", "video", "caption"} <= set(columns)


def pairs_task(name: str, rows: Rows, *, media_root: Path | None = None, source: str = "") -> RetrievalTask:
    """An MMEB image-retrieval task (local evaluation over per-query candidates)."""
    if not is_pairs(rows.columns):
        raise InputError(f"{name}: not MMEB pairs rows (need qry_text, tgt_text, tgt_img_path; has {rows.columns})")
    n = rows.length
    texts, tgt_texts, tgt_paths = rows.column("qry_text"), rows.column("tgt_text"), rows.column("tgt_img_path")
    qry_paths = rows.column("qry_img_path") if "qry_img_path" in rows.columns else [None] * n
    qry_insts = rows.column("qry_inst") if "qry_inst" in rows.columns else [None] * n
    tgt_insts = rows.column("tgt_inst") if "tgt_inst" in rows.columns else [None] * n
    corpus: dict[str, DocLike] = {}
    queries: dict[str, DocLike] = {}
    qrels: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[str]] = {}
    for i in range(n):
        qid = f"q{i}"
        query: ItemDict = {}
        if _clean(texts[i]):
            query["text"] = _clean(texts[i])
        image = media_value(qry_paths[i], media_root)
        if image is not None:
            query["image"] = image
        if qry_insts[i] and _clean(qry_insts[i]):
            query["instruction"] = _clean(qry_insts[i])
        captions = [_clean(t) for t in (tgt_texts[i] or [])]
        paths = list(tgt_paths[i] or [])
        if len(captions) != len(paths):
            if any(captions):
                raise InputError(f"{name}: row {i}: {len(captions)} candidate texts for {len(paths)} images")
            captions = [""] * len(paths)
        names = []
        for caption, path in zip(captions, paths):
            key = (f"{path}:{caption}" if caption else str(path)) if path else caption
            if not key:
                raise InputError(f"{name}: row {i}: a candidate with neither text nor image")
            if key not in corpus:
                item: ItemDict = {}
                if caption:
                    item["text"] = caption
                if path:
                    item["image"] = media_value(path, media_root)
                corpus[key] = item
            names.append(key)
        if not names:
            raise InputError(f"{name}: row {i}: no candidates")
        queries[qid] = query
        qrels[qid] = {names[0]: 1}
        candidates[qid] = list(dict.fromkeys(names))
    doc_instruction = next((_clean(t) for t in tgt_insts if t and _clean(t)), None)
    return RetrievalTask(name, corpus, queries, qrels, candidates=candidates, metric="hit@1", source=source,
                         doc_instruction=doc_instruction)


def video_task(name: str, rows: Rows, *, media_root: Path | None = None, source: str = "") -> RetrievalTask:
    """An MMEB video-retrieval task: captions against every video (global evaluation)."""
    if not is_video_captions(rows.columns):
        raise InputError(f"{name}: not MMEB video rows (need video_id, video, caption; has {rows.columns})")
    corpus: dict[str, DocLike] = {}
    queries: dict[str, DocLike] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i, (video_id, video, caption) in enumerate(zip(rows.column("video_id"), rows.column("video"),
                                                       rows.column("caption"))):
        if isinstance(caption, (list, tuple)):
            caption = caption[0] if caption else ""
        video_id = str(video_id)
        corpus.setdefault(video_id, {"video": media_value(video, media_root)})
        if _clean(caption):
            queries[f"q{i}"] = {"text": _clean(caption)}
            qrels[f"q{i}"] = {video_id: 1}
    return RetrievalTask(name, corpus, queries, qrels, metric="hit@1", source=source)
