"""The machinery the embedder and the reranker share: load once, encode ahead, batch, pool."""

from __future__ import annotations

import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..errors import InputError
from ..media.images import MediaLimits
from .adapters import AdapterInfo, apply_adapter, check_base, combined_fingerprint, read_adapter
from .batching import collate, collate_packed, last_token, last_token_packed, plan_batches, plan_packed, run_with_backoff
from .feed import Ahead, Prepared, TokenCounts
from .layout import AttentionBackend
from .qwen3vl import (Encoded, VisionBudget, checkpoint_fingerprint, encode_each, load_backbone, pick_device,
                      resolve_checkpoint)


class Qwen3VLBase:
    """Loads a Qwen3-VL checkpoint and turns encoded inputs into last-token hidden states.

    Args:
        model: hub id (downloaded once into the Hugging Face cache) or local directory.
        device: "cuda", "cuda:1", "cpu" ...; the first GPU when there is one.
        dtype: "auto" ($VLSEARCH_DTYPE, else bfloat16 on a GPU and on a CPU with bfloat16 matrix
            instructions, else float32), "float32", "bfloat16", "float16", or "int8" (CPU: int8
            linear layers, float32 elsewhere: CPUs without bfloat16). See ``models/precision.py``.
        budget: pixel, frame and token budgets.
        limits: caps on media inputs (pixels, bytes, video length, URL policy).
        batch_tokens: tokens per forward pass (length-sorted batches; counted with padding when
            ``packed`` is off); default 16384 on a GPU, 2048 on a CPU, where batches that stay in
            cache run faster (``bench/README.md``).
        max_batch_size: inputs per forward pass.
        attn_implementation: None (default: vlsearch's attention, which runs each sequence on its
            own tokens, as batch invariance and packing need), or any transformers implementation
            ("sdpa", "flash_attention_2" ...; padded batches, no packing).
        batch_invariant: run every matrix product on one input's rows alone, so that a result is
            bit-identical whatever else is in its batch (see ``models/invariant.py``). False merges
            the inputs of a batch into shared GEMMs: equal up to rounding (~1e-7 in float32).
            Can be switched on a loaded model.
        packed: concatenate a batch's inputs into one row without padding (``models/layout.py``);
            False pads them into rows. Both give the same results (bit for bit on CPU).
        attention: how a packed row's attention runs: "auto" (flash-attention's variable-length
            kernel on a GPU where installed, else PyTorch's jagged SDPA on a GPU, else one SDPA
            call per input), "flash_varlen", "sdpa_jagged", "sdpa_mask" (one call, block-diagonal
            mask) or "rowwise" (``models/attention.py``).
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
        packed: bool = True,
        attention: AttentionBackend = "auto",
    ) -> None:
        from .attention import register_rowwise_attention, resolve_backend
        from .int8 import quantize_linears
        from .precision import compute_dtype, dtype_name, load_dtype

        self.model_id = str(model)
        self.path = resolve_checkpoint(model, revision)
        self.device = pick_device(device)
        self.precision = dtype_name(dtype, self.device)
        self.dtype = compute_dtype(self.precision)
        self.budget = budget or self.default_budget
        self.limits = limits or MediaLimits()
        self.batch_tokens = batch_tokens or (16384 if self.device.startswith("cuda") else 2048)
        self.max_batch_size = max_batch_size
        self.prefetch_bytes = prefetch_bytes
        attn = attn_implementation or register_rowwise_attention()
        self.model, self.processor = load_backbone(self.path, self.device, load_dtype(self.precision), attn)
        self.base_fingerprint = checkpoint_fingerprint(self.path)
        self.adapter: AdapterInfo | None = None
        if adapter is not None:
            # merged before the linear layers turn batch-invariant: inference sees plain weights
            self.adapter = read_adapter(adapter)
            check_base(self.adapter, self.model_id, self.base_fingerprint)
            self.model = apply_adapter(self.model, self.adapter).eval()
        if self.precision == "int8":  # after the adapter: it merges into float weights
            self.model = quantize_linears(self.model)
        self._batch_invariant = False
        self.batch_invariant = batch_invariant
        self.packed = packed and attn_implementation is None  # packing needs vlsearch's attention function
        self.attention = resolve_backend(attention, self.device, self.dtype)
        self.token_counts = TokenCounts()
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

    @property
    def max_seq_length(self) -> int:
        """The most tokens of one input (``budget.max_length``; text beyond it is cut), as
        sentence-transformers names it."""
        return self.budget.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"max_seq_length must be a positive integer, not {value!r}")
        self.budget = dataclasses.replace(self.budget, max_length=value)

    @property
    def batch_invariant(self) -> bool:
        return self._batch_invariant

    @batch_invariant.setter
    def batch_invariant(self, on: bool) -> None:
        from .invariant import make_batch_invariant, make_plain

        if on:  # GPU reduction kernels split a row by the tensor's shape: norms sum in a fixed order there
            make_batch_invariant(self.model, fixed_order_norms=self.device.startswith("cuda"))
        elif self._batch_invariant:
            make_plain(self.model)
        self._batch_invariant = bool(on)

    def rope_positions(self, e: Encoded) -> Any:
        """An input's own (3, len) multimodal rotary positions, as transformers computes them for
        it alone (kept on the input: computed once, on the preprocessing threads when possible)."""
        if e.position_ids is None:
            if e.image_grid_thw is None and e.video_grid_thw is None:
                import torch

                e.position_ids = torch.arange(len(e)).expand(3, -1)
            else:
                e.position_ids = self.model.get_rope_index(
                    e.input_ids[None], e.mm_token_type_ids[None], e.image_grid_thw, e.video_grid_thw)[0][:, 0]
        return e.position_ids

    def _prepare(self, encoded: Sequence[Encoded]) -> Prepared:
        """Collate one batch (packed or padded) and move it to the device."""
        from .layout import PackedLayout, RowLayout

        lengths = [len(e) for e in encoded]
        if self.packed:
            layout = PackedLayout(lengths, self.attention)
            return Prepared(collate_packed(encoded, self.rope_positions, self.device), layout, sum(lengths))
        batch = collate(encoded, self.pad_token_id, self.device)
        return Prepared(batch, RowLayout(lengths), len(lengths) * max(lengths))

    def _hidden(self, encoded: Sequence[Encoded]) -> Any:
        """Last-token hidden states of one batch: (B, D), float32, on the device."""
        from .layout import PackedLayout

        states, prepared = self._last_layer(encoded)
        if isinstance(prepared.layout, PackedLayout):
            return last_token_packed(states, prepared.layout.cu_seqlens).float()
        return last_token(states, prepared.batch["attention_mask"]).float()

    def _last_layer(self, encoded: Sequence[Encoded]) -> tuple[Any, Prepared]:
        """The last layer's hidden states of one batch (every token), with the batch as prepared."""
        import torch

        from .layout import ROWS

        prepared = Ahead.take(encoded) or self._prepare(encoded)
        token = ROWS.set(prepared.layout)
        try:
            with torch.inference_mode():
                out = self.model(**prepared.batch, use_cache=False)
        finally:
            ROWS.reset(token)
        self.token_counts.add(sum(len(e) for e in encoded), prepared.computed)
        return out.last_hidden_state, prepared

    def run_encoded(self, encoded: Sequence[Encoded], head: Callable[[Any], Any],
                    on_rows: Callable[[int], None] | None = None) -> list[Any]:
        """``head(hidden)`` row values for already encoded inputs, in their order: length-sorted
        token-budget batches, out-of-memory batches split and retried. On a GPU the next batch
        is collated and copied to the device while the current one runs."""
        results: list[Any] = [None] * len(encoded)

        def forward(rows: list[int]) -> Any:
            return head(self._hidden([encoded[r] for r in rows]))

        def done(rows: list[int], values: Any) -> None:
            for r, value in zip(rows, values):
                results[r] = value
            if on_rows:
                on_rows(len(rows))

        plan = (plan_packed if self.packed else plan_batches)([len(e) for e in encoded], self.batch_tokens,
                                                              self.max_batch_size)
        with Ahead(self._prepare, self.device) as ahead:
            for i, rows in enumerate(plan):
                if i + 1 < len(plan):
                    ahead.submit([encoded[r] for r in plan[i + 1]])
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
        if self.packed:  # rotary positions computed on the preprocessing threads too
            plain = encode

            def encode(index: int) -> Encoded:
                encoded = plain(index)
                self.rope_positions(encoded)
                return encoded

        with tqdm(total=count, unit=unit, disable=not show, dynamic_ncols=True) as bar:
            for chunk in encode_each(count, encode, self._pool, self._workers, window, self.prefetch_bytes):
                results += self.run_encoded([e for _, e in chunk], head, bar.update)
        return results

    def close(self) -> None:
        """Stop the preprocessing threads (the model stays usable until garbage-collected)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
