"""Request bodies (pydantic). Inputs with media are checked further in ``inputs``.

Unknown fields are ignored, so clients written for OpenAI, Cohere or Jina work unchanged.
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
    """OpenAI ``POST /v1/embeddings``, plus ``instruction``.

    ``input``: a string, a list of strings, or a list of inputs each of which is a string, a
    list of content parts, or an object (see ``inputs``).
    """

    input: InputValue
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None  # None: float
    dimensions: int | None = Field(default=None, ge=1, le=1 << 16)
    instruction: str | None = None
    user: str | None = None


class RerankRequest(_Body):
    """Cohere / Jina ``POST /v1/rerank``."""

    query: InputValue
    documents: list[InputValue] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, le=1_000_000)
    return_documents: bool = False
    instruction: str | None = None
    model: str | None = None


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


class IngestRequest(_Body):
    """``POST /v1/collections/{name}/ingest`` with JSON: files or folders under the allowed roots."""

    paths: list[str] = Field(min_length=1, max_length=1000)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    prune: bool = False
    retry_failed: bool = False
