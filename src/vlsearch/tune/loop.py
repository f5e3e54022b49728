"""The training loop both models share: LoRA set-up, encoding ahead, forward with gradients,
AdamW with warm-up and linear decay, checkpoints, resume after a kill, progress and a log.

Determinism: batch ``s`` is a function of the seed and ``s`` alone (a per-epoch shuffle and a
per-step sampler), and a checkpoint holds the adapter, the optimiser, the schedule and the RNG
state, so a run killed after checkpoint ``s`` and resumed ends with the adapter of a run that
was never killed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..errors import InputError, VlsearchError, in_context
from ..models.adapters import TARGET_MODULES, quiet_peft, require_peft
from ..models.batching import collate, last_token, plan_batches
from ..models.qwen3vl import Encoded

CHECKPOINT_PREFIX = "step-"
TRAINER_STATE = "trainer.pt"


@dataclass
class TrainOptions:
    """Hyperparameters of one model's training.

    Attributes:
        rank, alpha, dropout, targets: LoRA (default r = alpha = 32 on the language model's
            q/k/v/o and gate/up/down projections, as in the Qwen3-VL-Embedding report).
        epochs: passes over the training queries; ``max_steps`` overrides it.
        batch_size: queries per step.
        negatives: mined hard negatives per query per step.
        lr, warmup, weight_decay, max_grad_norm: AdamW, linear warm-up over ``warmup`` of the
            steps then linear decay to 0, gradient clipping.
        temperature: InfoNCE temperature (embedder).
        matryoshka: dimensions whose InfoNCE losses are summed (0 stands for the full dimension;
            empty: the full dimension only).
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        save_every: steps between checkpoints; ``keep_checkpoints``: how many are kept.
        batch_tokens: padded tokens per forward chunk (default: the model's own budget).
        seed: LoRA initialisation, shuffling and sampling.
    """

    rank: int = 32
    alpha: int = 32
    dropout: float = 0.0
    targets: str = TARGET_MODULES
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16
    negatives: int = 3
    lr: float = 1e-4
    warmup: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    matryoshka: Sequence[int] = field(default_factory=tuple)
    gradient_checkpointing: bool = True
    save_every: int = 50
    keep_checkpoints: int = 2
    batch_tokens: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise InputError("LoRA needs rank >= 1, alpha > 0 and dropout in [0, 1)")
        if self.batch_size < 2:
            raise InputError(f"batch size must be >= 2 (in-batch negatives), not {self.batch_size}")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise InputError("epochs and max_steps must be >= 1")
        if self.lr <= 0 or self.temperature <= 0 or self.negatives < 0 or self.save_every < 1:
            raise InputError("lr and temperature must be > 0, negatives >= 0, save_every >= 1")
        if self.keep_checkpoints < 1 or not 0 <= self.warmup < 1:
            raise InputError("keep_checkpoints must be >= 1 and warmup in [0, 1)")

    def record(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in asdict(self).items()}


def add_lora(model: Any, options: TrainOptions) -> Any:
    """Wrap a ``Qwen3VLModel`` with fresh LoRA layers (seeded); gradient checkpointing if asked."""
    import torch

    peft = require_peft()
    torch.manual_seed(options.seed)
    config = peft.LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                             target_modules=options.targets, bias="none")
    model.config.use_cache = False
    if options.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        with quiet_peft():
            wrapped = peft.get_peft_model(model, config)
    except ValueError as exc:
        raise InputError(f"LoRA targets {options.targets!r}: {exc}") from None
    wrapped.train()
    return wrapped


def hidden_states(model: Any, encoded: Sequence[Encoded], pad_token_id: int, device: str, batch_tokens: int,
                  max_items: int = 64) -> Any:
    """Last-token hidden states (n, D) in float32, with gradients, in input order: inputs run in
    length-sorted chunks under a padded-token budget (``collate`` and ``last_token``, as inference)."""
    import torch

    rows: list[Any] = [None] * len(encoded)
    for chunk in plan_batches([len(e) for e in encoded], batch_tokens, max_items):
        batch = collate([encoded[i] for i in chunk], pad_token_id, device)
        out = model(**batch, use_cache=False)
        hidden = last_token(out.last_hidden_state, batch["attention_mask"]).float()
        for i, row in zip(chunk, hidden):
            rows[i] = row
    return torch.stack(rows)


class EncodingCache:
    """Encoded inputs by key, encoded on a thread pool ahead of use and kept up to ``max_bytes``
    (least recently used dropped). ``encode(key)`` errors are raised naming ``describe(key)``."""

    def __init__(self, encode: Callable[[str], Encoded], describe: Callable[[str], str], pool: Any,
                 max_bytes: int = 1 << 30) -> None:
        self._encode, self._describe, self._pool, self.max_bytes = encode, describe, pool, max_bytes
        self._done: OrderedDict[str, Encoded] = OrderedDict()
        self._pending: dict[str, Future] = {}
        self._bytes = 0

    def prefetch(self, keys: Sequence[str]) -> None:
        for key in keys:
            if key not in self._done and key not in self._pending:
                self._pending[key] = self._pool.submit(self._encode, key)

    def get(self, keys: Sequence[str]) -> list[Encoded]:
        self.prefetch(keys)
        out = []
        for key in keys:
            if key in self._pending:
                try:
                    value = self._pending.pop(key).result()
                except VlsearchError as exc:
                    raise in_context(self._describe(key), exc) from None
                self._done[key] = value
                self._bytes += value.nbytes
            self._done.move_to_end(key)
            out.append(self._done[key])
        while self._bytes > self.max_bytes and len(self._done) > len(keys):
            _, dropped = self._done.popitem(last=False)
            self._bytes -= dropped.nbytes
        return out


class Objective(Protocol):
    """What the loop trains: a LoRA-wrapped model and a loss over examples."""

    label: str
    model: Any

    def count(self, split: str) -> int:
        """Examples in "train" or "val"."""

    def plan(self, split: str, indices: Sequence[int], rng: np.random.Generator) -> Any:
        """What one step computes on: the examples at ``indices`` with their sampled documents."""

    def keys(self, plan: Any) -> list[str]:
        """The inputs a plan encodes."""

    def prefetch(self, keys: Sequence[str]) -> None:
        """Start encoding these inputs (while the step before runs)."""

    def loss(self, plan: Any) -> Any:
        """The scalar loss of a plan."""


@dataclass
class TrainResult:
    """Steps run (from ``resumed_from``), the log, and the time this process trained."""

    steps: int
    resumed_from: int
    history: list[dict[str, Any]]
    seconds: float
    batch_size: int

    @property
    def samples_per_second(self) -> float:
        """Training queries (each with its documents) per second in this process."""
        done = self.steps - self.resumed_from
        return done * self.batch_size / self.seconds if done and self.seconds > 0 else math.nan


def _schedule(total: int, warmup: float) -> Callable[[int], float]:
    ramp = max(1, int(round(total * warmup)))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return max(0.0, (total - step) / max(1, total - ramp))

    return factor


def train(objective: Objective, options: TrainOptions, folder: Path, *, digest: str,
          progress: bool | None = None, say: Callable[[str], None] = lambda m: None) -> TrainResult:
    """Train ``objective.model`` for the configured steps, checkpointing into ``folder``.

    A checkpoint in ``folder`` made with the same ``digest`` (settings and data) is resumed;
    one made with another digest is refused. The log (``folder/log.jsonl``) gets one line per
    step (loss, learning rate) and one per validation (mean loss over the held-out examples).
    """
    import torch
    from tqdm.auto import tqdm

    options.check()
    n = objective.count("train")
    if n < 2:
        raise InputError(f"{objective.label}: {n} training examples; at least 2 are needed")
    model = objective.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    size = min(options.batch_size, n)
    per_epoch = max(1, n // size)
    total = options.max_steps or options.epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, options.warmup))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.jsonl"
    start, history = _resume(folder, model, optimizer, scheduler, digest, total)
    if start:
        say(f"{objective.label}: resuming from the checkpoint of step {start} of {total}")
    _write_log(log, history)

    def indices(step: int) -> list[int]:
        order = np.random.default_rng([options.seed, step // per_epoch]).permutation(n)
        b = step % per_epoch
        return [int(i) for i in order[b * size:(b + 1) * size]]

    def plan(step: int) -> Any:
        return objective.plan("train", indices(step), np.random.default_rng([options.seed, 1, step]))

    show = progress if progress is not None else sys.stderr.isatty()
    started = time.perf_counter()
    model.train()
    upcoming = plan(start) if start < total else None
    with tqdm(total=total, initial=start, desc=f"tune {objective.label}", unit="step", disable=not show,
              dynamic_ncols=True) as bar:
        for step in range(start, total):
            current, upcoming = upcoming, plan(step + 1) if step + 1 < total else None
            if upcoming is not None:
                objective.prefetch(objective.keys(upcoming))
            loss = objective.loss(current)
            if not torch.isfinite(loss):
                raise VlsearchError(f"{objective.label}: the loss is {loss.item()} at step {step + 1}; "
                                    "lower the learning rate")
            loss.backward()
            if options.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            entry = {"step": step + 1, "loss": round(float(loss.item()), 6), "lr": lr,
                     "seconds": round(time.perf_counter() - started, 3)}
            history.append(entry)
            _append_log(log, entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{lr:.2e}")
            bar.update(1)
            if (step + 1) % options.save_every == 0 or step + 1 == total:
                val = validation_loss(objective, size)
                if val is not None:
                    history.append({"step": step + 1, "val_loss": round(val, 6)})
                    _append_log(log, history[-1])
                save_checkpoint(folder, step + 1, model, optimizer, scheduler, history, digest, options)
    return TrainResult(total, start, history, time.perf_counter() - started, size)


def validation_loss(objective: Objective, size: int) -> float | None:
    """Mean loss over the held-out examples (fixed batches, no gradients), or None without any."""
    import torch

    n = objective.count("val")
    if n < 2:
        return None
    losses, weights = [], []
    objective.model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, size):
                chunk = list(range(start, min(n, start + size)))
                if len(chunk) < 2:  # a lone example has no in-batch negatives: join it to the batch before
                    continue
                losses.append(float(objective.loss(objective.plan("val", chunk, np.random.default_rng(0)))))
                weights.append(len(chunk))
    finally:
        objective.model.train()
    return float(np.average(losses, weights=weights)) if losses else None


# ---------------------------------------------------------------- checkpoints

def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(folder: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    history: list[dict[str, Any]], digest: str, options: TrainOptions) -> Path:
    """Write the adapter and the trainer state into a temporary directory, then rename it: a
    checkpoint directory is complete or absent."""
    import torch

    final = folder / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = folder / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    state = {"step": step, "digest": digest, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": torch.get_rng_state(), "history": history}
    with open(tmp / TRAINER_STATE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoints(folder)[:-options.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _resume(folder: Path, model: Any, optimizer: Any, scheduler: Any, digest: str,
            total: int) -> tuple[int, list[dict[str, Any]]]:
    import torch
    from safetensors.torch import load_file

    peft = require_peft()
    found = checkpoints(folder)
    if not found:
        return 0, []
    last = found[-1]
    state = torch.load(last / TRAINER_STATE, map_location="cpu", weights_only=False)
    if state.get("digest") != digest:
        raise InputError(f"{folder}: holds checkpoints of a run with other settings or data; use another "
                         "output directory, or restart (--restart) to discard them")
    if state["step"] > total:
        raise InputError(f"{last}: step {state['step']} is past the {total} steps of this run")
    weights = load_file(str(last / "adapter_model.safetensors"), device=str(next(model.parameters()).device))
    peft.set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["step"]), list(state["history"])


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    """The log as of the resumed checkpoint: steps logged after it (and lost with the kill) go."""
    path.write_text("".join(json.dumps(e) + "\n" for e in history), encoding="utf-8")


def _append_log(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a training log."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mean_loss(history: Sequence[dict[str, Any]], first: bool, window: int = 5) -> float:
    """Mean training loss of the first (or last) ``window`` steps."""
    losses = [e["loss"] for e in history if "loss" in e]
    part = losses[:window] if first else losses[-window:]
    return float(np.mean(part)) if part else math.nan
