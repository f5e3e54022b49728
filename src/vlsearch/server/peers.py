"""The request fields of other providers' APIs, mapped onto vlsearch's models or refused by name.

- Jina (``/v1/embeddings``, ``/v1/rerank``): ``task`` as an instruction, ``embedding_type``,
  raw base64 images (``inputs.SourceGuard``), ``return_documents`` true by default for a Jina model.
- Cohere: v1 ``rank_fields`` over structured documents; ``POST /v2/embed`` (texts, images, mixed
  ``inputs``, ``input_type``, ``embedding_types``, ``output_dimension``).

Each refusal is an ``InputError`` (HTTP 400) that names the field and the value.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.contract import QUERY_INSTRUCTION, offset_binary, quantize

#: Jina's embedding ``task`` values as instructions (None: the model's default, for documents)
JINA_TASKS: dict[str, str | None] = {
    "retrieval.query": QUERY_INSTRUCTION,
    "retrieval.passage": None,
    "text-matching": "Retrieve text that is semantically similar to the given text.",
    "classification": "Classify the given input by its topic.",
    "separation": "Identify the topic or theme of the given input.",
    "code.query": "Retrieve code that answers the given query.",
    "code.passage": None,
}
#: Cohere's embedding ``input_type`` values as instructions
COHERE_INPUT_TYPES: dict[str, str | None] = {
    "search_query": QUERY_INSTRUCTION,
    "search_document": None,
    "classification": JINA_TASKS["classification"],
    "clustering": JINA_TASKS["separation"],
    "image": None,
}


def instruction_of(field: str, value: str | None, choices: dict[str, str | None],
                   instruction: str | None) -> str | None:
    """The instruction a provider's task field stands for; ``instruction`` when the field is absent."""
    if value is None:
        return instruction
    if value not in choices:
        raise InputError(f"{field} must be one of {', '.join(choices)}, not {value!r}")
    if instruction is not None:
        raise InputError(f"give {field} or instruction, not both")
    return choices[value]


def refuse(field: str, value: Any, allowed: tuple[Any, ...], reason: str) -> None:
    """InputError naming ``field`` when its value is neither absent nor one of ``allowed``."""
    if value is not None and value not in allowed:
        raise InputError(f"{field}={value!r} is not supported: {reason}")


#: embedding types: rows of unit vectors as JSON values, one per row
ENCODERS: dict[str, Any] = {
    "float": lambda rows: np.asarray(rows, np.float32).tolist(),
    "base64": lambda rows: [base64.b64encode(np.asarray(r, "<f4").tobytes()).decode("ascii") for r in rows],
    "int8": lambda rows: quantize(rows, "int8").tolist(),
    "ubinary": lambda rows: quantize(rows, "ubinary").tolist(),
    "binary": lambda rows: offset_binary(rows).tolist(),
}


def check_embedding_types(field: str, kinds: list[str]) -> list[str]:
    """``kinds`` when each is one of ``ENCODERS`` (uint8 needs calibration ranges vlsearch does not keep)."""
    if not kinds:
        raise InputError(f"{field} must name at least one type")
    for kind in kinds:
        if kind not in ENCODERS:
            raise InputError(f"{field}: {kind!r} is not supported; use one of {', '.join(ENCODERS)}")
    return kinds


def flattened_document(document: Any, fields: list[str], index: int) -> Any:
    """A Cohere v1 structured document ranked on ``rank_fields``: "field: value" lines, in the fields'
    order (fields the document lacks are skipped); strings stay as they are."""
    if isinstance(document, str):
        return document
    if not isinstance(document, dict):
        raise InputError(f"document {index}: with rank_fields a document is a string or an object")
    lines = [f"{name}: {document[name]}" for name in fields if document.get(name) not in (None, "")]
    if not lines:
        raise InputError(f"document {index}: none of the rank_fields {fields}")
    return "\n".join(lines)
