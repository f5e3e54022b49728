"""What the embedder and the reranker share: checkpoints, budgets and item encoding.

An item is encoded on its own (``encode_conversation``), exactly as the official
wrappers encode one input: the checkpoint's chat template, qwen-vl-utils image and
frame resizing, the checkpoint's processor for pixel values and grids. Batching only
concatenates these per-item encodings, so a result never depends on its batch.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image

from ..errors import InputError, MediaError, ModelError, VlsearchError
from ..items import Item, check_text, listed, split_videos
from ..media.images import MediaLimits, describe, load_image
from ..media.video import resize_frames, sample_video

TEMPLATE_TAIL = 5  # "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n": never truncated


@dataclass(frozen=True)
class VisionBudget:
    """Pixel, frame and token budgets (the official wrappers' defaults).

    Attributes:
        min_pixels, max_pixels: bounds on one image after resizing (multiples of 32 x 32).
        total_pixels: pixel budget of one video, shared by its frames.
        fps: frames sampled per second of a video file.
        max_frames: the most frames kept from one video.
        max_length: the most tokens of one input; text beyond it is cut, special tokens kept.
    """

    min_pixels: int = 4 * 32 * 32
    max_pixels: int = 1800 * 32 * 32
    total_pixels: int = 10 * 768 * 32 * 32
    fps: float = 1.0
    max_frames: int = 64
    max_length: int = 8192


@dataclass
class Encoded:
    """One input, tokenised and with its pixels: the unit that batches are made of."""

    input_ids: Any  # (L,) int64
    mm_token_type_ids: Any  # (L,) 0 text, 1 image, 2 video
    pixel_values: Any = None  # (patches, C*T*P*P)
    image_grid_thw: Any = None  # (images, 3)
    pixel_values_videos: Any = None
    video_grid_thw: Any = None
    position_ids: Any = None  # (3, L) multimodal rotary positions, filled in by the model for packing

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors (pixels dominate: ~44 MB for a full-budget page in float32)."""
        tensors = (self.input_ids, self.mm_token_type_ids, self.pixel_values, self.pixel_values_videos)
        return sum(int(t.numel() * t.element_size()) for t in tensors if t is not None)


# ---------------------------------------------------------------- checkpoints

def resolve_checkpoint(model: str | os.PathLike, revision: str | None = None) -> Path:
    """A local directory for ``model``: the directory itself, or the hub snapshot in the HF cache.

    Hub ids download once (config, tokenizer, processor and safetensors files only);
    with ``HF_HUB_OFFLINE=1`` only the cache is used.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        raise ModelError(f"{name}: no such model directory (and not a hub id of the form org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(
            repo_id=name, revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]))
    except LocalEntryNotFoundError:
        raise ModelError(f"{name}: not in the Hugging Face cache and the hub cannot be reached "
                         "(download it once online, or pass a local directory)") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelError(f"{name}: cannot download from the hub ({exc})") from None


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_backbone(path: Path, device: str, dtype: Any, attn_implementation: str | None):
    """``Qwen3VLModel`` (vision tower + language model, no LM head) and its processor."""
    from transformers import AutoProcessor, Qwen3VLModel
    from transformers.utils import logging as hf_logging

    if not any(path.glob("*.safetensors")):
        raise ModelError(f"{path}: no .safetensors weights (other weight formats are not loaded)")
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the LM head of a full checkpoint is expected to be unused
    hf_logging.disable_progress_bar()
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = Qwen3VLModel.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                             attn_implementation=attn_implementation)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: cannot load a Qwen3-VL checkpoint ({exc})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model.to(device).eval(), processor


# ---------------------------------------------------------------- item encoding

def normalise_instruction(instruction: str | None) -> str | None:
    """Strip, and end with punctuation (a period is added otherwise), as the embedder expects."""
    if not instruction or not instruction.strip():
        return None
    instruction = check_text(instruction.strip(), "instruction")
    if not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


class VisionParts:
    """Loaded and resized media of one item, with the message parts that reference them."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self.images: list[Image.Image] = []
        self.videos: list[Any] = []
        self.metadata: list[dict[str, Any]] = []

    def extend(self, other: VisionParts) -> None:
        self.parts += other.parts
        self.images += other.images
        self.videos += other.videos
        self.metadata += other.metadata


def load_item(item: Item, budget: VisionBudget, limits: MediaLimits,
              fps: float | None = None, max_frames: int | None = None) -> VisionParts:
    """Load an item's media and lay out its parts: videos, then images, then texts."""
    from qwen_vl_utils.vision_process import fetch_image, fetch_video

    texts = listed(item.text)
    if any(not isinstance(t, str) for t in texts):
        raise InputError("text must be a string or a list of strings")
    for text in texts:
        check_text(text)
    if not any(t.strip() for t in texts):
        texts = []
    images = listed(item.image)
    videos = split_videos(item.video)
    if not texts and not images and not videos:
        raise InputError("empty item: no text, image or video")
    out = VisionParts()
    fps = item.fps or fps or budget.fps
    max_frames = item.max_frames or max_frames or budget.max_frames
    for video in videos:
        try:
            if isinstance(video, list):
                if not video:
                    raise MediaError("empty frame list")
                if len(video) > limits.max_video_frames:
                    raise MediaError(f"{len(video)} frames, over the limit of {limits.max_video_frames}")
                rate = item.fps  # frames taken at a known rate give true timestamps (the official assumes 2 fps)
                if len(video) > max_frames:
                    import numpy as np

                    if rate:
                        rate *= max_frames / len(video)
                    video = [video[i] for i in np.linspace(0, len(video) - 1, max_frames, dtype=int)]
                spec = {"video": [load_image(f, limits) for f in video], "total_pixels": budget.total_pixels}
                if rate:
                    spec["sample_fps"] = rate
                (pixels, meta), _ = fetch_video(spec, image_patch_size=16, return_video_sample_fps=True,
                                                return_video_metadata=True)
            else:
                sampled = sample_video(video, fps, max_frames, limits)
                pixels = resize_frames(sampled.frames, min_pixels=None, max_pixels=None,
                                       total_pixels=budget.total_pixels)
                meta = sampled.metadata
        except ValueError as exc:  # qwen-vl-utils' aspect-ratio and frame-count checks
            raise MediaError(f"video {describe(video)}: {exc}") from None
        out.parts.append({"type": "video"})
        out.videos.append(pixels)
        out.metadata.append(meta)
    for image in images:
        loaded = load_image(image, limits)
        try:
            resized = fetch_image({"image": loaded, "min_pixels": budget.min_pixels,
                                   "max_pixels": budget.max_pixels}, image_patch_size=16)
        except ValueError as exc:
            raise MediaError(f"image {describe(image)}: {exc}") from None
        out.parts.append({"type": "image"})
        out.images.append(resized)
    out.parts += [{"type": "text", "text": t} for t in texts]
    return out


def encode_conversation(processor: Any, system: str, user: VisionParts, max_length: int) -> Encoded:
    """Chat template + processor for one conversation, then keep-special truncation."""
    conversation = [{"role": "system", "content": [{"type": "text", "text": system}]},
                    {"role": "user", "content": user.parts}]
    text = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    extra = {}
    if user.videos and hasattr(processor.video_processor, "cap_pixels_per_frame"):
        extra["cap_pixels_per_frame"] = True  # frames are resized already (do_resize=False); silences a warning
    try:
        batch = processor(text=[text], images=user.images or None, videos=user.videos or None,
                          video_metadata=user.metadata or None, do_resize=False, do_sample_frames=False,
                          return_tensors="pt", **extra)
    except (ValueError, RuntimeError) as exc:
        raise MediaError(f"the processor rejected the input ({exc})") from None
    ids, types = batch["input_ids"][0], batch["mm_token_type_ids"][0]
    if ids.shape[0] > max_length + TEMPLATE_TAIL:
        ids, types = truncate_keep_special(ids, types, max_length, set(processor.tokenizer.all_special_ids))
    return Encoded(ids, types, batch.get("pixel_values"), batch.get("image_grid_thw"),
                   batch.get("pixel_values_videos"), batch.get("video_grid_thw"))


def truncate_keep_special(ids: Any, types: Any, max_length: int, special: set[int]) -> tuple[Any, Any]:
    """Drop the trailing ordinary text tokens so that at most ``max_length`` tokens precede the
    template tail; special and vision tokens always stay (the official reranker's rule)."""
    import torch

    head = ids[:-TEMPLATE_TAIL]
    keep_always = torch.tensor([t in special for t in head.tolist()]) | (types[:-TEMPLATE_TAIL] != 0)
    budget = max_length - int(keep_always.sum())
    ordinary_rank = torch.cumsum((~keep_always).long(), 0)
    keep = keep_always | (ordinary_rank <= budget)
    keep = torch.cat([keep, torch.ones(TEMPLATE_TAIL, dtype=torch.bool)])
    return ids[keep], types[keep]


def encode_each(count: int, encode: Callable[[int], Encoded], pool: Any, workers: int, max_items: int,
                max_bytes: int | None) -> Iterator[list[tuple[int, Encoded]]]:
    """Encode inputs ``0 .. count-1`` on a thread pool, ahead of the consumer, in chunks.

    A chunk is at most ``max_items`` inputs and about ``max_bytes / 2`` bytes of encoded pixels.
    While the consumer works on a chunk, the pool encodes what comes next, but never more than
    ``max_bytes`` of encodings are held ahead (sizes not known yet count as the largest seen, and
    before any is known at most one input per worker runs), and never more than a chunk's count.
    ``max_bytes=None`` bounds by count alone.
    Errors carry the item's index; the first error stops everything (no partial result).
    """
    from collections import deque

    from ..errors import at_item

    def task(index: int) -> tuple[int, Encoded]:
        try:
            return index, encode(index)
        except VlsearchError as exc:
            raise at_item(index, exc) from exc.__cause__

    ahead: deque[Any] = deque()  # futures, in input order
    next_index, largest = 0, 0
    budget = max_bytes if max_bytes is not None else float("inf")

    def held() -> int:
        return sum(f.result()[1].nbytes for f in ahead if f.done() and not f.exception())

    def fill() -> None:
        nonlocal next_index
        while next_index < count and len(ahead) < max_items:
            running = sum(not f.done() for f in ahead)
            if ahead and (held() + (running + 1) * largest > budget or (not largest and running >= workers)):
                return
            ahead.append(pool.submit(task, next_index))
            next_index += 1

    chunk: list[tuple[int, Encoded]] = []
    chunk_bytes = 0
    try:
        fill()
        while ahead:
            index, encoded = ahead.popleft().result()
            largest = max(largest, encoded.nbytes)
            chunk.append((index, encoded))
            chunk_bytes += encoded.nbytes
            fill()
            if len(chunk) >= max_items or chunk_bytes * 2 >= budget or not ahead:
                yield chunk
                chunk, chunk_bytes = [], 0
                fill()
    finally:
        for future in ahead:
            future.cancel()


MERGED_KEY = "vlsearch_merged"  # config.json of a checkpoint with an adapter merged in (models/adapters.py)


def _first_weights(path: Path) -> bytes:
    """The first MiB of weights of the first shard (its header skipped: it holds names and offsets)."""
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        return b""
    with open(shards[0], "rb") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header)
        return f.read(1 << 20)


def weights_digest(path: Path) -> str:
    """Hash of the first MiB of a checkpoint's weights."""
    import hashlib

    return hashlib.sha256(_first_weights(path)).hexdigest()


def checkpoint_fingerprint(path: Path) -> str:
    """A short hash that tells checkpoints apart: config plus the first MiB of the first weight file.

    Two directories (or a hub id and a copy) of the same checkpoint share it; checkpoints with
    the same architecture but other weights do not. A checkpoint written by
    ``adapters.merge_checkpoint`` has the fingerprint of its base with the adapter, as long as
    its weights are the ones it was written with.
    """
    import hashlib
    import json

    config = (path / "config.json").read_bytes() if (path / "config.json").exists() else b""
    if MERGED_KEY.encode() in config:
        try:
            merged = json.loads(config).get(MERGED_KEY) or {}
        except ValueError:
            merged = {}
        if isinstance(merged, dict) and merged.get("fingerprint") and merged.get("weights") == weights_digest(path):
            return str(merged["fingerprint"])
    return hashlib.sha256(config + _first_weights(path)).hexdigest()[:16]
