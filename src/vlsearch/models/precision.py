"""Precision of a local model: the ``dtype`` option, its CPU default, and int8 linear layers.

``dtype`` is one of ``DTYPES``. ``auto`` is ``$VLSEARCH_DTYPE`` when set, else bfloat16 on a GPU
and on a CPU that multiplies bfloat16 natively (AMX or AVX512-BF16: a 2048x6144 GEMM ran 6x
float32's speed on the Xeon of ``bench/README.md``), else float32. ``int8`` (``int8.py``) keeps
every linear layer's weights as int8 with one scale per output channel, multiplied by oneDNN's
int8 kernels with activations quantised per call; everything else runs in float32. It suits CPUs
without bfloat16 arithmetic (about twice float32's speed, in less memory); where bfloat16 is
native it is faster and smaller than int8.

Batch invariance holds in every mode (``models/invariant.py``): bfloat16 GEMMs run one input's
rows per call as in float32, and an int8 layer always does, since its activation scale is taken
over the whole call and would otherwise depend on the batch.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError

DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
DTYPE_ENV = "VLSEARCH_DTYPE"


def fast_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AMX tiles or AVX512-BF16)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch's own CPU probes (private)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def dtype_name(dtype: Any, device: str) -> str:
    """The precision ``dtype`` ("auto", a name or a torch dtype) means on ``device``, as a name."""
    import torch

    if dtype is None or dtype == "auto":
        dtype = os.environ.get(DTYPE_ENV) or "auto"
        if dtype == "auto":
            return "bfloat16" if device.startswith("cuda") or fast_bf16_cpu() else "float32"
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES[1:]:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "int8" and device != "cpu":
        raise InputError(f"dtype int8 runs on the CPU only, not on {device} (use bfloat16 there)")
    return dtype


def load_dtype(name: str) -> Any:
    """The torch dtype weights load in: int8 loads bfloat16 (no float32 copy), then quantises."""
    import torch

    return torch.bfloat16 if name == "int8" else getattr(torch, name)


def compute_dtype(name: str) -> Any:
    """The torch dtype of the activations."""
    import torch

    return torch.float32 if name == "int8" else getattr(torch, name)
