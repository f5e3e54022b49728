"""The machinery the embedder and the reranker share: load once, encode ahead, batch, pool."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..media.images import MediaLimits
from .adapters import AdapterInfo, apply_adapter, check_base, combined_fingerprint, read_adapter
from .batching import collate, last_token, plan_batches, run_with_backoff
from .qwen3vl import (Encoded, VisionBudget, checkpoint_fingerprint, encode_each, load_backbone, pick_device,
                      pick_dtype, resolve_checkpoint)


class Qwen3VLBase:
    """Loads a Qwen3-VL checkpoint and turns encoded inputs into last-token hidden states.

    Args:
        model: hub id (downloaded once into the Hugging Face cache) or local directory.
        device: "cuda", "cuda:1", "cpu" ...; the first GPU when there is one.
        dtype: "auto" (bfloat16 on GPU, float32 on CPU), "float32", "bfloat16", "float16".
        budget: pixel, frame and token budgets.
        limits: caps on media inputs (pixels, bytes, video length, URL policy).
        batch_tokens: padded tokens per forward pass (length-sorted batches); default 16384 on a
            GPU, 2048 on a CPU, where batches that stay in cache run faster (``bench/README.md``).
        max_batch_size: inputs per forward pass.
        attn_implementation: None (default: SDPA run on each row's own tokens, which batch
            invariance needs), or any transformers implementation ("sdpa", "flash_attention_2" ...).
        batch_invariant: run every matrix product on one input's rows alone, so that a result is
            bit-identical whatever else is in its batch (see ``models/invariant.py``). False merges
            the inputs of a batch into shared GEMMs: equal up to rounding (~1e-7 in float32).
        revision: hub revision.
        workers: threads that decode and preprocess media ahead of the model.
        prefetch_bytes: encoded inputs (pixels, as float tensors) held ahead of the model, in bytes
            (default 256 MiB: six full-budget pages, 44 MB each); ``None`` bounds by count alone.
        adapter: a LoRA adapter directory (``vlsearch tune``), merged into the weights as they load;
            refused when it was trained on other weights. It is part of ``fingerprint``.
    """

    default_budget = VisionBudget()

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        device: str | None = None,
        dtype: Any = "auto",
        budget: VisionBudget | None = None,
        limits: MediaLimits | None = None,
        batch_tokens: int | None = None,
        max_batch_size: int = 64,
        attn_implementation: str | None = None,
        revision: str | None = None,
        workers: int | None = None,
        batch_invariant: bool = True,
        prefetch_bytes: int | None = 256 * 1024 * 1024,
        adapter: str | os.PathLike | None = None,
    ) -> None:
        from .invariant import make_batch_invariant, register_rowwise_attention

        self.model_id = str(model)
        self.path = resolve_checkpoint(model, revision)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.budget = budget or self.default_budget
        self.limits = limits or MediaLimits()
        self.batch_tokens = batch_tokens or (16384 if self.device.startswith("cuda") else 2048)
        self.max_batch_size = max_batch_size
        self.prefetch_bytes = prefetch_bytes
        attn = attn_implementation or register_rowwise_attention()
        self.model, self.processor = load_backbone(self.path, self.device, self.dtype, attn)
        self.base_fingerprint = checkpoint_fingerprint(self.path)
        self.adapter: AdapterInfo | None = None
        if adapter is not None:
            # merged before the linear layers turn batch-invariant: inference sees plain weights
            self.adapter = read_adapter(adapter)
            check_base(self.adapter, self.model_id, self.base_fingerprint)
            self.model = apply_adapter(self.model, self.adapter).eval()
        self.batch_invariant = batch_invariant
        if batch_invariant:
            make_batch_invariant(self.model)
        self.pad_token_id = self.processor.tokenizer.pad_token_id or 0
        # half the cores: the model's own threads need the rest (more threads slow a 2-core machine)
        self._workers = workers or max(1, min(8, (os.cpu_count() or 2) // 2))
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="vlsearch-encode")

    @property
    def fingerprint(self) -> str:
        """Identifies the weights: the checkpoint's (see ``checkpoint_fingerprint``), with the adapter's."""
        if self.adapter is None:
            return self.base_fingerprint
        return combined_fingerprint(self.base_fingerprint, self.adapter.fingerprint)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    def _hidden(self, encoded: Sequence[Encoded]) -> Any:
        """Last-token hidden states of one batch: (B, D), float32, on the CPU."""
        import torch

        from .invariant import ROWS, RowLayout

        batch = collate(encoded, self.pad_token_id, self.device)
        token = ROWS.set(RowLayout([len(e) for e in encoded]))
        try:
            with torch.inference_mode():
                out = self.model(**batch, use_cache=False)
        finally:
            ROWS.reset(token)
        return last_token(out.last_hidden_state, batch["attention_mask"]).float()

    def run_encoded(self, encoded: Sequence[Encoded], head: Callable[[Any], Any],
                    on_rows: Callable[[int], None] | None = None) -> list[Any]:
        """``head(hidden)`` row values for already encoded inputs, in their order: length-sorted
        token-budget batches, out-of-memory batches split and retried."""
        results: list[Any] = [None] * len(encoded)

        def forward(rows: list[int]) -> Any:
            return head(self._hidden([encoded[r] for r in rows]))

        def done(rows: list[int], values: Any) -> None:
            for r, value in zip(rows, values):
                results[r] = value
            if on_rows:
                on_rows(len(rows))

        for rows in plan_batches([len(e) for e in encoded], self.batch_tokens, self.max_batch_size):
            run_with_backoff(rows, forward, done)
        return results

    def _run(self, count: int, encode: Callable[[int], Encoded], head: Callable[[Any], Any],
             progress: bool | None, unit: str) -> list[Any]:
        """Encode ``count`` inputs ahead on the pool (bounded by ``prefetch_bytes``), run them in
        token-budget batches, return ``head(hidden)`` rows in input order."""
        from tqdm.auto import tqdm

        results: list[Any] = []
        show = progress if progress is not None else (sys.stderr.isatty() and count > self.max_batch_size)
        window = max(4 * self.max_batch_size, 64)
        with tqdm(total=count, unit=unit, disable=not show, dynamic_ncols=True) as bar:
            for chunk in encode_each(count, encode, self._pool, self._workers, window, self.prefetch_bytes):
                results += self.run_encoded([e for _, e in chunk], head, bar.update)
        return results

    def close(self) -> None:
        """Stop the preprocessing threads (the model stays usable until garbage-collected)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
