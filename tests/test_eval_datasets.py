"""Dataset loaders: each layout, written by fixtures, read back into a RetrievalTask."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import eval_data
from vlsearch.errors import InputError
from vlsearch.eval import hub
from vlsearch.eval.datasets import read_qrels
from vlsearch.eval.loader import detect_layout, load_task
from vlsearch.eval.registry import AGGREGATES, MODELS, TASKS, model_key, published


def _pixels(value) -> np.ndarray:
    image = value if isinstance(value, Image.Image) else Image.open(io.BytesIO(value) if isinstance(value, bytes)
                                                                     else value)
    return np.asarray(image.convert("RGB"))


def test_beir_directory(tmp_path):
    expected = eval_data.beir_dir(tmp_path / "beir")
    task, spec = load_task(tmp_path / "beir")
    assert spec is None and task.name == "beir" and detect_layout(tmp_path / "beir") == "beir"
    assert list(task.corpus) == expected["docs"]
    assert task.corpus["d0"]["text"].startswith("title cat cat dog")  # title, then text
    assert task.item("corpus", expected["image_doc"])["image"] == str(tmp_path / "beir" / "img.png")
    checked = task.checked()
    assert checked.qrels == expected["qrels"] and list(checked.queries) == list(expected["qrels"])  # unjudged q dropped


@pytest.mark.parametrize("underscore", [False, True], ids=["vidore-v2", "vidore-v3"])
def test_beir_parquet_directory(tmp_path, underscore):
    expected = eval_data.vidore_beir_dir(tmp_path / "d", underscore=underscore)
    task, _ = load_task(tmp_path / "d")
    assert detect_layout(tmp_path / "d") == "beir-parquet"
    assert list(task.corpus) == expected["docs"] and task.qrels == expected["qrels"]
    assert callable(task.corpus["3"])  # images decoded only when embedded
    assert np.array_equal(_pixels(task.item("corpus", "3")["image"]), _pixels(eval_data.png_bytes(13)))
    assert task.item("queries", "0") == {"text": "where is cat"}


def test_registered_task_from_a_local_copy_applies_the_spec(tmp_path):
    expected = eval_data.vidore_beir_dir(tmp_path / "data" / "vidore" / "esg_reports_v2")
    task, spec = load_task("vidore2-esg", data_dir=tmp_path / "data")
    assert spec is TASKS["vidore2-esg"] and task.name == "vidore2-esg" and task.metric == "ndcg@5"
    assert task.query_instruction == spec.query_instruction
    assert sorted(task.queries) == sorted(expected["english"])  # the spec's language filter
    assert set(task.qrels) == set(expected["english"])


def test_jinavdr_language_directory(tmp_path):
    repo = tmp_path / "data" / "jinaai" / "airbnb-synthetic-retrieval_beir"
    expected = eval_data.vidore_beir_dir(repo, lang_dir="en")
    task, _ = load_task("jinavdr-airbnb-synthetic-retrieval-en", data_dir=tmp_path / "data")
    assert list(task.corpus) == expected["docs"] and task.qrels == expected["qrels"]


def test_hub_path_through_datasets_reads_the_same_task(tmp_path):
    pytest.importorskip("datasets")
    eval_data.vidore_beir_dir(tmp_path / "repo", underscore=True)
    local = hub.beir_task("t", *hub.beir_tables(tmp_path / "repo"))
    online = hub.beir_task("t", *hub.beir_tables(str(tmp_path / "repo"), hub=True))  # datasets.load_dataset
    assert list(online.corpus) == list(local.corpus) and online.qrels == local.qrels
    assert online.queries == local.queries
    assert np.array_equal(_pixels(online.item("corpus", "5")["image"]), _pixels(local.item("corpus", "5")["image"]))


def test_vidore_v1_qa_rows(tmp_path):
    expected = eval_data.vidore_qa_dir(tmp_path / "qa")
    task, _ = load_task(tmp_path / "qa")
    assert detect_layout(tmp_path / "qa") == "vidore-qa"
    assert list(task.corpus) == expected["docs"] and task.qrels == expected["qrels"]
    assert {q: task.item("queries", q)["text"] for q in task.queries} == expected["queries"]
    assert np.array_equal(_pixels(task.item("corpus", "b.png")["image"]), _pixels(eval_data.png_bytes(21)))


def test_mmeb_pairs_local_candidates(tmp_path):
    expected = eval_data.mmeb_pairs_dir(tmp_path / "mmeb")
    task, _ = load_task(tmp_path / "mmeb")
    assert detect_layout(tmp_path / "mmeb") == "mmeb-pairs" and task.metric == "hit@1"
    assert task.candidates == expected["candidates"] and task.qrels == expected["qrels"]
    query = task.item("queries", "q1")
    assert query == {"text": "dog on a chart",
                     "instruction": "Find me an everyday image that matches the given caption."}
    first = expected["candidates"]["q0"][0]
    assert task.item("corpus", first)["image"] == str(tmp_path / "mmeb" / first)
    small = task.limited(2)  # the corpus shrinks to the candidates of the kept queries
    assert set(small.corpus) == {d for q in ("q0", "q1") for d in expected["candidates"][q]}
    assert len(small.corpus) < len(task.corpus)


def test_mmeb_video_rows_are_global(tmp_path, media):
    root = tmp_path / "vid"
    root.mkdir()
    expected = eval_data.mmeb_video_rows(root, {"v1": media["video"], "v2": media["video"]})
    task, _ = load_task(root)
    assert detect_layout(root) == "mmeb-video" and task.candidates is None
    assert list(task.corpus) == expected["docs"] and task.qrels == expected["qrels"]
    assert task.item("corpus", "v1") == {"video": str(media["video"])}


def test_folder_with_queries_and_qrels(tmp_path):
    expected = eval_data.folder_dir(tmp_path / "f")
    task, _ = load_task(tmp_path / "f")
    assert sorted(task.corpus) == expected["docs"] and task.qrels == expected["qrels"]
    assert task.item("corpus", "notes.txt") == {"text": "quarterly revenue grew by ten percent"}
    page = task.item("corpus", "report.pdf#page=2")["image"]
    assert isinstance(page, Image.Image) and page.height > page.width
    (tmp_path / "f" / "qrels.tsv").write_text("q1\tmissing.png\t1\n")
    with pytest.raises(InputError, match="missing.png"):
        load_task(tmp_path / "f")


def test_folder_with_explicit_files_and_trec_qrels(tmp_path):
    eval_data.folder_dir(tmp_path / "f")
    (tmp_path / "q.tsv").write_text("qid\ttext\nx1\ta dog\n")
    (tmp_path / "qrels.trec").write_text("x1 0 photos/dog.jpg 1\n")
    task, _ = load_task(tmp_path / "f", queries=tmp_path / "q.tsv", qrels=tmp_path / "qrels.trec")
    assert task.queries == {"x1": {"text": "a dog"}} and task.qrels == {"x1": {"photos/dog.jpg": 1}}
    assert sorted(task.corpus) == ["notes.txt", "photos/cat one.png", "photos/dog.jpg", "report.pdf#page=1",
                                   "report.pdf#page=2"]


def test_read_qrels_formats(tmp_path):
    (tmp_path / "a.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tdoc one\t2\nq1\td2\t0.0\n")
    (tmp_path / "b.txt").write_text("q1 0 d1 1\nq2 Q0 d3 2\n")
    assert read_qrels(tmp_path / "a.tsv") == {"q1": {"doc one": 2, "d2": 0}}
    assert read_qrels(tmp_path / "b.txt") == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    (tmp_path / "c.tsv").write_text("q1\td1\tx\nq1\td2\ty\n")
    with pytest.raises(InputError, match=":2"):
        read_qrels(tmp_path / "c.tsv")


def test_unknown_task_and_empty_task(tmp_path):
    with pytest.raises(InputError, match="registered task"):
        load_task("no-such-task")
    eval_data.beir_dir(tmp_path / "b")
    (tmp_path / "b" / "qrels" / "test.tsv").write_text("q9\td0\t1\n")
    task, _ = load_task(tmp_path / "b")
    with pytest.raises(InputError, match="no query has relevance judgments"):
        task.checked()


def test_registry_groups_and_published_numbers():
    for agg in AGGREGATES:
        members = [s for s in TASKS.values() if agg.tag in s.tags]
        assert members, agg.name
        if agg.tag in ("mmeb2-image-ret", "mmeb2-visdoc", "mmeb2-vdr1", "mmeb2-vdr2", "mmeb2-visrag",
                       "mmeb2-visdoc-ood") or agg.name == "MMEB-V2 Video RET":
            assert len(members) == agg.n_tasks, agg.name
        assert set(agg.published) <= set(MODELS)
        assert all(0 < v <= 100 for v in agg.published.values())
    # README: MMEB-V2 VisDoc overall 79.2 / 82.4; reranker table VisDoc 83.4 / 86.3
    visdoc = next(a for a in AGGREGATES if a.name == "MMEB-V2 VisDoc")
    assert dict(visdoc.published) == {"Qwen3-VL-Embedding-2B": 79.2, "Qwen3-VL-Embedding-8B": 82.4,
                                      "Qwen3-VL-Reranker-2B": 83.4, "Qwen3-VL-Reranker-8B": 86.3}
    assert all(v is None for s in TASKS.values() for v in s.published.values())  # no per-dataset numbers published
    assert model_key("Qwen/Qwen3-VL-Embedding-8B") == "Qwen3-VL-Embedding-8B" and model_key("/x/tiny") is None
    assert published(TASKS["vidore1-docvqa"], "Qwen/Qwen3-VL-Embedding-2B") is None


def test_hub_failure_names_the_dataset():
    pytest.importorskip("datasets")
    from vlsearch.errors import VlsearchError

    with pytest.raises(VlsearchError, match="vlsearch-test/no-such-dataset/corpus"):
        hub.hub_table("vlsearch-test/no-such-dataset", data_dir="corpus")
    with pytest.raises(InputError, match="--media-root"):
        load_task("mmeb-cirr")


def test_language_option_and_duplicate_query_ids(tmp_path):
    expected = eval_data.vidore_beir_dir(tmp_path / "d")
    task, _ = load_task(tmp_path / "d", language="english")
    assert sorted(task.queries) == sorted(expected["english"])
    path = tmp_path / "d" / "queries" / "test-00000-of-00001.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table]), path)  # every id twice
    with pytest.raises(InputError, match="appears twice.*--language"):
        load_task(tmp_path / "d")
