"""Request bodies (pydantic). Inputs with media are checked further in ``inputs``.

Fields unknown here are ignored, so clients written for OpenAI, Cohere or Jina work unchanged; the
fields of those APIs that would change an answer are honoured or refused by name (``peers``).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

InputValue = Union[str, list[Any], dict[str, Any]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        """Refuse lone surrogates ("\\ud800" in JSON) anywhere in the body: no model can read them."""
        stack = [data]
        while stack:
            value = stack.pop()
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("text is not valid Unicode (a lone surrogate)") from None
            elif isinstance(value, dict):
                stack += [*value.keys(), *value.values()]
            elif isinstance(value, list):
                stack += value
        return data


class EmbeddingRequest(_Body):
    """OpenAI ``POST /v1/embeddings``, plus ``instruction``, and Jina's ``task`` and ``embedding_type``.

    ``input``: a string, a list of strings, or a list of inputs each of which is a string, a
    list of content parts, or an object (see ``inputs``).
    """

    input: InputValue
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None  # None: float
    dimensions: int | None = Field(default=None, ge=1, le=1 << 16)
    instruction: str | None = None
    user: str | None = None
    task: str | None = None  # Jina: retrieval.query, retrieval.passage ... (peers.JINA_TASKS)
    embedding_type: str | None = None  # Jina: float, base64, binary, ubinary, int8
    late_chunking: bool | None = None  # Jina: refused when true
    normalized: bool | None = None  # Jina: the vectors are unit vectors; refused when false


class RerankRequest(_Body):
    """Cohere / Jina ``POST /v1/rerank``. ``return_documents``: by default true for a Jina model
    (``model`` "jina-..."), as Jina's API, else false, as Cohere's; ``rank_fields``: Cohere v1's."""

    query: InputValue
    documents: list[InputValue] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, le=1_000_000)
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_tokens_per_doc: int | None = None  # Cohere v2: refused, the token limit is the server's
    instruction: str | None = None
    model: str | None = None


class CohereEmbedRequest(_Body):
    """Cohere ``POST /v2/embed``: ``texts``, ``images`` (data URIs) or mixed ``inputs`` (``{"content": parts}``)."""

    model: str | None = None
    input_type: str | None = None  # peers.COHERE_INPUT_TYPES
    texts: list[str] | None = None
    images: list[str] | None = None
    inputs: list[dict[str, Any]] | None = None
    embedding_types: list[str] = Field(default_factory=lambda: ["float"])
    output_dimension: int | None = Field(default=None, ge=1, le=1 << 16)
    truncate: str | None = None  # the model cuts long inputs at their end: END; NONE and START are refused
    max_tokens: int | None = None  # refused: the token limit is the server's


class SearchRequest(_Body):
    """``POST /v1/collections/{name}/search``: a text and/or image query, or ``like`` an item id."""

    query: InputValue | None = None
    image: str | None = None
    top_k: int = Field(default=10, ge=1, le=1000)
    candidates: int = Field(default=50, ge=1, le=1000)
    rerank: bool | None = None
    where: str | None = None
    instruction: str | None = None
    like: str | None = None
    mode: Literal["dense", "lexical", "hybrid"] | None = None  # None: hybrid when the collection has text
    weights: tuple[float, float] = (1.0, 1.0)  # dense and lexical weights of the hybrid fusion
    rerank_budget: float | None = Field(default=None, ge=0)  # seconds (0: no limit); None: 6 on a CPU
    rerank_inputs: Literal["full", "cheap"] | None = None  # None: cheap on a CPU
    thumbnails: bool = True
    moments: bool = False  # each video result's best few seconds (extra embedder forwards)


class IngestRequest(_Body):
    """``POST /v1/collections/{name}/ingest`` with JSON: files or folders under the allowed roots."""

    paths: list[str] = Field(min_length=1, max_length=1000)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    prune: bool = False
    retry_failed: bool = False
