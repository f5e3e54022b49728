"""Length-sorted batches under a token budget, padded or packed collation, and OOM back-off."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..errors import ModelError
from .qwen3vl import Encoded


def plan_batches(lengths: Sequence[int], max_tokens: int, max_items: int) -> list[list[int]]:
    """Group indices, longest first, so that padded size (items x longest) stays within ``max_tokens``.

    An input longer than ``max_tokens`` gets a batch of its own.

    Example:
        >>> plan_batches([5, 100, 7, 90], max_tokens=200, max_items=8)
        [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if batch is None or len(batch) >= max_items or (len(batch) + 1) * lengths[batch[0]] > max_tokens:
            batches.append([index])
        else:
            batch.append(index)
    return batches


def plan_packed(lengths: Sequence[int], max_tokens: int, max_items: int) -> list[list[int]]:
    """Group indices, longest first, so that real tokens (no padding) stay within ``max_tokens``.

    An input longer than ``max_tokens`` gets a batch of its own.

    Example:
        >>> plan_packed([5, 100, 7, 90], max_tokens=200, max_items=8)
        [[1, 3, 2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    used = 0
    for index in order:
        if not batches or len(batches[-1]) >= max_items or used + lengths[index] > max_tokens:
            batches.append([index])
            used = lengths[index]
        else:
            batches[-1].append(index)
            used += lengths[index]
    return batches


def collate(encoded: Sequence[Encoded], pad_token_id: int, device: str) -> dict[str, Any]:
    """Right-pad token rows and concatenate pixels in row order; returns model kwargs."""
    import torch

    width = max(len(e) for e in encoded)
    input_ids = torch.full((len(encoded), width), pad_token_id, dtype=torch.long)
    types = torch.zeros((len(encoded), width), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        input_ids[row, : len(e)] = e.input_ids
        types[row, : len(e)] = e.mm_token_type_ids
        mask[row, : len(e)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": types, **vision_inputs(encoded)}
    return to_device(batch, device)


def collate_packed(encoded: Sequence[Encoded], positions: Callable[[Encoded], Any], device: str) -> dict[str, Any]:
    """Concatenate token rows without padding into one (1, total) row; returns model kwargs.

    ``positions(e)`` gives an input's own (3, len) multimodal rotary positions (as transformers
    computes them for one input), so that each sequence keeps the positions it has alone.
    """
    import torch

    batch = {"input_ids": torch.cat([e.input_ids for e in encoded])[None],
             "position_ids": torch.cat([positions(e) for e in encoded], dim=1)[:, None],  # (3, 1, total)
             **vision_inputs(encoded)}
    return to_device(batch, device)


def vision_inputs(encoded: Sequence[Encoded]) -> dict[str, Any]:
    """Pixels and grids of a batch, concatenated in input order."""
    import torch

    batch = {}
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        parts = [getattr(e, key) for e in encoded if getattr(e, key) is not None]
        if parts:
            batch[key] = torch.cat(parts)
    return batch


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    """Tensors moved to ``device``; to a GPU through pinned host memory, without blocking the host."""
    if not str(device).startswith("cuda"):
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def last_token(hidden: Any, attention_mask: Any) -> Any:
    """The hidden state of each row's last real token: (B, L, D) -> (B, D)."""
    import torch

    last = attention_mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def last_token_packed(hidden: Any, cu_seqlens: Sequence[int]) -> Any:
    """The hidden state of each sequence's last token in a packed row: (1, T, D) -> (B, D)."""
    import torch

    ends = torch.tensor(cu_seqlens[1:], device=hidden.device) - 1
    return hidden[0, ends]


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_with_backoff(indices: list[int], forward: Callable[[list[int]], Any], on_done: Callable[[list[int], Any], None]) -> None:
    """Run ``forward`` on a batch; on out-of-memory, split it in halves and retry each.

    Raises ``ModelError`` when a single input does not fit.
    """
    import torch

    try:
        result = forward(indices)
    except Exception as exc:
        if not is_oom(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(indices) == 1:
            raise ModelError(f"item {indices[0]}: out of memory even in a batch of one") from None
        half = len(indices) // 2
        run_with_backoff(indices[:half], forward, on_done)
        run_with_backoff(indices[half:], forward, on_done)
        return
    on_done(indices, result)
