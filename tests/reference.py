"""The official wrappers' procedure, restated step by step as a test oracle.

One input per forward pass (no padding), the official message layout and constants,
qwen-vl-utils for every image and video (its own file reading, decord for video files),
the processor's own tensors, and for the reranker the full LM head of
``Qwen3VLForConditionalGeneration`` (logit(yes) - logit(no)). Nothing here is shared with
vlsearch's implementation, so agreement between the two is evidence, not tautology.
"""

from __future__ import annotations

import os
import unicodedata

import numpy as np
import torch
from PIL import Image
from qwen_vl_utils import process_vision_info
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

MIN_PIXELS = 4 * 32 * 32
MAX_PIXELS = 1800 * 32 * 32
TOTAL_PIXELS = 10 * 768 * 32 * 32
FPS, MAX_FRAMES = 1.0, 64
EMBED_INSTRUCTION = "Represent the user's input."
RERANK_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
RERANK_SYSTEM = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
                 'Note that the answer can only be "yes" or "no".')
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tiff", ".svg"}


def _as_list(value, is_single):
    if value is None:
        return []
    return [value] if is_single(value) else list(value)


def _single_video(v):
    if isinstance(v, str):
        return True
    if isinstance(v, list) and v:
        first = v[0]
        return isinstance(first, Image.Image) or (
            isinstance(first, str) and os.path.splitext(first.lower())[1] in IMAGE_EXTS)
    return False


def content_parts(obj: dict, fps=None, max_frames=None) -> list[dict]:
    """Videos, then images, then texts, with the official per-part settings."""
    parts = []
    for vid in _as_list(obj.get("video"), _single_video):
        if isinstance(vid, list):
            frames = vid
            if len(frames) > MAX_FRAMES:
                frames = [frames[i] for i in np.linspace(0, len(frames) - 1, MAX_FRAMES, dtype=int)]
            frames = ["file://" + f if isinstance(f, str) else f for f in frames]
            parts.append({"type": "video", "video": frames, "total_pixels": TOTAL_PIXELS})
        else:
            parts.append({"type": "video", "video": "file://" + vid, "fps": fps or FPS,
                          "max_frames": max_frames or MAX_FRAMES})
    for img in _as_list(obj.get("image"), lambda v: not isinstance(v, list)):
        img = img if isinstance(img, Image.Image) else "file://" + img
        parts.append({"type": "image", "image": img, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS})
    for txt in _as_list(obj.get("text"), lambda v: isinstance(v, str)):
        parts.append({"type": "text", "text": txt})
    return parts


def _tensors(processor, conversation):
    text = processor.apply_chat_template([conversation], add_generation_prompt=True, tokenize=False)
    images, videos, video_kwargs = process_vision_info(
        [conversation], image_patch_size=16, return_video_metadata=True, return_video_kwargs=True)
    metadata = None
    if videos is not None:
        videos, metadata = map(list, zip(*videos))
    return processor(text=text, images=images, videos=videos, video_metadata=metadata,
                     do_resize=False, return_tensors="pt", **video_kwargs)


class ReferenceEmbedder:
    def __init__(self, path):
        self.processor = AutoProcessor.from_pretrained(path)
        self.lm = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()

    @torch.no_grad()
    def embed_one(self, obj: dict) -> np.ndarray:
        instruction = obj.get("instruction")
        if instruction:
            instruction = instruction.strip()
            if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
                instruction += "."
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": instruction or EMBED_INSTRUCTION}]},
            {"role": "user", "content": content_parts(obj, obj.get("fps"), obj.get("max_frames"))},
        ]
        inputs = _tensors(self.processor, conversation)
        hidden = self.lm.model(**inputs).last_hidden_state[0, -1]
        return torch.nn.functional.normalize(hidden, dim=-1).numpy()


class ReferenceReranker:
    def __init__(self, path):
        self.processor = AutoProcessor.from_pretrained(path)
        self.lm = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        vocab = self.processor.tokenizer.get_vocab()
        self.yes, self.no = vocab["yes"], vocab["no"]

    @torch.no_grad()
    def score_one(self, query: dict, doc: dict, instruction=None, fps=None, max_frames=None) -> float:
        user = [{"type": "text", "text": "<Instruct>: " + (instruction or RERANK_INSTRUCTION)},
                {"type": "text", "text": "<Query>:"}, *content_parts(query, fps, max_frames),
                {"type": "text", "text": "\n<Document>:"}, *content_parts(doc, fps, max_frames)]
        conversation = [{"role": "system", "content": [{"type": "text", "text": RERANK_SYSTEM}]},
                        {"role": "user", "content": user}]
        inputs = _tensors(self.processor, conversation)
        logits = self.lm(**inputs).logits[0, -1]
        return torch.sigmoid(logits[self.yes] - logits[self.no]).item()
