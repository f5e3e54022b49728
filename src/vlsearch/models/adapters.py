"""LoRA adapters as part of a model: load (merged into the weights), fingerprint, check, merge to disk.

An adapter directory is what ``peft`` writes (``adapter_config.json``, ``adapter_model.safetensors``)
plus ``vlsearch-adapter.json``: the base model it was trained on (name and weights fingerprint) and
its role (embedder or reranker). Loading refuses an adapter trained on other weights.

For inference the adapter is merged into the base weights as it loads (``W + B·A·alpha/r``), so the
model is plain linear layers again and batch-invariant execution (``invariant.py``) applies
unchanged. ``merge_checkpoint`` writes the same merged weights as a checkpoint directory that
loads like any other; it records the fingerprint of base + adapter, so a collection indexed
with one accepts the other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import MissingExtraError, ModelError
from .qwen3vl import MERGED_KEY, checkpoint_fingerprint, weights_digest

META_FILE = "vlsearch-adapter.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
#: the projections the Qwen3-VL-Embedding technical report adapts, in the language model only
TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def require_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise MissingExtraError("peft", "tune") from exc
    return peft


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the deprecation warning peft triggers on transformers' model (``is_gradient_checkpointing``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


@dataclass(frozen=True)
class AdapterInfo:
    """A checked adapter directory.

    Attributes:
        path: the directory.
        fingerprint: hash of its configuration and weights.
        base_model: the model it was trained on, as recorded ("" when not recorded).
        base_fingerprint: that model's weights fingerprint ("" when not recorded).
        role: "embedder" or "reranker" ("" when not recorded).
    """

    path: Path
    fingerprint: str
    base_model: str = ""
    base_fingerprint: str = ""
    role: str = ""


def combined_fingerprint(base: str, adapter: str) -> str:
    """The fingerprint of a base model with an adapter merged in."""
    return hashlib.sha256(f"{base}+lora:{adapter}".encode()).hexdigest()[:16]


def read_adapter(path: str | Path) -> AdapterInfo:
    """Check that ``path`` is an adapter directory and read what it records."""
    path = Path(path).expanduser()
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelError(f"{path}: not an adapter directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    meta: dict[str, Any] = {}
    if (path / META_FILE).is_file():
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelError(f"{path / META_FILE}: not JSON ({exc})") from None
    return AdapterInfo(path, digest.hexdigest()[:16], str(meta.get("base_model", "")),
                       str(meta.get("base_fingerprint", "")), str(meta.get("role", "")))


def check_base(info: AdapterInfo, model: str, fingerprint: str) -> None:
    """Refuse an adapter trained on other weights than ``model``'s, naming both models."""
    if info.base_fingerprint and info.base_fingerprint != fingerprint:
        raise ModelError(f"adapter {info.path} was trained on {info.base_model or 'another model'} "
                         f"(weights {info.base_fingerprint}); {model} has other weights ({fingerprint}). "
                         "Load it on the model it was trained on")


def write_meta(path: Path, *, role: str, base_model: str, base_fingerprint: str, **extra: Any) -> None:
    """Record the base model and role beside a saved ``peft`` adapter."""
    from ..files import write_json
    from ..version import __version__

    write_json(path / META_FILE, {"role": role, "base_model": base_model, "base_fingerprint": base_fingerprint,
                                  "vlsearch": __version__, **extra})


def apply_adapter(model: Any, info: AdapterInfo) -> Any:
    """``model`` (a ``Qwen3VLModel``) with the adapter merged into its weights; plain modules again."""
    return _merged(model, info)[0]


def _merged(model: Any, info: AdapterInfo) -> tuple[Any, set[str]]:
    """The merged model and the names of the weights the adapter changed."""
    peft = require_peft()
    try:
        with quiet_peft():
            wrapped = peft.PeftModel.from_pretrained(model, str(info.path), is_trainable=False)
        changed = {name.removeprefix("base_model.model.") + ".weight" for name, module in wrapped.named_modules()
                   if isinstance(module, peft.tuners.lora.LoraLayer)}
        return wrapped.merge_and_unload(safe_merge=True), changed
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise ModelError(f"adapter {info.path}: cannot be applied to this model ({exc})") from None


def merge_checkpoint(base: str | Path, adapter: str | Path, output: str | Path, *, model_id: str | None = None) -> Path:
    """Write ``base`` with ``adapter`` merged in as a checkpoint directory at ``output``.

    Every file of the base is copied; the weights the adapter changes are replaced (merged in
    float32, stored in each tensor's own dtype) under their own names in their own shards, and
    ``config.json`` records the fingerprint of base + adapter.

    Example:
        >>> merge_checkpoint("Qwen/Qwen3-VL-Embedding-2B", "tuned/embedder-adapter", "merged")  # doctest: +SKIP
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .qwen3vl import load_backbone, resolve_checkpoint

    source = resolve_checkpoint(base)
    output = Path(output).expanduser()
    if output.resolve() == source.resolve():
        raise ModelError(f"{output}: the merged checkpoint cannot overwrite its base")
    info = read_adapter(adapter)
    base_fp = checkpoint_fingerprint(source)
    check_base(info, model_id or str(base), base_fp)
    model, _ = load_backbone(source, "cpu", torch.float32, "sdpa")
    merged_model, changed = _merged(model, info)
    merged = merged_model.state_dict()
    output.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.suffix != ".safetensors" and item.name != "config.json":
            shutil.copy2(item, output / item.name)
    written: set[str] = set()
    for shard in sorted(source.glob("*.safetensors")):
        tensors, metadata = {}, None
        with safe_open(shard, framework="pt") as f:
            metadata = f.metadata()
            for key in f.keys():
                tensor = f.get_tensor(key)
                name = _model_key(key, changed)
                if name is not None:
                    tensor = merged[name].to(tensor.dtype).contiguous()
                    written.add(name)
                tensors[key] = tensor
        save_file(tensors, output / shard.name, metadata=metadata)
    missing = changed - written
    if missing:
        raise ModelError(f"{source}: no checkpoint tensor for the adapted weights {sorted(missing)[:3]}")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config[MERGED_KEY] = {"fingerprint": combined_fingerprint(base_fp, info.fingerprint),
                          "weights": weights_digest(output), "base_fingerprint": base_fp,
                          "adapter_fingerprint": info.fingerprint}
    (output / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return output


def _model_key(key: str, names: set[str]) -> str | None:
    """The backbone's name for a checkpoint tensor, if it is one of ``names``: checkpoints name the
    backbone ``model.`` (older ones: ``model.layers`` for the language model)."""
    bare = key.removeprefix("model.")
    for candidate in (key, bare, "language_model." + bare):
        if candidate in names:
            return candidate
    return None
