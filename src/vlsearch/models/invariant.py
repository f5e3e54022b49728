"""Batch-invariant execution: an input's arithmetic never depends on what shares its forward pass.

A BLAS picks its GEMM kernel, blocking and threading by the shape of each call, so a token's
values round differently depending on how many other tokens share a call. Here no call ever
mixes inputs: every matrix product, attention and norm sees the rows of one input alone, in a
shape that depends on that input alone. A result is then a function of its own input, the
weights and the machine; it never changes with the batch, on any CPU or BLAS.

- **One input per GEMM.** Each linear layer of the language model runs on each sequence's
  real tokens (``InvariantLinear``), whether the batch is padded rows or one packed row
  (``layout.py``); padding tokens are never computed. Row counts are padded to a multiple of
  16 within the input, which also keeps results the same for any thread count.
- **Language model, attention per sequence** (``attention.py``), on its real tokens only.
- **Vision tower, one image or video per forward** (``per_input_vision``): its GEMMs and
  convolutions see one input's patches, and its attention already runs per image.
- **Norms.** On a CPU, ATen reduces each token's row in one thread in a fixed order, whatever
  the number of rows. GPU reduction kernels choose how to split a row by the tensor's shape,
  so on CUDA the language model's RMSNorms sum in a fixed pairwise order written as
  elementwise additions (``InvariantRMSNorm``), which no kernel choice can reorder.

Everything else (activations, rotary embeddings, pooling) is per token or per row.
Batching still shares the Python and framework overhead, the attention calls and the
preprocessing pipeline; what it gives up is merging several short inputs into one GEMM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .layout import ROWS, PackedLayout

__all__ = ["ROW_QUANTUM", "InvariantLinear", "InvariantRMSNorm", "make_batch_invariant", "make_plain",
           "per_input_vision"]


ROW_QUANTUM = 16  # every GEMM has a multiple of this many rows


class InvariantLinear(nn.Linear):
    """``nn.Linear`` whose every GEMM holds the rows of one input, padded to ``ROW_QUANTUM``.

    - A 3-d input laid out as the current ``ROWS`` (the language model's padded batch or packed
      row) is multiplied one sequence at a time, over its real tokens only; padding outputs are
      zero.
    - A 2-d input is one input's rows already (the vision tower runs per input).

    Padding the row count to a multiple of 16 (zero rows, a function of the input's own
    length) keeps every call off the BLAS's few-row kernels, which on some CPUs split the
    work by thread and so round differently with the thread count (MKL on an AMD EPYC: 5-7
    and 9-11 rows). On Intel CPUs MKL's AVX2 kernels split larger products by thread too, so the package sets
    MKL's strict reproducibility mode (``MKL_CBWR``, in ``vlsearch/__init__.py``). Anything else, and training,
    is one plain product.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._product(x)
        if x.dim() == 2:
            return self._rows(x)
        layout = ROWS.get()
        if layout is None or not layout.matches(x):
            return self._product(x)
        if isinstance(layout, PackedLayout):
            parts = [self._rows(x[0, s:e]) for s, e in layout.spans()]
            return (parts[0] if len(parts) == 1 else torch.cat(parts))[None]
        out = x.new_zeros(*x.shape[:-1], self.out_features)
        for row, n in enumerate(layout.lengths):
            out[row, :n] = self._rows(x[row, :n])
        return out

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        n = rows.shape[0]
        padded = -(-n // ROW_QUANTUM) * ROW_QUANTUM
        if padded != n:
            rows = torch.cat([rows, rows.new_zeros(padded - n, rows.shape[1])])
        return self._product(rows)[:n]

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's matrix product (``int8.Int8Linear`` has its own)."""
        return F.linear(x, self.weight, self.bias)


def fixed_order_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension in a pairwise order fixed by its width alone: (..., n) -> (..., 1).

    Each step adds the upper half onto the lower half (an odd last element is carried), so the
    result is built from elementwise additions only: no reduction kernel, whose split of a row
    could depend on how many rows the tensor has.
    """
    while x.shape[-1] > 1:
        n = x.shape[-1]
        half = n // 2
        summed = x[..., :half] + x[..., half:2 * half]
        x = summed if n % 2 == 0 else torch.cat([summed, x[..., 2 * half:]], dim=-1)
    return x


class InvariantRMSNorm(nn.Module):
    """Stands in for the language model's ``RMSNorm`` class (its weight and epsilon), summing the
    squares in ``fixed_order_sum``'s order when ``fixed_order`` is set (on CUDA)."""

    fixed_order = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.fixed_order or torch.is_grad_enabled():
            return super().forward(hidden_states)
        dtype = hidden_states.dtype
        x = hidden_states.to(torch.float32)
        variance = fixed_order_sum(x * x) / x.shape[-1]
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon)).to(dtype)


def _invariant_norm_class(norm: type) -> type:
    """``InvariantRMSNorm`` in front of ``norm`` (one class per norm class, made once)."""
    cls = _NORM_CLASSES.get(norm)
    if cls is None:
        cls = _NORM_CLASSES[norm] = type(f"Invariant{norm.__name__}", (InvariantRMSNorm, norm), {})
    return cls


_NORM_CLASSES: dict[type, type] = {}


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


def make_batch_invariant(model: nn.Module, fixed_order_norms: bool = False) -> None:
    """Switch a loaded ``Qwen3VLModel`` to batch-invariant execution, in place (``make_plain`` undoes it).

    ``fixed_order_norms``: the language model's RMSNorms sum in a fixed order (for GPUs).
    Weights, module names and state dicts stay as they are.
    """
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = InvariantLinear
    for module in model.language_model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            if not isinstance(module, InvariantRMSNorm):
                module.__class__ = _invariant_norm_class(type(module))
            module.fixed_order = fixed_order_norms
    if not hasattr(model.visual, "_vlsearch_per_input"):
        per_input_vision(model.visual)
        model.visual._vlsearch_per_input = True


def make_plain(model: nn.Module) -> None:
    """Undo ``make_batch_invariant``: plain linear layers, norms and vision tower, in place."""
    for module in model.modules():
        if type(module) is InvariantLinear:
            module.__class__ = nn.Linear
        elif isinstance(module, InvariantRMSNorm):
            module.__class__ = type(module).__mro__[2]  # (Invariant<Norm>, InvariantRMSNorm, <Norm>, ...)
            del module.fixed_order
    if hasattr(model.visual, "_vlsearch_per_input"):
        del model.visual.forward  # the instance attribute set by per_input_vision
        del model.visual._vlsearch_per_input
