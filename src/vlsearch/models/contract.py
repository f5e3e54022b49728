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

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None,
             instruction: str | None = None, **options: Any) -> list[tuple[int, float]]: ...


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

    similarity_fn_name = "cosine"

    @property
    def prompts(self) -> dict[str, str | None]:
        """Named instructions for ``encode(prompt_name=...)`` (this model's own dict: edit it freely);
        by default ``query`` (the collections' query instruction) and ``document`` (None: the model's
        default instruction)."""
        if "_prompts" not in self.__dict__:
            self.__dict__["_prompts"] = dict(DEFAULT_PROMPTS)
        return self.__dict__["_prompts"]

    def get_sentence_embedding_dimension(self) -> int:
        """The full embedding dimension (sentence-transformers' name for ``dim``)."""
        return self.dim

    def encode(self, inputs: Iterable[ItemLike] | ItemLike, *, prompt_name: str | None = None,
               prompt: str | None = None, batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, convert_to_tensor: bool = False, normalize_embeddings: bool = False,
               truncate_dim: int | None = None) -> Any:
        """``SentenceTransformer.encode``, with the same arguments and meaning.

        Args:
            inputs: one input or a list: strings (always text, as in the official wrappers), dicts
                with the item keys, ``Item`` objects or ``PIL.Image`` images.
            prompt_name: a key of ``prompts`` ("query", "document"): its instruction is used.
            prompt: the instruction itself (the system prompt; a final period is added when it ends
                without punctuation, as the official wrappers do). Wins over ``prompt_name``; an
                item's own ``instruction`` wins over both.
            batch_size: inputs per model call (results do not depend on it).
            show_progress_bar: a progress bar over the inputs (default: off).
            convert_to_numpy: a numpy array (the default); False with ``convert_to_tensor`` False
                gives a list of 1-d torch tensors.
            convert_to_tensor: one torch tensor (wins over ``convert_to_numpy``).
            normalize_embeddings: scale rows to unit length (the full vectors already are; this
                matters after ``truncate_dim``).
            truncate_dim: keep the first components (Matryoshka) without re-normalising, as
                sentence-transformers does; ``embed(dim=...)`` re-normalises.

        Returns:
            (n, d) float32 for a list, (d,) for a single input.

        Example:
            >>> emb.encode(["a dog", {"image": "dog.jpg"}], prompt_name="query").shape
            (2, 2048)
        """
        single = is_single(inputs)
        items = as_items(inputs)
        instruction = self._named_prompt(prompt, prompt_name)
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
        return _converted(rows, single, convert_to_numpy, convert_to_tensor)

    def encode_query(self, inputs: Iterable[ItemLike] | ItemLike, **options: Any) -> Any:
        """``encode`` with the "query" prompt unless ``prompt`` or ``prompt_name`` is given."""
        if options.get("prompt") is None and options.get("prompt_name") is None:
            options["prompt_name"] = "query"
        return self.encode(inputs, **options)

    def encode_document(self, inputs: Iterable[ItemLike] | ItemLike, **options: Any) -> Any:
        """``encode`` with the "document" prompt unless ``prompt`` or ``prompt_name`` is given."""
        if options.get("prompt") is None and options.get("prompt_name") is None:
            options["prompt_name"] = "document"
        return self.encode(inputs, **options)

    def similarity(self, a: Any, b: Any) -> Any:
        """Cosine similarity of every row of ``a`` with every row of ``b``: a (n, m) torch tensor.

        ``a`` and ``b``: numpy arrays, torch tensors or lists; a 1-d input is one row.
        """
        return _torch(_unit(a) @ _unit(b).T)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        """Cosine similarity of row i of ``a`` with row i of ``b``: a (n,) torch tensor."""
        a, b = _unit(a), _unit(b)
        if a.shape != b.shape:
            raise InputError(f"similarity_pairwise needs two arrays of one shape, not {a.shape} and {b.shape}")
        return _torch((a * b).sum(axis=1))

    def _named_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InputError(f"prompt must be a string, not {type(prompt).__name__}")
            return prompt
        if prompt_name is None:
            return None
        if prompt_name not in self.prompts:
            raise InputError(f"prompt_name {prompt_name!r} is not one of the prompts {sorted(self.prompts)}")
        return self.prompts[prompt_name]


class RerankerBase:
    """``score`` and ``rank`` for every backend; a backend implements ``_scores``."""

    model_id: str

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
        try:
            query_item = Item.of(query)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        docs = as_items(documents)
        if not docs:
            return []
        return list(self._scores(query_item, docs, instruction, **options))

    def rank(self, query: ItemLike, documents: Sequence[ItemLike], top_k: int | None = None,
             instruction: str | None = None, *, return_documents: bool | None = None,
             **options: Any) -> list[Any]:
        """The documents ranked by relevance, best first (ties keep input order), at most ``top_k``.

        Returns (index, score) tuples; with ``return_documents`` given (True or False),
        sentence-transformers' ``CrossEncoder.rank`` shape instead: ``{"corpus_id", "score"}`` dicts,
        with ``"text"`` (the document as given) when True.

        Example:
            >>> reranker.rank("capital of France", ["Rome", "Paris"], top_k=1)
            [(1, 0.97)]
            >>> reranker.rank("capital of France", ["Rome", "Paris"], top_k=1, return_documents=True)
            [{'corpus_id': 1, 'score': 0.97, 'text': 'Paris'}]
        """
        ranked = ranking(self.score(query, documents, instruction, **options), top_k)
        if return_documents is None:
            return ranked
        return [{"corpus_id": i, "score": s, **({"text": documents[i]} if return_documents else {})}
                for i, s in ranked]

    def predict(self, pairs: Sequence[Sequence[ItemLike]], *, batch_size: int = 32,
                show_progress_bar: bool | None = None, convert_to_numpy: bool = True,
                convert_to_tensor: bool = False, instruction: str | None = None) -> Any:
        """``CrossEncoder.predict``: the relevance of each (query, document) pair, in [0, 1].

        The pairs may have different queries; documents of one query (the same string, or the
        same object) are scored together. Errors name the pair: "pair 3: document: ...".

        Returns:
            float32 numpy array (n,) (a torch tensor with ``convert_to_tensor``, a list of floats
            when both conversions are off); one number for a single pair.

        Example:
            >>> reranker.predict([("capital of France", "Paris"), ("a red fruit", {"image": "apple.png"})])
            array([0.97, 0.88], dtype=float32)
        """
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

        tensor = torch.from_numpy(np.array(values, np.float32))
        if to_tensor or single:
            return tensor[0] if single else tensor
        return list(tensor)
    return values[0] if single else values


def _unit(x: Any) -> np.ndarray:
    """Rows (2-d float32, a 1-d input is one row) scaled to unit length."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    rows = np.asarray(x, np.float32)
    rows = rows[None] if rows.ndim == 1 else rows
    if rows.ndim != 2:
        raise InputError(f"embeddings must be 1-d or 2-d, not {rows.ndim}-d")
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _torch(values: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, np.float32))
