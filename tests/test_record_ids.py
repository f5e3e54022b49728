"""Record ids of existing collections never change: a collection built by vlsearch 0.1.0 is pinned.

``fixtures/collection-v0.1`` was written by the first release (a two-page PDF, an image, a video
cut into 5 s segments and a text file cut into chunks). Its ids must still be what today's
code derives from each record's source and locator, or re-indexing an old collection would
duplicate every item.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vlsearch.locator import Locator
from vlsearch.stores import open_store

FIXTURE = Path(__file__).parent / "fixtures" / "collection-v0.1"
PINNED = {
    "088a2c5f936e57864ecf719ab4d77e29", "0acb1e14c9f7ab454e408280c2d347e4", "1d4e8202f73f81c6eb5dc1e5e11a2a5c",
    "350eb4bc84284a71888ed9768eb38183", "7d06d2c719d1a1fd9613adbf95b8863b", "87db7e752a430d1eda0e45bbb05258fd",
    "ade06d17719921a67baee56272e01616", "d093c2fb5ff52082a6b87286e2ec3de2", "ef978c0abbc4ab5b76636059b0d9627b",
}


def test_a_v0_1_collection_keeps_its_record_ids(tmp_path):
    copy = tmp_path / "collection"
    shutil.copytree(FIXTURE, copy)
    store = open_store(str(copy / "store"))
    assert store.read_meta()["vlsearch"] == "0.1.0"
    records = [hit.record for hit in store.search(np.ones(store.dim, np.float32), k=100)]
    assert {r.id for r in records} == PINNED
    assert {r.modality for r in records} == {"pdf_page", "image", "video", "text"}
    for r in records:
        assert Locator(r.modality, r.page, r.start, r.end, r.chunk).record_id(r.source) == r.id, r
