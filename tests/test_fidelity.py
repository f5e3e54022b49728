"""Vectors and scores equal the official procedure's (tests/reference.py) in float32."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from reference import ReferenceEmbedder, ReferenceReranker

needs_video_oracle = pytest.mark.skipif(
    importlib.util.find_spec("decord") is None and importlib.util.find_spec("torchcodec") is None,
    reason="the oracle reads video files through qwen-vl-utils, which needs decord or torchcodec")


def cases(media) -> dict[str, dict]:
    s = lambda k: str(media[k])  # noqa: E731
    return {
        "text": {"text": "a dog on a beach"},
        "text+instruction": {"text": "a dog on a beach", "instruction": "Retrieve images relevant to the query"},
        "instruction-with-stop": {"text": "chart of sales", "instruction": "Find the chart!"},
        "texts": {"text": ["first part", "second part"]},
        "image": {"image": s("large")},
        "jpeg": {"image": s("jpeg")},
        "rgba": {"image": s("rgba")},
        "pdf-page": {"image": s("pdf_page")},
        "text+image": {"text": "caption of the picture", "image": s("wide")},
        "pil": {"text": "a PIL image", "image": Image.open(media["tall"])},
        "several-images": {"image": [s("small"), s("tall"), s("wide")], "text": "three pictures"},
        "frames": {"video": [s(f"frame{i}") for i in range(5)]},
        "frames-pil": {"video": [Image.open(media[f"frame{i}"]) for i in range(3)], "text": "clip"},
        "video": {"video": s("video")},
        "video-fps": {"video": s("long_video"), "fps": 2.0, "max_frames": 8, "instruction": "Find the clip"},
        "video+image+text": {"video": s("video"), "image": s("small"), "text": "everything"},
    }


VIDEO_FILE_CASES = {"video", "video-fps", "video+image+text"}


@pytest.fixture(scope="module")
def reference_embedder(embedder_path):
    return ReferenceEmbedder(embedder_path)


@pytest.fixture(scope="module")
def reference_reranker(reranker_path):
    return ReferenceReranker(reranker_path)


@pytest.fixture(scope="module")
def all_vectors(embedder, media):
    """Everything embedded in one call: batching must not matter."""
    named = cases(media)
    return dict(zip(named, embedder.embed(list(named.values()))))


def test_embedding_dimension(embedder, media):
    vec = embedder.embed([cases(media)["text"]])
    assert vec.shape == (1, embedder.dim) and vec.dtype == np.float32
    assert np.isclose(np.linalg.norm(vec[0]), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["text", "text+instruction", "instruction-with-stop", "texts", "image", "jpeg",
                                  "rgba", "pdf-page", "text+image", "pil", "several-images", "frames", "frames-pil"])
def test_embedding_equals_official(name, media, all_vectors, reference_embedder):
    expected = reference_embedder.embed_one(cases(media)[name])
    cosine = float(np.dot(expected, all_vectors[name]))
    assert cosine >= 0.9999, f"{name}: cosine {cosine}"
    assert np.abs(expected - all_vectors[name]).max() < 1e-4


@needs_video_oracle
@pytest.mark.parametrize("name", sorted(VIDEO_FILE_CASES))
def test_video_file_embedding_equals_official(name, media, all_vectors, reference_embedder):
    expected = reference_embedder.embed_one(cases(media)[name])
    assert float(np.dot(expected, all_vectors[name])) >= 0.9999


def test_instruction_changes_the_vector(all_vectors):
    assert float(np.dot(all_vectors["text"], all_vectors["text+instruction"])) < 0.9999


@pytest.mark.parametrize("instruction", [None, "Find pictures of animals"])
def test_rerank_scores_equal_official(reranker, reference_reranker, media, instruction):
    named = cases(media)
    names = [n for n in named if n not in VIDEO_FILE_CASES]
    query = {"text": "a dog on a beach"}
    ours = reranker.score(query, [named[n] for n in names], instruction=instruction)
    for name, score in zip(names, ours):
        expected = reference_reranker.score_one(query, named[name], instruction=instruction)
        assert abs(score - expected) <= 1e-4, f"{name}: {score} vs {expected}"
        assert 0.0 <= score <= 1.0


def test_rerank_multimodal_query_equals_official(reranker, reference_reranker, media):
    query = {"text": "which page shows this?", "image": str(media["small"])}
    docs = [{"image": str(media["pdf_page"])}, {"text": "plain text document"},
            {"video": [str(media[f"frame{i}"]) for i in range(4)]}]
    for doc, score in zip(docs, reranker.score(query, docs)):
        assert abs(score - reference_reranker.score_one(query, doc)) <= 1e-4


@needs_video_oracle
def test_rerank_video_file_equals_official(reranker, reference_reranker, media):
    query = {"text": "a moving green block"}
    docs = [{"video": str(media["video"])}, {"video": str(media["long_video"]), "text": "clip"}]
    ours = reranker.score(query, docs, fps=2.0, max_frames=8)
    for doc, score in zip(docs, ours):
        assert abs(score - reference_reranker.score_one(query, doc, fps=2.0, max_frames=8)) <= 1e-4
