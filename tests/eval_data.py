"""Small retrieval datasets in each layout ``vlsearch.eval`` reads, written offline for tests.

Each builder returns the directory and the expected contents (ids, qrels) as plain data,
so tests compare the loader's output with what was written, not with the loader itself.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlsearch.testing import gradient_image

WORDS = ["cat", "dog", "beach", "chart", "page", "video", "image", "text", "query", "answer"]


def png_bytes(seed: int, size: int = 64) -> bytes:
    out = io.BytesIO()
    gradient_image(size, size, seed=seed).save(out, format="PNG")
    return out.getvalue()


def _image_struct(data: bytes | None, path: str | None = None) -> dict:
    """A Hugging Face ``Image`` feature cell as parquet stores it."""
    return {"bytes": data, "path": path}


def _write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def beir_dir(root: Path, docs: int = 12, queries: int = 5) -> dict:
    """BEIR jsonl: text documents (one with an image), queries, graded qrels with a header."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img.png").write_bytes(png_bytes(3))
    corpus = [{"_id": f"d{i}", "title": f"title {WORDS[i % 10]}",
               "text": " ".join(WORDS[(i + j) % 10] for j in range(5))} for i in range(docs)]
    corpus[1]["image"] = "img.png"
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": f"{WORDS[i]} {WORDS[i + 1]}"})
                                                  for i in range(queries + 1)) + "\n")
    qrels = {f"q{i}": {f"d{i}": 2, f"d{(i + 3) % docs}": 1} for i in range(queries)}  # q{queries} unjudged
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, ds in qrels.items() for d, g in ds.items()]
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return {"docs": [r["_id"] for r in corpus], "qrels": qrels, "image_doc": "d1"}


def vidore_beir_dir(root: Path, *, underscore: bool = False, docs: int = 8, lang_dir: str | None = None) -> dict:
    """ViDoRe v2 (``corpus-id``, a ``language`` column) or v3 (``corpus_id``, graded 1/2) layout:
    corpus/ queries/ qrels/ parquet tables named like the hub's files."""
    cid, qid = ("corpus_id", "query_id") if underscore else ("corpus-id", "query-id")
    base = root / lang_dir if lang_dir else root
    corpus = [{cid: i, "image": _image_struct(png_bytes(10 + i))} for i in range(docs)]
    schema = pa.schema([(cid, pa.int64()), ("image", IMAGE_TYPE)])
    _write_parquet(base / "corpus" / "test-00000-of-00001.parquet", corpus, schema)
    queries = [{qid: i, "query": f"where is {WORDS[i]}", "language": "english" if i % 2 == 0 else "french"}
               for i in range(6)]
    _write_parquet(base / "queries" / "test-00000-of-00001.parquet", queries)
    qrels = {str(i): {str(i): 2 if underscore else 1, str((i + 1) % docs): 1} for i in range(6)}
    rows = [{qid: int(q), cid: int(d), "score": g} for q, ds in qrels.items() for d, g in ds.items()]
    _write_parquet(base / "qrels" / "test-00000-of-00001.parquet", rows)
    return {"docs": [str(i) for i in range(docs)], "qrels": qrels,
            "english": [str(q[qid]) for q in queries if q["language"] == "english"]}


def vidore_qa_dir(root: Path) -> dict:
    """ViDoRe v1 QA rows: duplicate image filenames, a repeated query, and a row without a query."""
    rows = [{"query": "what is the revenue", "image": _image_struct(png_bytes(20)), "image_filename": "a.png"},
            {"query": "who signed", "image": _image_struct(png_bytes(21)), "image_filename": "b.png"},
            {"query": None, "image": _image_struct(png_bytes(22)), "image_filename": "c.png"},
            {"query": "what is the revenue", "image": _image_struct(png_bytes(23)), "image_filename": "d.png"},
            {"query": "how many pages", "image": _image_struct(png_bytes(21)), "image_filename": "b.png"}]
    schema = pa.schema([("query", pa.string()), ("image", IMAGE_TYPE), ("image_filename", pa.string())])
    _write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    # queries in order of first appearance; the last row of a repeated query wins
    return {"docs": ["a.png", "b.png", "c.png", "d.png"],
            "qrels": {"q0": {"d.png": 1}, "q1": {"b.png": 1}, "q2": {"b.png": 1}},
            "queries": {"q0": "what is the revenue", "q1": "who signed", "q2": "how many pages"}}


def mmeb_pairs_dir(root: Path, queries: int = 4, candidates: int = 5) -> dict:
    """MMEB-eval image-retrieval rows (t2i): the first candidate of each row is the answer."""
    images = root / "images" / "Toy_t2i"
    images.mkdir(parents=True, exist_ok=True)
    rows, expected = [], {}
    for q in range(queries):
        paths = []
        for c in range(candidates):
            name = f"images/Toy_t2i/{(q + c) % (queries + candidates)}.png"
            if not (root / name).exists():
                (root / name).write_bytes(png_bytes(40 + (q + c) % (queries + candidates)))
            paths.append(name)
        rows.append({"qry_inst": "Find me an everyday image that matches the given caption.",
                     "qry_text": f"{WORDS[q]} on a {WORDS[q + 2]}", "qry_img_path": "",
                     "tgt_inst": "", "tgt_text": [""] * candidates, "tgt_img_path": paths})
        expected[f"q{q}"] = paths
    _write_parquet(root / "test-00000-of-00001.parquet", rows)
    return {"candidates": expected, "qrels": {q: {paths[0]: 1} for q, paths in expected.items()}}


def mmeb_video_rows(root: Path, videos: dict[str, Path]) -> dict:
    """MMEB video-retrieval rows (MSR-VTT style): a caption per row, global over the videos."""
    rows = [{"video_id": vid, "video": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
             "caption": f"a clip of {WORDS[i]}"} for i, (vid, path) in enumerate(videos.items())]
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"docs": list(videos), "qrels": {f"q{i}": {vid: 1} for i, vid in enumerate(videos)}}


def folder_dir(root: Path) -> dict:
    """A user's folder: images, a text note, a two-page PDF; queries.jsonl and qrels.tsv inside."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    gradient_image(64, 64, seed=1).save(root / "photos" / "cat one.png")
    gradient_image(64, 64, seed=2).save(root / "photos" / "dog.jpg")
    (root / "notes.txt").write_text("quarterly revenue grew by ten percent")
    pages = [gradient_image(120, 160, seed=s) for s in (5, 6)]
    pages[0].save(root / "report.pdf", save_all=True, append_images=pages[1:], resolution=72)
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"_id": "q1", "text": "a cat"}, {"_id": "q2", "text": "revenue"},
                                           {"_id": "q3", "text": "the second page"}]) + "\n")
    (root / "qrels.tsv").write_text("q1\tphotos/cat one.png\t1\nq2\tnotes.txt\t1\nq2\treport.pdf#page=1\t1\n"
                                    "q3\treport.pdf#page=2\t1\n")
    return {"docs": ["notes.txt", "photos/cat one.png", "photos/dog.jpg", "report.pdf#page=1", "report.pdf#page=2"],
            "qrels": {"q1": {"photos/cat one.png": 1}, "q2": {"notes.txt": 1, "report.pdf#page=1": 1},
                      "q3": {"report.pdf#page=2": 1}}}
