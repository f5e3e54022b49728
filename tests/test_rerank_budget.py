"""Search within a rerank time budget: the best candidates that fit are reranked, the rest are marked
with the reason; mostly-text pages can be reranked on their text; the search reports its timings."""

from __future__ import annotations

import time

import pytest

import vlsearch.collection as collection_module
from ingest_files import write_text_pdf
from vlsearch.collection import Collection
from vlsearch.errors import InputError
from vlsearch.ingest.video_frames import fit_pixels
from vlsearch.ingest import ExtractOptions
from vlsearch.models.contract import RerankerBase
from vlsearch.testing import gradient_image

LONG = " ".join(f"w{i}" for i in range(120))  # 500+ characters of text layer: a mostly-text page


class Paced(RerankerBase):
    """The real reranker, taking ``pause`` seconds more per document (a slow machine), on ``device``."""

    def __init__(self, reranker, pause: float, device: str = "cpu") -> None:
        self.reranker, self.pause, self.device = reranker, pause, device
        self.model_id = reranker.model_id
        self.calls: list[int] = []

    def _scores(self, query, documents, instruction, **options):
        self.calls.append(len(documents))
        time.sleep(self.pause * len(documents))
        return self.reranker.score(query, documents, instruction=instruction)


@pytest.fixture(scope="module")
def collection(tmp_path_factory, embedder_path, reranker):
    root = tmp_path_factory.mktemp("budget")
    (root / "docs").mkdir()
    for i in range(12):
        (root / "docs" / f"note{i:02}.txt").write_text(f"note {i} about w{i} and w{i + 1}", encoding="utf-8")
    write_text_pdf(root / "docs" / "long.pdf", 1, text=LONG)
    write_text_pdf(root / "docs" / "short.pdf", 1, text="a chart")
    gradient_image(800, 600, seed=3).save(root / "docs" / "photo.png")
    c = Collection(str(root / "c"), model=str(embedder_path), loaded_reranker=reranker, rerank_cache_bytes=0)
    c.add([root / "docs"], workers=0, options=ExtractOptions(ocr="never"))
    return c


def test_the_budget_reranks_the_best_candidates_that_fit(collection, reranker):
    collection._reranker = paced = Paced(reranker, pause=0.3)
    timings: dict[str, float] = {}
    results = collection.search("note about w3", top_k=14, candidates=14, mode="dense", rerank_budget=1.5,
                                timings=timings)
    reranked = [r for r in results if r.reranked]
    rest = results[len(reranked):]
    assert paced.calls[:2] == [1, 2] and 3 <= len(reranked) < 14  # one, then as many as the time left pays for
    assert all(r.reranked for r in results[:len(reranked)]) and not any(r.reranked for r in rest)
    assert [r.rerank_score for r in reranked] == sorted((r.rerank_score for r in reranked), reverse=True)
    assert all(r.rerank_score is None and r.note.startswith("not reranked: the 1.5 s rerank budget") for r in rest)
    assert [r.vector_score for r in rest] == sorted((r.vector_score for r in rest), reverse=True)  # first-stage order
    first_stage = collection.search("note about w3", top_k=14, candidates=14, mode="dense", rerank=False)
    assert {r.id for r in reranked} == {r.id for r in first_stage[:len(reranked)]}  # the best candidates
    assert set(timings) == {"embed", "search", "rerank"} and timings["rerank"] < 1.5 + 0.3 * 2 + 1.0


def test_no_limit_and_the_cpu_default(collection, reranker, monkeypatch):
    collection._reranker = Paced(reranker, pause=0.2)
    assert all(r.reranked for r in collection.search("note", top_k=6, candidates=6, mode="dense", rerank_budget=0))
    monkeypatch.delenv("VLSEARCH_RERANK_BUDGET")  # the tests' own setting (conftest) ...
    monkeypatch.setattr(collection_module, "CPU_RERANK_BUDGET", 0.3)  # ... gives way to the default on a CPU ...
    assert not all(r.reranked for r in collection.search("note", top_k=6, candidates=6, mode="dense"))
    collection._reranker = Paced(reranker, pause=0.2, device="cuda")  # ... and none elsewhere
    assert all(r.reranked for r in collection.search("note", top_k=6, candidates=6, mode="dense"))
    with pytest.raises(InputError, match="rerank_budget must be"):
        collection.search("note", rerank_budget=-1)
    monkeypatch.setenv("VLSEARCH_RERANK_BUDGET", "0.3")  # the environment sets the default on any device
    assert not all(r.reranked for r in collection.search("note", top_k=6, candidates=6, mode="dense"))
    monkeypatch.setenv("VLSEARCH_RERANK_BUDGET", "soon")
    with pytest.raises(InputError, match=r"\$VLSEARCH_RERANK_BUDGET must be"):
        collection.search("note", top_k=6, candidates=6, mode="dense")
    with pytest.raises(InputError, match="rerank_inputs must be one of"):
        collection.search("note", rerank_inputs="tiny")


def test_cheap_inputs_rerank_a_mostly_text_page_on_its_text_and_other_pictures_smaller(collection, reranker):
    collection._reranker = reranker  # on the CPU: cheap inputs by default
    query, where = "w7 w8 w9", "modality != 'text'"

    def by_file(**options):
        return {r.source.rsplit("/", 1)[-1]: r for r in collection.search(query, top_k=20, candidates=20,
                                                                          mode="dense", where=where, **options)}

    cheap, full = by_file(), by_file(rerank_inputs="full")
    long, short, photo = cheap["long.pdf"], cheap["short.pdf"], cheap["photo.png"]
    assert long.reranked and long.note.startswith("reranked on its text")
    assert long.rerank_score == reranker.score(query, [{"text": long.text}])[0]
    assert photo.note == short.note == "reranked at 262,144 pixels (rerank_inputs=cheap)"  # little text
    small = fit_pixels(gradient_image(800, 600, seed=3), collection_module.CHEAP_RERANK_PIXELS)
    assert photo.rerank_score == reranker.score(query, [{"image": small}])[0]
    assert all(r.reranked and r.note == "" for r in full.values())
    assert all(full[name].rerank_score != cheap[name].rerank_score for name in ("long.pdf", "short.pdf", "photo.png"))
