"""Batch-invariant execution: an input's arithmetic never depends on what shares its forward pass.

A BLAS picks its GEMM kernel, blocking and threading by the shape of each call, so a token's
values round differently depending on how many other tokens share a call. Here no call ever
mixes inputs: every matrix product, attention and norm sees the rows of one input alone, in a
shape that depends on that input alone. A result is then a function of its own input, the
weights and the machine; it never changes with the batch, on any CPU or BLAS.

- **One input per GEMM.** Each linear layer of the language model runs on each sequence's
  real tokens (``InvariantLinear``); padding tokens are never computed (their outputs are
  zero). Row counts are padded to a multiple of 16 within the input, which also keeps results
  the same for any thread count.
- **Language model, attention per sequence** (``rowwise_sdpa``), on its real tokens only.
- **Vision tower, one image or video per forward** (``per_input_vision``): its GEMMs and
  convolutions see one input's patches, and its attention already runs per image.

Everything else (norms, activations, rotary embeddings, pooling) is per token or per row.
Batching still shares the Python and framework overhead, the attention calls and the
preprocessing pipeline; what it gives up is merging several short inputs into one GEMM.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ROWWISE_ATTENTION = "vlsearch_rowwise_sdpa"


@dataclass(frozen=True)
class RowLayout:
    """The real lengths of the rows of a right-padded (rows, width) batch."""

    lengths: list[int]

    def matches(self, x: torch.Tensor) -> bool:
        return x.dim() >= 3 and x.shape[0] == len(self.lengths) and x.shape[1] == max(self.lengths)


ROWS: ContextVar[RowLayout | None] = ContextVar("vlsearch_rows", default=None)


def rowwise_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """Causal attention run separately on each row's real tokens (the layout in ``ROWS``).

    Each row goes through exactly the computation of an unpadded batch of one, and no
    attention is spent on padding. Anything else (the vision tower, calls outside vlsearch)
    falls through to plain SDPA.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = ROWS.get()
    if layout is None or not getattr(module, "is_causal", False) or query.shape[0] != len(layout.lengths):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], value.shape[-1])  # (B, L, H, D)
    for row, n in enumerate(layout.lengths):
        rows, _ = sdpa_attention_forward(module, query[row:row + 1, :, :n], key[row:row + 1, :, :n],
                                         value[row:row + 1, :, :n], None, **kwargs)
        out[row, :n] = rows[0]
    return out, None


def register_rowwise_attention() -> str:
    """Make ``rowwise_sdpa`` available to ``from_pretrained(attn_implementation=...)``."""
    from transformers import AttentionInterface

    AttentionInterface.register(ROWWISE_ATTENTION, rowwise_sdpa)
    return ROWWISE_ATTENTION


ROW_QUANTUM = 16  # every GEMM has a multiple of this many rows


class InvariantLinear(nn.Linear):
    """``nn.Linear`` whose every GEMM holds the rows of one input, padded to ``ROW_QUANTUM``.

    - A 3-d input laid out as the current ``ROWS`` (the language model's padded batch) is
      multiplied one sequence at a time, over its real tokens only; padding outputs are zero.
    - A 2-d input is one input's rows already (the vision tower runs per input).

    Padding the row count to a multiple of 16 (zero rows, a function of the input's own
    length) keeps every call off the BLAS's few-row kernels, which on some CPUs split the
    work by thread and so round differently with the thread count (MKL on an AMD EPYC: 5-7
    and 9-11 rows). Anything else, and training, goes through ``nn.Linear`` unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        if x.dim() == 2:
            return self._rows(x)
        layout = ROWS.get()
        if layout is None or not layout.matches(x):
            return super().forward(x)
        out = x.new_zeros(*x.shape[:-1], self.out_features)
        for row, n in enumerate(layout.lengths):
            out[row, :n] = self._rows(x[row, :n])
        return out

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        n = rows.shape[0]
        padded = -(-n // ROW_QUANTUM) * ROW_QUANTUM
        if padded != n:
            rows = torch.cat([rows, rows.new_zeros(padded - n, rows.shape[1])])
        return F.linear(rows, self.weight, self.bias)[:n]


def per_input_vision(vision: nn.Module) -> None:
    """Make a Qwen3-VL vision tower run each image or video of a call through its own forward."""
    whole = vision.forward

    def forward(hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        if grid_thw.shape[0] <= 1:
            return whole(hidden_states, grid_thw=grid_thw, **kwargs)
        parts = [whole(chunk, grid_thw=grid_thw[i:i + 1], **kwargs)
                 for i, chunk in enumerate(hidden_states.split(grid_thw.prod(-1).tolist()))]
        first = parts[0]
        return type(first)(
            last_hidden_state=torch.cat([p.last_hidden_state for p in parts]),
            pooler_output=torch.cat([p.pooler_output for p in parts]),
            deepstack_features=[torch.cat(level) for level in zip(*(p.deepstack_features for p in parts))],
        )

    vision.forward = forward


def make_batch_invariant(model: nn.Module) -> None:
    """Switch a loaded ``Qwen3VLModel`` to batch-invariant execution, in place.

    Weights, module names and state dicts stay as they are.
    """
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = InvariantLinear
    if not hasattr(model.visual, "_vlsearch_per_input"):
        per_input_vision(model.visual)
        model.visual._vlsearch_per_input = True
