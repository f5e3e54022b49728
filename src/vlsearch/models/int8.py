"""int8 linear layers for the CPU (``dtype="int8"``, see ``precision.py``)."""

from __future__ import annotations

import torch
from torch import nn

from .invariant import InvariantLinear


class Int8Linear(InvariantLinear):
    """A linear layer with int8 weights, one scale per output channel (symmetric), and float32
    activations quantised per call by the int8 GEMM (``quantized::linear_dynamic``).

    In the language model every call holds one input's rows (``InvariantLinear``), whatever
    ``batch_invariant`` says; the vision tower runs one input per forward only with ``batch_invariant``
    (the default), so with it off an image's activation scale can depend on the batch's other images.
    """

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        zero = torch.zeros(self.out_features, dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack(quantized, bias)
        self.bias = None  # in the packed weights

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        return torch.ops.quantized.linear_dynamic(flat, self.packed, False).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears(model: nn.Module) -> nn.Module:
    """Replace every linear layer of ``model`` with an ``Int8Linear``, one at a time (a layer's
    float32 copy lives only while it is quantised), then turn the rest to float32. In place."""
    import warnings

    engines = torch.backends.quantized.supported_engines
    if "onednn" in engines:  # its int8 GEMM was the fastest on x86 (about 2.5x FBGEMM's at 1,024 rows)
        torch.backends.quantized.engine = "onednn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized-tensor creation functions warn of a future removal
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear) and not isinstance(child, Int8Linear):
                    setattr(parent, name, Int8Linear(child))
    return model.float()
