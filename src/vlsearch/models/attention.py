"""Causal attention that never mixes sequences: padded rows one by one, or a packed row in one call.

``rowwise_sdpa`` is registered with transformers as an attention implementation. It reads the
layout of the current forward pass (``layout.ROWS``):

- ``RowLayout`` (padded batch): one SDPA call per row, on its real tokens;
- ``PackedLayout`` (one packed row): ``packed_attention``, with the layout's backend:
  - ``flash_varlen``: flash-attention's variable-length kernel (the ``flash_attn`` package);
  - ``sdpa_jagged``: PyTorch SDPA on nested (jagged) tensors, which runs PyTorch's own
    variable-length flash or memory-efficient kernel (CUDA only);
  - ``sdpa_mask``: one PyTorch SDPA call with a block-diagonal causal mask (any device; it
    computes every pair of the packed row, so it only pays for short batches);
  - ``rowwise``: one SDPA call per sequence, on its slice of the packed row (any device);
- no layout (the vision tower, training, calls outside vlsearch): plain SDPA.

``rowwise`` and the padded loop run exactly the same computation on a sequence as a batch of
one, so they agree bit for bit. The variable-length kernels split work per (sequence, head,
query block) and reduce over a sequence's own keys in a fixed order (split-KV is only used to
decode one token), so their result does not depend on the other sequences either; they differ
from ``rowwise`` by rounding. ``sdpa_mask`` rounds depending on where a sequence sits in the row.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .batching import is_oom
from .layout import ROWS, AttentionBackend, PackedLayout, RowLayout

ROWWISE_ATTENTION = "vlsearch_rowwise_sdpa"
BACKENDS: tuple[str, ...] = ("flash_varlen", "sdpa_jagged", "sdpa_mask", "rowwise")
_broken: set[str] = set()  # backends that raised once in this process (warned, then avoided)


def _sdpa(module: Any, query: Any, key: Any, value: Any, mask: Any, **kwargs: Any) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, mask, **kwargs)


def rowwise_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """Causal attention per sequence of the current layout (``ROWS``); plain SDPA otherwise.

    Each sequence goes through exactly the computation of an unpadded batch of one, and no
    attention is spent on padding or across sequences.
    """
    layout = ROWS.get()
    causal = getattr(module, "is_causal", False)
    if isinstance(layout, PackedLayout) and causal and query.shape[0] == 1 and query.shape[2] == layout.total:
        return packed_attention(module, query, key, value, layout, **kwargs), None
    if not isinstance(layout, RowLayout) or not causal or query.shape[0] != len(layout.lengths):
        return _sdpa(module, query, key, value, attention_mask, **kwargs)
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], value.shape[-1])  # (B, L, H, D)
    for row, n in enumerate(layout.lengths):
        rows, _ = _sdpa(module, query[row:row + 1, :, :n], key[row:row + 1, :, :n], value[row:row + 1, :, :n],
                        None, **kwargs)
        out[row, :n] = rows[0]
    return out, None


def register_rowwise_attention() -> str:
    """Make ``rowwise_sdpa`` available to ``from_pretrained(attn_implementation=...)``."""
    from transformers import AttentionInterface

    AttentionInterface.register(ROWWISE_ATTENTION, rowwise_sdpa)
    return ROWWISE_ATTENTION


# ---------------------------------------------------------------- packed row

def flash_varlen_function() -> Any:
    """flash-attention's ``flash_attn_varlen_func``, or None where the package is missing."""
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # noqa: BLE001 - missing, or built for another torch/CUDA
        return None
    return flash_attn_varlen_func


def resolve_backend(requested: AttentionBackend, device: str, dtype: Any) -> str:
    """The backend ``auto`` means on ``device``/``dtype``; an explicit one is checked.

    ``auto``: flash-attention's variable-length kernel on CUDA in 16-bit precision when the
    package is installed, else PyTorch's jagged SDPA on CUDA, else (CPU) the loop per sequence,
    which equals the padded path bit for bit.
    """
    cuda = str(device).startswith("cuda")
    if requested == "auto":
        if cuda and dtype in (torch.float16, torch.bfloat16) and flash_varlen_function() is not None:
            return "flash_varlen"
        return "sdpa_jagged" if cuda else "rowwise"
    if requested not in BACKENDS:
        raise ValueError(f"attention must be auto or one of {', '.join(BACKENDS)}, not {requested!r}")
    if requested == "sdpa_jagged" and not cuda:
        raise ValueError("attention='sdpa_jagged' needs a CUDA device (PyTorch runs causal jagged SDPA there only)")
    if requested == "flash_varlen" and (not cuda or flash_varlen_function() is None):
        raise ValueError("attention='flash_varlen' needs a CUDA device and the flash_attn package")
    return requested


def packed_attention(module: Any, query: Any, key: Any, value: Any, layout: PackedLayout, **kwargs: Any) -> Any:
    """Causal attention of each sequence of a packed row: (1, H, T, D) inputs -> (1, T, H, D).

    A backend that fails (a kernel missing for this head size or GPU) is reported once and
    replaced by the loop per sequence; out-of-memory errors go to the caller (batch back-off).
    """
    backend = layout.attention
    if backend != "rowwise" and backend not in _broken:
        try:
            return _BACKEND_FUNCTIONS[backend](module, query, key, value, layout, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if is_oom(exc):
                raise
            _broken.add(backend)
            warnings.warn(f"attention backend {backend} failed ({type(exc).__name__}: {exc}); "
                          "running attention per sequence instead", RuntimeWarning, stacklevel=2)
    return _rowwise(module, query, key, value, layout, **kwargs)


def _rowwise(module: Any, query: Any, key: Any, value: Any, layout: PackedLayout, **kwargs: Any) -> Any:
    parts = [_sdpa(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, **kwargs)[0]
             for s, e in layout.spans()]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _sdpa_mask(module: Any, query: Any, key: Any, value: Any, layout: PackedLayout, **kwargs: Any) -> Any:
    def block_causal() -> Any:
        device = query.device
        sequence = torch.repeat_interleave(torch.arange(len(layout.lengths), device=device),
                                           torch.tensor(layout.lengths, device=device))
        position = torch.arange(layout.total, device=device)
        return ((sequence[:, None] == sequence[None, :]) & (position[:, None] >= position[None, :]))[None, None]

    mask = layout.cached(("mask", str(query.device)), block_causal)
    return _sdpa(module, query, key, value, mask, **kwargs)[0]


def _heads(x: Any, groups: int) -> Any:
    """(1, Hkv, T, D) -> (T, Hkv * groups, D), each key/value head repeated for its query heads."""
    x = x[0].transpose(0, 1)
    if groups == 1:
        return x
    t, h, d = x.shape
    return x[:, :, None].expand(t, h, groups, d).reshape(t, h * groups, d)


def _cu_seqlens(layout: PackedLayout, device: Any) -> Any:
    """The sequence boundaries on ``device``, copied once per forward pass, not once per layer."""
    return layout.cached(("cu_seqlens", str(device)),
                         lambda: torch.tensor(layout.cu_seqlens, dtype=torch.int32, device=device))


def _sdpa_jagged(module: Any, query: Any, key: Any, value: Any, layout: PackedLayout, **kwargs: Any) -> Any:
    from torch.nn import functional as F

    groups = query.shape[1] // key.shape[1]
    offsets = layout.cached(("offsets", str(query.device)), lambda: _cu_seqlens(layout, query.device).long())

    def nested(x: Any) -> Any:  # (T, H, D) -> (B, H, j, D)
        return torch.nested.nested_tensor_from_jagged(x.contiguous(), offsets, min_seqlen=min(layout.lengths),
                                                      max_seqlen=layout.max_length).transpose(1, 2)

    q, k, v = nested(_heads(query, 1)), nested(_heads(key, groups)), nested(_heads(value, groups))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=kwargs.get("scaling"))
    return out.transpose(1, 2).values()[None]  # (1, T, H, D)


def _flash_varlen(module: Any, query: Any, key: Any, value: Any, layout: PackedLayout, **kwargs: Any) -> Any:
    varlen = flash_varlen_function()
    cu = _cu_seqlens(layout, query.device)
    out = varlen(_heads(query, 1), _heads(key, 1), _heads(value, 1), cu, cu, layout.max_length, layout.max_length,
                 dropout_p=0.0, softmax_scale=kwargs.get("scaling"), causal=True)  # GQA: the kernel's own
    return out[None]


_BACKEND_FUNCTIONS = {"flash_varlen": _flash_varlen, "sdpa_jagged": _sdpa_jagged, "sdpa_mask": _sdpa_mask}
