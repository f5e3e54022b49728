"""A retrieval task a random model cannot do, written offline: texts naming a colour against
images of that colour (BEIR layout: ``corpus.jsonl`` with image paths, ``queries.jsonl``,
``qrels/test.tsv``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40),
           "purple": (140, 40, 170), "orange": (240, 140, 20), "black": (10, 10, 10), "white": (245, 245, 245)}
# the colour word always follows a space, so that it is the same tokens in every query
TEMPLATES = ["a {} picture", "something {}", "the colour {}", "an image that is {}", "all {}", "a photo that is {}",
             "mostly {}", "painted {}"]


def colour_task(root: Path, colours: int = len(COLOURS), images_per_colour: int = 4, templates: int = len(TEMPLATES),
                seed: int = 0) -> dict:
    """Images of the first ``colours`` colours (noisy shades) and text queries naming a colour; every
    image of the colour is relevant. Returns the ids: {"docs": [...], "queries": {qid: colour}}."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    corpus, docs = [], []
    chosen = dict(list(COLOURS.items())[:colours])
    for name, rgb in chosen.items():
        for i in range(images_per_colour):
            pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
            path = root / "images" / f"{name}-{i}.png"
            Image.fromarray(pixels).save(path)
            corpus.append({"_id": f"{name}-{i}", "image": f"images/{name}-{i}.png"})
            docs.append(f"{name}-{i}")
    queries = {f"{name}-{t}": name for name in chosen for t in range(templates)}
    rows = [{"_id": qid, "text": TEMPLATES[int(qid.rsplit("-", 1)[1])].format(colour)}
            for qid, colour in queries.items()]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{qid}\t{colour}-{i}\t1" for qid, colour in queries.items()
                                              for i in range(images_per_colour)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return {"docs": docs, "queries": queries}
