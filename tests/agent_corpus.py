"""A small indexed collection for the agent and framework tests: a text file, an image, a two-page PDF
with a text layer and a 10-second video (two segments), indexed with the tiny checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest_files import write_text_pdf, write_video
from vlsearch.ingest import ExtractOptions
from vlsearch.testing import gradient_image

NAME = "docs"
OPTIONS = ExtractOptions(segment_seconds=5.0, chunk_chars=400, chunk_overlap=50)


@dataclass
class Indexed:
    """Where the collection lives (``home``), the folder it indexed (``root``) and its files."""

    home: Path
    root: Path
    files: dict[str, Path]
    model: str


def build(base: Path, embedder_path: Path, embedder, reranker) -> Indexed:
    from vlsearch.catalog import Catalog
    from vlsearch.collection import Collection

    root = base / "files"
    root.mkdir(parents=True)
    files = {"notes": root / "penguins.txt", "image": root / "chart.png",
             "pdf": write_text_pdf(root / "report.pdf", 2, text="Quarterly revenue table"),
             "video": write_video(root / "clip.mp4", frames=80, fps=8)}
    files["notes"].write_text("Penguins live on glaciers in the far south. " * 5)
    gradient_image(160, 120, seed=4).save(files["image"])
    collection = Collection(NAME, catalog=Catalog(base / "home"), model=str(embedder_path),
                            loaded_embedder=embedder, loaded_reranker=reranker)
    report = collection.add([root], workers=0, options=OPTIONS, progress=False)
    assert not report.failed and report.items == 1 + 1 + 2 + 2, report.summary()
    return Indexed(base / "home", root, files, str(embedder_path))


def open_collection(indexed: Indexed, embedder, reranker):
    from vlsearch.catalog import Catalog
    from vlsearch.collection import Collection

    return Collection(NAME, catalog=Catalog(indexed.home), create=False, loaded_embedder=embedder,
                      loaded_reranker=reranker)
