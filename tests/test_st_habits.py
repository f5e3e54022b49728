"""sentence-transformers habits on the model contract: ``encode`` (and its options), ``encode_query`` /
``encode_document``, ``similarity``, PIL images as inputs, ``Reranker.predict`` and ``rank`` with
``return_documents``, and the warning for a text that names an image file.

Every value is compared with the library's own ``embed`` / ``score`` on the same tiny checkpoint.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vlsearch import InputError, MediaError
from vlsearch.models.contract import QUERY_INSTRUCTION

TEXTS = ["a dog on a beach", "quarterly revenue chart", "attention heatmap"]


def test_encode_equals_embed_in_every_form(embedder):
    full = embedder.embed(TEXTS)
    got = embedder.encode(TEXTS)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and np.array_equal(got, full)
    one = embedder.encode(TEXTS[0])
    assert one.shape == (embedder.dim,) and np.array_equal(one, full[0])
    tensor = embedder.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and torch.equal(tensor, torch.from_numpy(full))
    rows = embedder.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 3 and torch.equal(rows[2], torch.from_numpy(full[2]))
    assert isinstance(embedder.encode(TEXTS[0], convert_to_numpy=False), torch.Tensor)
    assert np.array_equal(embedder.encode(TEXTS, batch_size=1, show_progress_bar=False), full)  # batch invariant
    assert embedder.encode([]).shape == (0, embedder.dim)
    assert embedder.get_sentence_embedding_dimension() == embedder.dim


def test_prompts_follow_the_official_instruction_rules(embedder):
    with_period = embedder.embed(TEXTS, instruction="Retrieve images of charts.")
    assert np.array_equal(embedder.encode(TEXTS, prompt="Retrieve images of charts"), with_period)
    assert np.array_equal(embedder.encode_query(TEXTS), embedder.embed(TEXTS, instruction=QUERY_INSTRUCTION))
    assert np.array_equal(embedder.encode(TEXTS, prompt_name="query"), embedder.encode_query(TEXTS))
    assert np.array_equal(embedder.encode_document(TEXTS), embedder.embed(TEXTS))
    assert not np.array_equal(embedder.encode_query(TEXTS), embedder.encode_document(TEXTS))
    # prompt wins over prompt_name; an item's own instruction wins over both
    assert np.array_equal(embedder.encode(TEXTS, prompt="Retrieve images of charts", prompt_name="query"),
                          with_period)
    own = {"text": TEXTS[0], "instruction": "Find dogs."}
    assert np.array_equal(embedder.encode(own, prompt="Other task"), embedder.embed([own])[0])
    embedder.prompts["charts"] = "Retrieve images of charts"
    try:
        assert np.array_equal(embedder.encode(TEXTS, prompt_name="charts"), with_period)
    finally:
        del embedder.prompts["charts"]
    with pytest.raises(InputError, match="prompt_name 'passage' is not one of the prompts"):
        embedder.encode(TEXTS, prompt_name="passage")


def test_truncate_dim_and_normalize_mean_what_they_mean_in_sentence_transformers(embedder):
    full = embedder.embed(TEXTS)
    cut = embedder.encode(TEXTS, truncate_dim=8)
    assert np.array_equal(cut, full[:, :8])  # a prefix, not re-normalised
    assert np.all(np.linalg.norm(cut, axis=1) < 1)
    renormalised = embedder.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(renormalised, embedder.embed(TEXTS, dim=8), atol=1e-7)  # = Matryoshka embed
    with pytest.raises(InputError, match="truncate_dim must be between 1 and"):
        embedder.encode(TEXTS, truncate_dim=embedder.dim + 1)
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        embedder.encode(TEXTS, batch_size=0)


def test_pil_images_are_image_inputs(embedder, media):
    image = Image.open(media["small"]).convert("RGB")
    expected = embedder.embed([{"image": image}])
    assert np.array_equal(embedder.embed(image), expected)
    assert np.array_equal(embedder.encode([image, "text"])[0], expected[0])
    assert np.array_equal(embedder.encode(image), expected[0])


def test_errors_name_the_input_across_batches(embedder, media):
    with pytest.raises(MediaError, match=r"^item 3: .*not an image"):
        embedder.encode(["a", "b", "c", {"image": str(media["not_image"])}], batch_size=2)
    with pytest.raises(InputError, match="item 1: an item must be"):
        embedder.encode(["a", 3])


def test_similarity(embedder):
    a, b = embedder.encode(TEXTS[:2]), embedder.encode(TEXTS)
    sims = embedder.similarity(a, b)
    assert isinstance(sims, torch.Tensor) and sims.shape == (2, 3)
    np.testing.assert_allclose(sims.numpy(), a @ b.T, atol=1e-6)
    np.testing.assert_allclose(embedder.similarity(torch.from_numpy(a[0]), b).numpy(), (a[:1] @ b.T), atol=1e-6)
    pairwise = embedder.similarity_pairwise(a, b[:2])
    np.testing.assert_allclose(pairwise.numpy(), (a * b[:2]).sum(axis=1), atol=1e-6)
    with pytest.raises(InputError, match="one shape"):
        embedder.similarity_pairwise(a, b)


def test_a_path_string_stays_text_with_one_warning(embedder, media, monkeypatch):
    from vlsearch import items

    monkeypatch.setattr(items, "_warned_image_path", False)
    path = str(media["small"])
    with pytest.warns(UserWarning, match=r'embedded as text.*pass \{"image":'):
        as_text = embedder.encode(path)
    assert np.array_equal(as_text, embedder.embed([{"text": path}])[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.encode([path, str(media["jpeg"])])  # once per process
        monkeypatch.setattr(items, "_warned_image_path", False)
        embedder.encode(["no/such/picture.png", "a picture.png of a dog"])  # not a file: no warning


def test_predict_scores_pairs_with_different_queries(reranker, media):
    pairs = [("capital of France", "Paris"), ("a red fruit", {"image": str(media["small"])}),
             ("capital of France", "Rome"), ("a red fruit", "an apple")]
    got = reranker.predict(pairs)
    expected = reranker.score("capital of France", ["Paris", "Rome"]) + reranker.score(
        "a red fruit", [{"image": str(media["small"])}, "an apple"])
    assert got.dtype == np.float32
    assert np.array_equal(got, np.array([expected[0], expected[2], expected[1], expected[3]], np.float32))
    assert np.array_equal(reranker.predict(pairs, batch_size=1), got)
    single = reranker.predict(("capital of France", "Paris"))
    assert single.shape == () and single == got[0]
    assert torch.equal(reranker.predict(pairs, convert_to_tensor=True), torch.from_numpy(got))
    assert np.array_equal(reranker.predict([["q", "d"]], instruction="Find the answer"),
                          np.array(reranker.score("q", ["d"], instruction="Find the answer"), np.float32))


def test_predict_errors_name_the_pair(reranker, media):
    bad = {"image": str(media["not_image"])}
    with pytest.raises(MediaError, match=r"^pair 2: document: .*not an image"):
        reranker.predict([("q", "a"), ("q2", "b"), ("q", bad)], batch_size=1)
    with pytest.raises(MediaError, match=r"^pair 1: query: .*not an image"):
        reranker.predict([("q", "a"), (bad, "b")])
    with pytest.raises(InputError, match="pair 1: a pair must be"):
        reranker.predict([("q", "a"), ("q",)])


def test_rank_keeps_tuples_and_gives_the_sentence_transformers_shape_on_request(reranker):
    docs = ["Rome", "Paris", {"text": "Berlin"}]
    scores = reranker.score("capital of France", docs)
    tuples = reranker.rank("capital of France", docs, top_k=2)
    assert tuples == sorted(enumerate(scores), key=lambda p: -p[1])[:2]
    with_docs = reranker.rank("capital of France", docs, return_documents=True)
    assert [(d["corpus_id"], d["score"], d["text"]) for d in with_docs] == [(i, s, docs[i]) for i, s in
                                                                           reranker.rank("capital of France", docs)]
    assert all(set(d) == {"corpus_id", "score"} for d in reranker.rank("capital of France", docs,
                                                                        return_documents=False))
