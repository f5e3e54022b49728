"""Which models to load, and loading them: the one place for defaults, environment and families.

The rule for a model name, everywhere (CLI, server, eval, ``Collection``): the name given,
else ``$VLSEARCH_EMBEDDER`` / ``$VLSEARCH_RERANKER``, else the one a collection recorded, else
the Qwen3-VL 2B models. A name that is an ``http(s)://`` URL is a model server (key from
``$VLSEARCH_API_KEY``); anything else is a hub id or a checkpoint directory, loaded by the class
registered for its family (the ``model_type`` of its ``config.json``). Another model family is
one module and one line in ``FAMILIES``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError
from .contract import EmbedderLike, RerankerLike

DEFAULT_EMBEDDER = "Qwen/Qwen3-VL-Embedding-2B"
DEFAULT_RERANKER = "Qwen/Qwen3-VL-Reranker-2B"
EMBEDDER_ENV, RERANKER_ENV, API_KEY_ENV = "VLSEARCH_EMBEDDER", "VLSEARCH_RERANKER", "VLSEARCH_API_KEY"

#: a checkpoint's ``model_type`` -> ("module:Embedder", "module:Reranker")
FAMILIES: dict[str, tuple[str, str]] = {
    "qwen3_vl": ("vlsearch.models.embedder:Embedder", "vlsearch.models.reranker:Reranker"),
}
DEFAULT_FAMILY = "qwen3_vl"  # hub ids not downloaded yet: the family of the default models


def embedder_name(given: str | None = None, recorded: str | None = None) -> str:
    """The embedding model to use (see the module docstring for the order)."""
    return given or os.environ.get(EMBEDDER_ENV) or recorded or DEFAULT_EMBEDDER


def reranker_name(given: str | None = None) -> str:
    """The reranking model to use."""
    return given or os.environ.get(RERANKER_ENV) or DEFAULT_RERANKER


def is_remote(name: str | None) -> bool:
    """Whether a model name is a server URL."""
    return bool(name) and str(name).startswith(("http://", "https://"))


def load_embedder(name: str | None = None, **options: Any) -> EmbedderLike:
    """The embedding model ``embedder_name(name)``: local (``options`` go to its class) or remote."""
    name = embedder_name(name)
    if is_remote(name):
        from .remote import RemoteEmbedder

        _no_adapter(name, options)
        return RemoteEmbedder(name, api_key=os.environ.get(API_KEY_ENV))
    return _family_class(name, 0)(name, **options)


def load_reranker(name: str | None = None, **options: Any) -> RerankerLike:
    """The reranking model ``reranker_name(name)``: local or remote."""
    name = reranker_name(name)
    if is_remote(name):
        from .remote import RemoteReranker

        _no_adapter(name, options)
        return RemoteReranker(name, api_key=os.environ.get(API_KEY_ENV))
    return _family_class(name, 1)(name, **options)


def local_fingerprint(name: str, adapter: str | None = None, revision: str | None = None) -> str | None:
    """The fingerprint a local model will have (see ``qwen3vl.checkpoint_fingerprint``), read from its
    files without loading it; None when they are not here (a model server, a hub id not in the cache)."""
    if is_remote(name):
        return None
    path = Path(name).expanduser()
    if not path.is_dir():
        if name.count("/") != 1:
            return None
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(name, "config.json", revision=revision)
        if not isinstance(config, str):
            return None
        path = Path(config).parent
    if not any(path.glob("*.safetensors")):
        return None
    from .adapters import combined_fingerprint, read_adapter
    from .qwen3vl import checkpoint_fingerprint

    base = checkpoint_fingerprint(path)
    return combined_fingerprint(base, read_adapter(adapter).fingerprint) if adapter else base


def _no_adapter(name: str, options: dict[str, Any]) -> None:
    if options.get("adapter"):
        raise InputError(f"{name}: an adapter applies to a local model, not to a model server "
                         "(load it where the model runs: vlsearch serve --adapter DIR)")


def _family_class(name: str, role: int) -> Any:
    config = Path(name).expanduser() / "config.json"
    family = DEFAULT_FAMILY
    if config.is_file():
        try:
            family = json.loads(config.read_text(encoding="utf-8")).get("model_type") or DEFAULT_FAMILY
        except (OSError, ValueError) as exc:
            raise ModelError(f"{name}: unreadable config.json ({exc})") from None
    if family not in FAMILIES:
        raise ModelError(f"{name}: model type {family!r} is not supported (supported: {', '.join(FAMILIES)})")
    module, _, cls = FAMILIES[family][role].partition(":")
    return getattr(importlib.import_module(module), cls)
