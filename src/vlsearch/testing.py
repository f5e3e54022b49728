"""Random-weight Qwen3-VL checkpoints built offline, for tests and benchmarks.

``build_checkpoint`` writes a directory that loads through the same
``from_pretrained`` path as a real Qwen3-VL-Embedding / -Reranker checkpoint: a
byte-level BPE tokenizer with the Qwen special tokens (and "yes"/"no" as plain
tokens), a Qwen3-VL chat template, image and video processors, and a
``Qwen3VLForConditionalGeneration`` saved as safetensors.

Example:
    >>> path = build_checkpoint("/tmp/tiny-embedder", size="tiny", seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# A Qwen3-VL style template: system / user / assistant turns, images and videos as
# vision_start + pad + vision_end, plain text otherwise.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Real Qwen3-VL-2B dimensions, for speed measurements with random weights.
_SIZES = {
    "tiny": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, mrope_section=[2, 3, 3]),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, deepstack_visual_indexes=[0, 1],
                    num_position_embeddings=256),
    ),
    "2b": dict(
        text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, mrope_section=[24, 20, 20]),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                    deepstack_visual_indexes=[5, 11, 17], num_position_embeddings=2304),
    ),
}
# The 2B widths with two layers in each tower: per-token GEMM shapes of the real model at a
# CPU-friendly cost (what batching and invariance choices cost on real matrix sizes).
_SIZES["2b-shallow"] = dict(
    text={**_SIZES["2b"]["text"], "num_hidden_layers": 2},
    vision={**_SIZES["2b"]["vision"], "depth": 2, "deepstack_visual_indexes": [0, 1]},
)


def build_tokenizer(words: int = 400):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on a small corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "yes no Query Document Instruct Judge whether the meets requirements based on and provided.",
        "Note that answer can only be Represent user's input. Given a search query, retrieve relevant",
        "candidates answer seconds system user assistant a dog on beach cat page chart video image text",
        " ".join(f"w{i}" for i in range(words)),
    ]
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens(["yes", "no"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    return fast


def build_checkpoint(
    path: str | Path,
    *,
    size: Literal["tiny", "2b-shallow", "2b"] = "tiny",
    seed: int = 0,
    tie_word_embeddings: bool = False,
    weights: bool = True,
    dtype: str = "float32",
) -> Path:
    """Write a random Qwen3-VL checkpoint (config, tokenizer, processor, weights) to ``path``.

    Args:
        path: target directory (created).
        size: "tiny" for tests, "2b" for the real Qwen3-VL-2B shapes, "2b-shallow" for its widths
            with two layers per tower (and the small test vocabulary).
        seed: torch seed for the random weights.
        tie_word_embeddings: share the input embedding with the LM head, as the 2B models do.
        weights: False writes config, tokenizer and processor only.
        dtype: of the saved weights ("float32", or "bfloat16": half the bytes to write and load).

    Returns:
        The directory, ready for ``Embedder(path)`` or ``Reranker(path)``.
    """
    import torch
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    dims = _SIZES[size]
    text = dict(dims["text"])
    mrope = text.pop("mrope_section")
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=151936 if size == "2b" else len(tokenizer), max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                             "mrope_section": mrope, "mrope_interleaved": True},
            tie_word_embeddings=tie_word_embeddings, pad_token_id=ids["<|endoftext|>"], **text,
        ),
        vision_config=dict(patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                           out_hidden_size=text["hidden_size"], **dims["vision"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    vision = dict(patch_size=16, merge_size=2, temporal_patch_size=2,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 65536, "longest_edge": 16777216}, **vision),
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": 4096, "longest_edge": 25165824}, **vision),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    config.save_pretrained(path)
    if weights:
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
        if size == "tiny":  # random init is tiny-valued; widen it so outputs differ visibly
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0.0, 0.2) if p.dim() > 1 else None
        from transformers.utils import logging as hf_logging

        model = model.to(getattr(torch, dtype))
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(path)
        finally:
            hf_logging.enable_progress_bar()
    return path


def gradient_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A picture with structure (gradients plus a few blocks), different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                     ((x + y) * 127 // max(width + height, 1))], axis=-1).astype(np.uint8)
    for _ in range(4):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        base[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, 255, 3)
    image = Image.fromarray(base, "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray((np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)[None].repeat(height, 0))
        image.putalpha(alpha)
    return image


def write_video(path: Path, frames: int = 24, fps: int = 8, size: tuple[int, int] = (96, 64),
                codec: str = "mpeg4", faststart: bool = False) -> Path:
    """An MP4 with a moving block, written with PyAV (``faststart``: index before the data)."""
    import av

    width, height = size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[:, :, 0] = (i * 9) % 256
            array[height // 4: height // 2, (i * 3) % width: (i * 3) % width + width // 4, 1] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def fidelity(reference: np.ndarray, other: np.ndarray, queries: int, k: int = 10) -> dict[str, float]:
    """How far ``other``'s unit vectors are from ``reference``'s (the same inputs, e.g. float32
    against a reduced precision): the lowest and mean cosine of each input's two vectors, and the
    mean overlap of the top-``k`` documents each of the first ``queries`` rows retrieves from the
    remaining rows (1.0: the same ``k`` documents)."""
    cosines = (reference * other).sum(axis=1)

    def top(vectors: np.ndarray) -> np.ndarray:
        scores = vectors[:queries] @ vectors[queries:].T
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    overlap = [len(set(a) & set(b)) / k for a, b in zip(top(reference), top(other))]
    return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean()),
            f"top{k}_overlap": float(np.mean(overlap))}


def retrieval_items(queries: int = 8, documents: int = 40, seed: int = 0) -> list[dict]:
    """A synthetic retrieval set for ``fidelity``: ``queries`` short texts, then ``documents``
    texts of 5-60 words and small pictures (one in four)."""
    rng = np.random.default_rng(seed)

    def words(n: int) -> str:
        return " ".join(f"w{i}" for i in rng.integers(0, 400, n))

    items: list[dict] = [{"text": words(int(rng.integers(3, 9)))} for _ in range(queries)]
    for i in range(documents):
        items.append({"image": gradient_image(96 + 32 * (i % 4), 96, seed=i)} if i % 4 == 3
                     else {"text": words(int(rng.integers(5, 60)))})
    return items
