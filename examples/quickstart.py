"""Embed and rerank a few mixed inputs: `python examples/quickstart.py [--tiny]`.

With a hub id or a local directory it runs the real models (downloaded once into the
Hugging Face cache). ``--tiny`` builds random tiny checkpoints offline instead, to
check an installation without downloading weights (the numbers are then meaningless).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vlsearch import Embedder, Reranker


def sample_image(path: Path) -> Path:
    image = Image.new("RGB", (640, 420), "skyblue")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 640, 420), fill="khaki")  # beach
    draw.ellipse((260, 220, 380, 320), fill="saddlebrown")  # dog
    image.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="Qwen/Qwen3-VL-Embedding-2B")
    parser.add_argument("--reranker", default="Qwen/Qwen3-VL-Reranker-2B")
    parser.add_argument("--tiny", action="store_true", help="random tiny checkpoints, no download")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlsearch-quickstart-"))
    if args.tiny:
        from vlsearch.testing import build_checkpoint

        args.model = args.reranker = str(build_checkpoint(work / "tiny"))
    picture = str(sample_image(work / "beach.png"))

    embedder = Embedder(args.model)
    documents = [
        {"text": "A dog runs along a sandy beach under a blue sky."},
        {"image": picture},
        {"text": "Quarterly revenue grew by 12 percent."},
    ]
    query = {"text": "a dog on a beach", "instruction": "Retrieve images or text relevant to the query."}
    vectors = embedder.embed([query, *documents])
    similarity = vectors[1:] @ vectors[0]
    print(f"embedding dimension: {vectors.shape[1]}")
    for doc, sim in zip(documents, similarity):
        print(f"  cosine {sim:+.3f}  {doc}")

    reranker = Reranker(args.reranker)
    for index, score in reranker.rank(query, documents):
        print(f"  rerank {score:.3f}  {documents[index]}")
    assert np.isfinite(similarity).all()


if __name__ == "__main__":
    main()
