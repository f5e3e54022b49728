"""sentence-transformers habits on the model contract: ``encode`` (and its options), ``encode_query`` /
``encode_document``, ``similarity``, PIL images as inputs, ``Reranker.predict`` and ``rank`` with
``return_documents``, and the warning for a text that names an image file.

Every value is compared with the library's own ``embed`` / ``score`` on the same tiny checkpoint.
"""

from __future__ import annotations

import inspect
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


# ---------------------------------------------------------------- sentence-transformers 6: signatures and keywords

def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("ours, theirs, differing_defaults", [
    ("Embedder.encode", "SentenceTransformer.encode", {}),
    ("Embedder.encode_query", "SentenceTransformer.encode_query", {}),
    ("Embedder.encode_document", "SentenceTransformer.encode_document", {}),
    ("Embedder.similarity", "SentenceTransformer.similarity", {}),
    ("Embedder.similarity_pairwise", "SentenceTransformer.similarity_pairwise", {}),
    ("Embedder.get_sentence_embedding_dimension", "SentenceTransformer.get_sentence_embedding_dimension", {}),
    ("Reranker.predict", "CrossEncoder.predict", {}),
    # (index, score) tuples stay vlsearch's default; return_documents=False gives sentence-transformers' dicts
    ("Reranker.rank", "CrossEncoder.rank", {"return_documents": None}),
])
def test_signatures_are_sentence_transformers_own(ours, theirs, differing_defaults):
    """Every parameter of sentence-transformers 6, in its order, kind and default; vlsearch's own
    extras only as keyword-only parameters after them."""
    import sentence_transformers

    import vlsearch

    mine = _parameters(getattr(getattr(vlsearch, ours.split(".")[0]), ours.split(".")[1]))
    their = _parameters(getattr(getattr(sentence_transformers, theirs.split(".")[0]), theirs.split(".")[1]))
    positional = [p for p in their if p[1] is not inspect.Parameter.VAR_KEYWORD]
    want = [(n, k, differing_defaults.get(n, d)) for n, k, d in positional]
    assert mine[:len(want)] == want
    extras = [kind for _, kind, _ in mine[len(want):]]
    assert all(kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD) for kind in extras)
    assert (their[-1][1] is inspect.Parameter.VAR_KEYWORD) <= (mine[-1][1] is inspect.Parameter.VAR_KEYWORD)


def test_constructor_keywords_of_sentence_transformers(embedder_path, reranker_path, embedder):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from vlsearch import Embedder, Reranker

    prompts = {"charts": "Retrieve images of charts"}
    model = Embedder(embedder_path, prompts=prompts, default_prompt_name="charts", similarity_fn_name="dot",
                     truncate_dim=8, trust_remote_code=False, backend="torch")
    charts = embedder.embed(TEXTS, instruction="Retrieve images of charts.")
    assert np.array_equal(model.encode(TEXTS), charts[:, :8])  # the default prompt, the model's truncate_dim
    assert np.array_equal(model.encode_query(TEXTS), embedder.encode_query(TEXTS)[:, :8])  # query wins
    assert model.get_sentence_embedding_dimension() == 8 and model.prompts["query"] == QUERY_INSTRUCTION
    torch.testing.assert_close(model.similarity(2 * charts, charts), torch.from_numpy(2 * charts @ charts.T))  # dot
    reranker = Reranker(reranker_path, prompts={"answer": "Find the answer"}, max_length=64)
    assert reranker.max_seq_length == 64 and reranker.budget.max_length == 64
    # every constructor keyword of sentence-transformers is taken or refused by name
    taken = {"model_name_or_path", "device", "revision", "prompts", "default_prompt_name", "similarity_fn_name",
             "truncate_dim", "max_length"}
    for model_class, st_class in ((Embedder, SentenceTransformer), (Reranker, CrossEncoder)):
        for name in set(inspect.signature(st_class.__init__).parameters) - taken - {"self"}:
            with pytest.raises(InputError, match=rf"^{model_class.__name__}: {name}=.* is not supported"):
                model_class(embedder_path, **{name: "other"})
    with pytest.raises(InputError, match="default_prompt_name 'nope' is not one of the prompts"):
        Embedder(embedder_path, default_prompt_name="nope")
    with pytest.raises(InputError, match="similarity_fn_name must be one of cosine, dot, euclidean, manhattan"):
        Embedder(embedder_path, similarity_fn_name="jaccard")


def test_max_seq_length_is_the_token_limit(embedder_path, embedder):
    from vlsearch import Embedder

    model = Embedder(embedder_path)
    long_text = " ".join(["penguin"] * 200)
    assert model.max_seq_length == embedder.budget.max_length
    model.max_seq_length = 24
    assert not np.array_equal(model.encode(long_text), embedder.encode(long_text))
    assert np.array_equal(model.encode(long_text), model.encode(" ".join(["penguin"] * 150)))  # cut to 24 tokens
    with pytest.raises(InputError, match="max_seq_length must be a positive integer"):
        model.max_seq_length = 0


def test_encode_takes_sentence_transformers_arguments_by_position_and_precision(embedder):
    from sentence_transformers.quantization import quantize_embeddings

    full = embedder.encode(TEXTS)
    assert np.array_equal(embedder.encode(TEXTS, "query"), embedder.encode_query(TEXTS))
    assert np.array_equal(embedder.encode_query(TEXTS, None, "Find dogs"), embedder.encode(TEXTS, prompt="Find dogs"))
    assert np.array_equal(embedder.encode(TEXTS, precision="int8"), embedder.embed(TEXTS, precision="int8"))
    for precision in ("ubinary", "binary"):  # the sign bits, as sentence-transformers packs them
        got = embedder.encode(TEXTS, precision=precision)
        assert np.array_equal(got, quantize_embeddings(full, precision)), precision
    tensor = embedder.encode(TEXTS, precision="int8", convert_to_tensor=True)
    assert tensor.dtype == torch.int8 and tensor.shape == full.shape
    with pytest.raises(InputError, match="precision must be one of float32, int8, ubinary, binary, not 'uint8'"):
        embedder.encode(TEXTS, precision="uint8")


@pytest.mark.parametrize("keyword, value", [("device", "cpu"), ("output_value", "token_embeddings"),
                                            ("output_value", None),  # ST: every output
                                            ("pool", {}), ("chunk_size", 4), ("task", "query")])
def test_encode_refuses_what_it_cannot_honour_by_name(embedder, keyword, value):
    with pytest.raises(InputError, match=rf"^encode: {keyword}=.* is not supported"):
        embedder.encode(TEXTS, **{keyword: value})
    embedder.encode(TEXTS[:1], output_value="sentence_embedding", device=None, pool=None, chunk_size=None)


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_functions_equal_sentence_transformers(embedder, name):
    from sentence_transformers import SimilarityFunction

    a, b = embedder.encode(TEXTS[:2], truncate_dim=16), embedder.encode(TEXTS, truncate_dim=16)
    theirs = SimilarityFunction.to_similarity_fn(name)(torch.from_numpy(a), torch.from_numpy(b))
    pairwise = SimilarityFunction.to_similarity_pairwise_fn(name)(torch.from_numpy(a), torch.from_numpy(b[:2]))
    embedder.similarity_fn_name = name
    try:
        torch.testing.assert_close(embedder.similarity(a, b), theirs)
        torch.testing.assert_close(embedder.similarity_pairwise(a, b[:2]), pairwise)
    finally:
        embedder.similarity_fn_name = "cosine"


def test_predict_and_rank_take_sentence_transformers_arguments(reranker):
    docs = ["Rome", "Paris", "Berlin"]
    pairs = [("capital of France", d) for d in docs]
    with_instruction = reranker.score("capital of France", docs, "Find the answer")
    assert np.array_equal(reranker.predict(pairs, None, "Find the answer"), np.float32(with_instruction))
    assert np.array_equal(reranker.predict(pairs, apply_softmax=True), reranker.predict(pairs))  # one label: no-op
    reranker.prompts["answer"] = "Find the answer"
    try:
        assert np.array_equal(reranker.predict(pairs, "answer"), np.float32(with_instruction))
        ranked = reranker.rank("capital of France", docs, 2, True, "answer", batch_size=1, show_progress_bar=False)
    finally:
        del reranker.prompts["answer"]
    best = sorted(range(3), key=lambda i: -with_instruction[i])[:2]
    assert ranked == [{"corpus_id": i, "score": with_instruction[i], "text": docs[i]} for i in best]
    with pytest.raises(InputError, match="give instruction or prompt/prompt_name, not both"):
        reranker.rank("q", docs, prompt="a", instruction="b")
    for call in (lambda **kw: reranker.predict(pairs, **kw), lambda **kw: reranker.rank("q", docs, **kw)):
        for keyword in ("activation_fn", "device", "pool", "chunk_size"):
            with pytest.raises(InputError, match=rf": {keyword}=.* is not supported"):
                call(**{keyword: "x"})
    with pytest.raises(InputError, match=r"^rank\(\) takes no keyword 'convert_to_tensor' \(its options: fps,"):
        reranker.rank("q", docs, convert_to_tensor=True)  # not in sentence-transformers' rank either
    with pytest.raises(InputError, match=r"^score\(\) takes no keyword 'temperature'"):
        reranker.score("q", docs, temperature=2)


def test_a_non_string_instruction_is_an_input_error(embedder, reranker):
    with pytest.raises(InputError, match="^instruction must be a string, not bool"):
        embedder.embed(TEXTS, instruction=True)
    with pytest.raises(InputError, match="^instruction must be a string, not int"):
        reranker.score("q", ["d"], instruction=5)
    with pytest.raises(InputError, match="^instruction must be a string, not bool"):
        reranker.rank("q", ["d"], 2, instruction=True)
    with pytest.raises(InputError, match="^prompt must be a string, not int"):
        reranker.predict([("q", "d")], prompt=3)
