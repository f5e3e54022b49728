"""The model contract: what every embedder and reranker offers, and the code they all share.

``EmbedderLike`` and ``RerankerLike`` are what the pipeline (collections, ingestion, eval, the
server) depends on. ``EmbedderBase`` and ``RerankerBase`` implement everything that does not
depend on where a model runs: item parsing, the empty case, Matryoshka truncation,
quantisation and ranking, and the calls sentence-transformers users know (``encode``,
``encode_query``, ``encode_document``, ``similarity``; ``predict`` and ``rank`` with
``return_documents``). A backend (the local Qwen3-VL models, a model server over HTTP, the
server's micro-batcher) implements one method: ``_unit_vectors`` or ``_scores``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputError, VlsearchError, at_item, bare, in_context
from ..items import Item, ItemLike, as_items, is_single

Precision = Literal["float32", "int8", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "ubinary")
#: the query instruction of collections, and of ``encode_query``
QUERY_INSTRUCTION = "Retrieve images, document pages, video clips or text passages relevant to the user's query."
#: sentence-transformers' named prompts (``encode(prompt_name=...)``); None: the model's default instruction
DEFAULT_PROMPTS: dict[str, str | None] = {"query": QUERY_INSTRUCTION, "document": None}


def truncate_dim(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka: keep the first ``dim`` components and re-normalise (float32)."""
    if dim is None or dim == vectors.shape[1]:
        return vectors
    if not 1 <= dim <= vectors.shape[1]:
        raise InputError(f"dim must be between 1 and {vectors.shape[1]}, not {dim}")
    cut = vectors[:, :dim]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def quantize(vectors: np.ndarray, precision: Precision) -> np.ndarray:
    """Quantise L2-normalised float32 rows.

    - ``float32``: unchanged.
    - ``int8``: each row scaled by ``127 / max|row|`` and rounded, so the cosine between int8
      rows approximates the float cosine (the per-row scale does not change cosine ranking).
    - ``ubinary``: sign bits (component > 0) packed big-endian into uint8, ``ceil(d / 8)``
      bytes per row; compare with Hamming distance.
    """
    if precision == "float32":
        return vectors
    if precision == "int8":
        scale = 127.0 / np.maximum(np.abs(vectors).max(axis=1, keepdims=True), 1e-12)
        return np.clip(np.rint(vectors * scale), -127, 127).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(vectors > 0, axis=1)
    raise InputError(f"precision must be float32, int8 or ubinary, not {precision!r}")


def offset_binary(vectors: np.ndarray) -> np.ndarray:
    """sentence-transformers' and Jina's ``binary``: the ``ubinary`` bytes less 128, as int8."""
    return (quantize(vectors, "ubinary").astype(np.int16) - 128).astype(np.int8)


def ranking(scores: Sequence[float], top_k: int | None = None) -> list[tuple[int, float]]:
    """(index, score) pairs, best first (ties keep input order), at most ``top_k`` of them."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in order[: top_k if top_k is not None else len(order)]]


@runtime_checkable
class EmbedderLike(Protocol):
    """An embedding model: unit vectors for any mix of text, images and video."""

    model_id: str

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, items: Iterable[ItemLike] | ItemLike, *, instruction: str | None = None,
              dim: int | None = None, precision: Precision = "float32",
              progress: bool | None = None) -> np.ndarray: ...


@runtime_checkable
class RerankerLike(Protocol):
    """A reranking model: one relevance in [0, 1] per (query, document) pair."""

    model_id: str

    def score(self, query: ItemLike, documents: Iterable[ItemLike], instruction: str | None = None,
              **options: Any) -> list[float]: ...

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None, *args: Any,
             instruction: str | None = None, **options: Any) -> list[Any]: ...


class EmbedderBase:
    """``embed`` for every backend; a backend implements ``_unit_vectors`` (and ``dim``)."""

    model_id: str
    dim: int

    def embed(self, items: Iterable[ItemLike] | ItemLike, *, instruction: str | None = None,
              dim: int | None = None, precision: Precision = "float32",
              progress: bool | None = None) -> np.ndarray:
        """Embed items: (n, dim) float32 rows of unit length; int8 (n, dim) or uint8 (n, dim/8)
        when quantised.

        Args:
            items: dicts with the official keys (text, image, video, instruction, fps,
                max_frames), ``Item`` objects or strings.
            instruction: instruction for items that have none (else the model's default).
            dim: Matryoshka dimension: the first ``dim`` components, re-normalised.
            precision: "float32", "int8" or "ubinary" (see ``quantize``).
            progress: progress bar; by default only on a terminal for long calls.

        Raises:
            InputError, MediaError: naming the index of the first bad item; nothing is returned.
        """
        check_instruction(instruction)
        items = as_items(items)
        if precision not in PRECISIONS:
            raise InputError(f"precision must be float32, int8 or ubinary, not {precision!r}")
        if not items:
            return quantize(np.zeros((0, dim or self.dim), np.float32), precision)
        if dim is not None and not 1 <= dim <= self.dim:
            raise InputError(f"dim must be between 1 and {self.dim}, not {dim}")
        rows = self._unit_vectors(items, instruction, progress)
        return quantize(truncate_dim(np.asarray(rows, np.float32).reshape(len(items), -1), dim), precision)

    def _unit_vectors(self, items: list[Item], instruction: str | None, progress: bool | None) -> np.ndarray:
        """(n, D) float32 unit rows for the items, in order."""
        raise NotImplementedError

    # ---------------------------------------------------------------- sentence-transformers habits

    truncate_dim: int | None = None
    default_prompt_name: str | None = None

    @property
    def prompts(self) -> dict[str, str | None]:
        """Named instructions for ``encode(prompt_name=...)`` (this model's own dict: edit or assign it);
        by default ``query`` (the collections' query instruction) and ``document`` (None: the model's
        default instruction)."""
        if "_prompts" not in self.__dict__:
            self.__dict__["_prompts"] = dict(DEFAULT_PROMPTS)
        return self.__dict__["_prompts"]

    @prompts.setter
    def prompts(self, value: dict[str, str | None]) -> None:
        self.__dict__["_prompts"] = dict(value)

    @property
    def similarity_fn_name(self) -> str:
        """What ``similarity`` computes: "cosine" (default), "dot", "euclidean" or "manhattan"
        (negative distances), as in sentence-transformers."""
        return self.__dict__.get("_similarity", "cosine")

    @similarity_fn_name.setter
    def similarity_fn_name(self, name: str) -> None:
        if name not in SIMILARITIES:
            raise InputError(f"similarity_fn_name must be one of {', '.join(SIMILARITIES)}, not {name!r}")
        self.__dict__["_similarity"] = name

    def sentence_transformers_options(self, prompts: dict[str, str | None] | None = None,
                                      default_prompt_name: str | None = None, similarity_fn_name: str | None = None,
                                      truncate_dim: int | None = None) -> None:
        """Set the constructor options of ``SentenceTransformer`` (``prompts`` are added to the defaults)."""
        set_prompts(self, prompts, default_prompt_name)
        if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                         or truncate_dim < 1):
            raise InputError(f"truncate_dim must be a positive integer, not {truncate_dim!r}")
        self.truncate_dim = truncate_dim
        if similarity_fn_name is not None:
            self.similarity_fn_name = similarity_fn_name

    def get_sentence_embedding_dimension(self) -> int:
        """The embedding dimension ``encode`` gives (sentence-transformers' name for ``dim``; the
        model's ``truncate_dim`` when set)."""
        return min(self.dim, self.truncate_dim or self.dim)

    def encode(self, inputs: Iterable[ItemLike] | ItemLike, prompt_name: str | None = None,
               prompt: str | None = None, batch_size: int = 32, show_progress_bar: bool | None = None,
               output_value: str | None = "sentence_embedding", precision: str = "float32",
               convert_to_numpy: bool = True, convert_to_tensor: bool = False, device: Any = None,
               normalize_embeddings: bool = False, truncate_dim: int | None = None, pool: Any = None,
               chunk_size: int | None = None, **kwargs: Any) -> Any:
        """``SentenceTransformer.encode``, with the same arguments (in the same order) and meaning.

        Args:
            inputs: one input or a list: strings (always text, as in the official wrappers), dicts
                with the item keys, ``Item`` objects or ``PIL.Image`` images.
            prompt_name: a key of ``prompts`` ("query", "document"): its instruction is used; when
                neither this nor ``prompt`` is given, ``default_prompt_name``'s.
            prompt: the instruction itself (the system prompt; a final period is added when it ends
                without punctuation, as the official wrappers do). Wins over ``prompt_name``; an
                item's own ``instruction`` wins over both.
            batch_size: inputs per model call (results do not depend on it).
            show_progress_bar: a progress bar over the inputs (default: off).
            output_value: "sentence_embedding" only (vlsearch's vectors are pooled).
            precision: "float32", or quantised as ``embed`` does: "int8" (a scale per row, not
                sentence-transformers' calibration ranges), "ubinary" (packed sign bits) or "binary"
                (the same bits as int8, offset by -128, as sentence-transformers does).
            convert_to_numpy: a numpy array (the default); False with ``convert_to_tensor`` False
                gives a list of 1-d torch tensors.
            convert_to_tensor: one torch tensor (wins over ``convert_to_numpy``).
            normalize_embeddings: scale rows to unit length (the full vectors already are; this
                matters after ``truncate_dim``).
            truncate_dim: keep the first components (Matryoshka) without re-normalising, as
                sentence-transformers does (default: the model's ``truncate_dim``); ``embed(dim=...)``
                re-normalises.
            device, pool, chunk_size, **kwargs: refused (``InputError``) unless left at their defaults:
                the device is chosen when the model loads, and vlsearch batches inputs itself.

        Returns:
            (n, d) rows for a list, (d,) for a single input.

        Example:
            >>> emb.encode(["a dog", {"image": "dog.jpg"}], prompt_name="query").shape
            (2, 2048)
        """
        refuse_unsupported("encode", output_value=output_value or "every output", device=device, pool=pool,
                           chunk_size=chunk_size, **kwargs)  # output_value=None asks ST for every output
        if precision not in ST_PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(ST_PRECISIONS)}, not {precision!r}")
        single = is_single(inputs)
        items = as_items(inputs)
        instruction = self._named_prompt(prompt, prompt_name)
        truncate_dim = truncate_dim if truncate_dim is not None else self.truncate_dim
        if truncate_dim is not None and not 1 <= truncate_dim <= self.dim:
            raise InputError(f"truncate_dim must be between 1 and {self.dim}, not {truncate_dim}")
        rows = np.zeros((0, self.dim), np.float32)
        if items:
            parts = in_batches(len(items), batch_size, show_progress_bar, "item", lambda start, stop: np.asarray(
                self._unit_vectors(items[start:stop], instruction, False), np.float32).reshape(stop - start, -1))
            rows = np.concatenate(parts)
        if truncate_dim is not None:
            rows = rows[:, :truncate_dim]
        if normalize_embeddings:
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        rows = offset_binary(rows) if precision == "binary" else quantize(rows, precision)
        return _converted(rows, single, convert_to_numpy, convert_to_tensor)

    def encode_query(self, inputs: Iterable[ItemLike] | ItemLike, *args: Any, **options: Any) -> Any:
        """``encode`` with the "query" prompt unless ``prompt`` or ``prompt_name`` is given (and
        ``default_prompt_name`` is not used), as ``SentenceTransformer.encode_query``."""
        return self._encode_as("query", inputs, *args, **options)

    def encode_document(self, inputs: Iterable[ItemLike] | ItemLike, *args: Any, **options: Any) -> Any:
        """``encode`` with the "document" prompt unless ``prompt`` or ``prompt_name`` is given."""
        return self._encode_as("document", inputs, *args, **options)

    encode_query.__signature__ = encode_document.__signature__ = inspect.signature(encode)  # type: ignore[attr-defined]

    def _encode_as(self, task: str, inputs: Any, *args: Any, **options: Any) -> Any:
        call = inspect.signature(self.encode).bind(inputs, *args, **options)
        if call.arguments.get("prompt") is None and call.arguments.get("prompt_name") is None and task in self.prompts:
            call.arguments["prompt_name"] = task
        return self.encode(*call.args, **call.kwargs)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """``similarity_fn_name`` of every row of ``embeddings1`` with every row of ``embeddings2``:
        a (n, m) torch tensor. Inputs: numpy arrays, torch tensors or lists; a 1-d input is one row."""
        return SIMILARITIES[self.similarity_fn_name][0](_rows(embeddings1), _rows(embeddings2))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        """``similarity_fn_name`` of row i of ``embeddings1`` with row i of ``embeddings2``: a (n,) torch tensor."""
        a, b = _rows(embeddings1), _rows(embeddings2)
        if a.shape != b.shape:
            raise InputError(f"similarity_pairwise needs two arrays of one shape, "
                             f"not {tuple(a.shape)} and {tuple(b.shape)}")
        return SIMILARITIES[self.similarity_fn_name][1](a, b)

    def _named_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        return named_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)


class RerankerBase:
    """``score`` and ``rank`` for every backend; a backend implements ``_scores``."""

    model_id: str
    default_prompt_name: str | None = None

    @property
    def prompts(self) -> dict[str, str | None]:
        """Named instructions for ``predict``/``rank(prompt_name=...)`` (empty by default)."""
        return self.__dict__.setdefault("_prompts", {})

    @prompts.setter
    def prompts(self, value: dict[str, str | None]) -> None:
        self.__dict__["_prompts"] = dict(value)

    def score(self, query: ItemLike, documents: Iterable[ItemLike], instruction: str | None = None,
              **options: Any) -> list[float]:
        """Relevance of each document to the query, in [0, 1], one score per document.

        Args:
            query: a dict, ``Item`` or string (text, images, video).
            documents: dicts, ``Item`` objects or strings.
            instruction: task instruction; the model's default when omitted.
            **options: backend options (local: ``fps``, ``max_frames``, ``progress``).

        Raises:
            InputError, MediaError: "query: ..." or "item i: ..." for document i.
        """
        check_instruction(instruction)
        check_options("score", self._scores, options)
        try:
            query_item = Item.of(query)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        docs = as_items(documents)
        if not docs:
            return []
        return list(self._scores(query_item, docs, instruction, **options))

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None,
             return_documents: bool | None = None, prompt_name: str | None = None, prompt: str | None = None,
             batch_size: int = 32, show_progress_bar: bool | None = None, activation_fn: Any = None,
             device: Any = None, pool: Any = None, chunk_size: int | None = None, *,
             instruction: str | None = None, **options: Any) -> list[Any]:
        """The documents ranked by relevance, best first (ties keep input order), at most ``top_k``:
        ``CrossEncoder.rank``'s arguments, in its order.

        Returns (index, score) tuples by default; with ``return_documents`` given (True or False),
        sentence-transformers' shape instead: ``{"corpus_id", "score"}`` dicts, with ``"text"`` (the
        document as given) when True. ``prompt``, ``prompt_name`` (of ``prompts``) or ``instruction``
        (vlsearch's name) set the task instruction; ``**options`` are ``score``'s. ``activation_fn``,
        ``device``, ``pool`` and ``chunk_size`` are refused unless None.

        Example:
            >>> reranker.rank("capital of France", ["Rome", "Paris"], top_k=1)
            [(1, 0.97)]
            >>> reranker.rank("capital of France", ["Rome", "Paris"], top_k=1, return_documents=True)
            [{'corpus_id': 1, 'score': 0.97, 'text': 'Paris'}]
        """
        refuse_unsupported("rank", activation_fn=activation_fn, device=device, pool=pool, chunk_size=chunk_size)
        check_options("rank", self._scores, options)
        instruction = self._instruction(prompt, prompt_name, instruction)
        docs = list(documents)
        parts = in_batches(len(docs), batch_size, show_progress_bar, "document", lambda start, stop: self.score(
            query, docs[start:stop], instruction, **options))
        ranked = ranking([s for part in parts for s in part], top_k)
        if return_documents is None:
            return ranked
        return [{"corpus_id": i, "score": s, **({"text": docs[i]} if return_documents else {})} for i, s in ranked]

    def predict(self, inputs: Sequence[Sequence[ItemLike]], prompt_name: str | None = None,
                prompt: str | None = None, batch_size: int = 32, show_progress_bar: bool | None = None,
                activation_fn: Any = None, apply_softmax: bool | None = False, convert_to_numpy: bool = True,
                convert_to_tensor: bool = False, device: Any = None, pool: Any = None,
                chunk_size: int | None = None, *, instruction: str | None = None, **kwargs: Any) -> Any:
        """``CrossEncoder.predict``, with its arguments in its order: the relevance of each (query,
        document) pair, in [0, 1].

        The pairs may have different queries; documents of one query (the same string, or the
        same object) are scored together. Errors name the pair: "pair 3: document: ...".
        ``prompt``/``prompt_name``/``instruction``: as in ``rank``. ``apply_softmax`` changes nothing
        (one score per pair, as in sentence-transformers); ``activation_fn``, ``device``, ``pool``,
        ``chunk_size`` and other keywords are refused unless None.

        Returns:
            float32 numpy array (n,) (a torch tensor with ``convert_to_tensor``, a list of floats
            when both conversions are off); one number for a single pair.

        Example:
            >>> reranker.predict([("capital of France", "Paris"), ("a red fruit", {"image": "apple.png"})])
            array([0.97, 0.88], dtype=float32)
        """
        refuse_unsupported("predict", activation_fn=activation_fn, device=device, pool=pool, chunk_size=chunk_size,
                           **kwargs)
        instruction = self._instruction(prompt, prompt_name, instruction)
        pairs = inputs
        single = isinstance(pairs, (list, tuple)) and len(pairs) == 2 and is_single(pairs[0])
        pairs = [pairs] if single else list(pairs)
        for index, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise InputError(f"pair {index}: a pair must be (query, document), not {type(pair).__name__}"
                                 + (f" of {len(pair)}" if isinstance(pair, (list, tuple)) else ""))
        groups: dict[Any, list[int]] = {}  # the pairs of each query, in order
        for index, (query, _) in enumerate(pairs):
            groups.setdefault(("text", query) if isinstance(query, str) else ("object", id(query)), []).append(index)
        order = [i for members in groups.values() for i in members]
        parts = in_batches(len(order), batch_size, show_progress_bar, "pair", lambda start, stop: self._scored_pairs(
            [pairs[i] for i in order[start:stop]], order[start:stop], instruction))
        scores = np.zeros(len(pairs), np.float32)
        scores[order] = [s for part in parts for s in part]
        return _converted(scores, single, convert_to_numpy, convert_to_tensor)

    def sentence_transformers_options(self, prompts: dict[str, str | None] | None = None,
                                      default_prompt_name: str | None = None) -> None:
        """Set the prompt options of ``CrossEncoder``'s constructor (instructions of the reranker)."""
        set_prompts(self, prompts, default_prompt_name)

    def _instruction(self, prompt: str | None, prompt_name: str | None, instruction: str | None) -> str | None:
        """The task instruction from sentence-transformers' ``prompt``/``prompt_name`` or vlsearch's ``instruction``."""
        if instruction is None:
            return named_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)
        if prompt is not None or prompt_name is not None:
            raise InputError("give instruction or prompt/prompt_name, not both")
        return check_instruction(instruction)

    def _scored_pairs(self, pairs: list[Sequence[ItemLike]], indices: list[int],
                      instruction: str | None) -> list[float]:
        """Scores of pairs sharing one query; errors name the pair (``indices``)."""
        by_query: list[tuple[ItemLike, list[int]]] = []
        for position, (query, _) in enumerate(pairs):
            if by_query and (by_query[-1][0] is query or (isinstance(query, str) and by_query[-1][0] == query)):
                by_query[-1][1].append(position)
            else:
                by_query.append((query, [position]))
        out: list[float] = []
        for query, positions in by_query:
            try:
                out += self.score(query, [pairs[p][1] for p in positions], instruction, progress=False)
            except VlsearchError as exc:
                item = getattr(exc, "item", None)
                where = (f"pair {indices[positions[item]]}: document" if item is not None
                         else f"pair {indices[positions[0]]}: query")
                raise in_context(where, bare(exc)) from None
        return out


# ---------------------------------------------------------------- helpers of the sentence-transformers calls

_NO_POOL = "vlsearch batches the inputs itself: there is no multi-process pool"
#: why a sentence-transformers keyword is refused when given other than its default (None unless listed)
REFUSED = {
    "device": "the device is chosen when the model loads (the constructor's device=)",
    "pool": _NO_POOL,
    "chunk_size": _NO_POOL,
    "output_value": "vlsearch gives pooled vectors only ('sentence_embedding')",
    "activation_fn": "the scores are the model's own probabilities, sigmoid(logit(yes) - logit(no))",
}
DEFAULTS: dict[str, Any] = {"output_value": "sentence_embedding", "trust_remote_code": False, "local_files_only": False,
                            "use_kernels": False, "backend": "torch"}
#: ``SentenceTransformer`` / ``CrossEncoder`` constructor keywords with no meaning for vlsearch's loader
ST_LOADER_KEYWORDS = ("modules", "cache_folder", "trust_remote_code", "local_files_only", "token", "use_auth_token",
                      "model_kwargs", "processor_kwargs", "config_kwargs", "use_kernels", "kernel_config",
                      "model_card_data", "backend", "num_labels", "keep_in_fp32_modules", "activation_fn")
#: ``encode``'s precisions: vlsearch's quantisation, and sentence-transformers' "binary" (offset ubinary)
ST_PRECISIONS = (*PRECISIONS, "binary")


def refuse_unsupported(call: str, **given: Any) -> None:
    """InputError naming the first keyword given other than its default (sentence-transformers' own)."""
    for name, value in given.items():
        if value is not None and not (name in DEFAULTS and value == DEFAULTS[name]):
            reason = REFUSED.get(name, "vlsearch's models do not take it" if name not in ST_LOADER_KEYWORDS
                                 else "vlsearch loads Qwen3-VL checkpoints with its own loader")
            raise InputError(f"{call}: {name}={value!r} is not supported: {reason}")


def loader_options(call: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less the sentence-transformers constructor keywords, refused unless left at their defaults."""
    refuse_unsupported(call, **{k: v for k, v in options.items() if k in ST_LOADER_KEYWORDS})
    return {k: v for k, v in options.items() if k not in ST_LOADER_KEYWORDS}


def set_prompts(model: Any, prompts: dict[str, str | None] | None, default_prompt_name: str | None) -> None:
    """A model's ``prompts`` (added to its defaults) and ``default_prompt_name`` (one of them)."""
    if prompts is not None:
        if not isinstance(prompts, dict):
            raise InputError(f"prompts must be a dict of names to instructions, not {type(prompts).__name__}")
        for name, text in prompts.items():
            check_instruction(text, f"prompts[{name!r}]")
        model.prompts.update(prompts)
    if default_prompt_name is not None and default_prompt_name not in model.prompts:
        raise InputError(f"default_prompt_name {default_prompt_name!r} is not one of the prompts "
                         f"{sorted(model.prompts)}")
    model.default_prompt_name = default_prompt_name


def check_instruction(value: Any, name: str = "instruction") -> Any:
    """``value`` when it is a string or None; InputError naming the argument otherwise."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {type(value).__name__}")
    return value


def named_prompt(prompts: dict[str, str | None], default_name: str | None, prompt: str | None,
                 prompt_name: str | None) -> str | None:
    """sentence-transformers' prompt rules: ``prompt`` wins, then ``prompt_name``, then ``default_name``."""
    if prompt is not None:
        return check_instruction(prompt, "prompt")
    name = prompt_name if prompt_name is not None else default_name
    if name is None:
        return None
    if name not in prompts:
        raise InputError(f"prompt_name {name!r} is not one of the prompts {sorted(prompts)}")
    return prompts[name]


def check_options(call: str, scores: Callable[..., Any], options: dict[str, Any]) -> None:
    """InputError naming the first keyword of ``options`` a backend's ``_scores`` does not take (any is
    taken when it takes ``**options``)."""
    parameters = inspect.signature(scores).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    taken = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    for name in options:
        if name not in taken:
            raise InputError(f"{call}() takes no keyword {name!r} (its options: {', '.join(taken) or 'none'})")


def in_batches(count: int, size: int, progress: bool | None, unit: str, run: Callable[[int, int], Any]) -> list[Any]:
    """``run(start, stop)`` over ``count`` inputs in slices of ``size``, with a progress bar when
    asked; an error naming "item j" of a slice is renamed with the input's own index."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"batch_size must be a positive integer, not {size!r}")
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=count, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, count, size):
            stop = min(count, start + size)
            try:
                parts.append(run(start, stop))
            except VlsearchError as exc:
                if getattr(exc, "item", None) is None:
                    raise
                raise at_item(start + exc.item, bare(exc)) from None
            bar.update(stop - start)
    return parts


def _converted(values: np.ndarray, single: bool, to_numpy: bool, to_tensor: bool) -> Any:
    """sentence-transformers' output forms: numpy, one torch tensor, or a list of tensors; the first
    element alone for a single input."""
    if to_tensor or not to_numpy:
        import torch

        tensor = torch.from_numpy(np.array(values))
        if to_tensor or single:
            return tensor[0] if single else tensor
        return list(tensor)
    return values[0] if single else values


def _rows(x: Any) -> Any:
    """Embeddings as a 2-d float32 torch tensor (a 1-d input is one row)."""
    import torch

    if isinstance(x, list) and x and hasattr(x[0], "detach"):
        x = torch.stack(list(x))
    rows = x.detach().cpu().float() if hasattr(x, "detach") else torch.from_numpy(np.array(x, np.float32))
    rows = rows[None] if rows.ndim == 1 else rows
    if rows.ndim != 2:
        raise InputError(f"embeddings must be 1-d or 2-d, not {rows.ndim}-d")
    return rows


def _unit_rows(rows: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(rows, p=2, dim=1)


def _negative_distances(a: Any, b: Any, p: float) -> Any:
    import torch

    return -torch.cdist(a, b, p=p)


#: ``similarity_fn_name``: (every row against every row, row i against row i), as sentence-transformers defines them
SIMILARITIES: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "cosine": (lambda a, b: _unit_rows(a) @ _unit_rows(b).T, lambda a, b: (_unit_rows(a) * _unit_rows(b)).sum(1)),
    "dot": (lambda a, b: a @ b.T, lambda a, b: (a * b).sum(1)),
    "euclidean": (lambda a, b: _negative_distances(a, b, 2.0), lambda a, b: -((a - b) ** 2).sum(1).sqrt()),
    "manhattan": (lambda a, b: _negative_distances(a, b, 1.0), lambda a, b: -(a - b).abs().sum(1)),
}
