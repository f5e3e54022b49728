"""Shared fixtures: tiny random Qwen3-VL checkpoints and real media files, built offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# models compute in float32 whatever this CPU's default is: the tests compare with float32 references bit for bit
os.environ.setdefault("VLSEARCH_DTYPE", "float32")
# every candidate is reranked unless a test sets a budget: a loaded machine must not change what a test sees
os.environ.setdefault("VLSEARCH_RERANK_BUDGET", "0")

from media_files import make_media  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Nothing a test writes reaches the user's ``~/.vlsearch`` (collections, the cache of rebuilt items)."""
    previous = os.environ.get("VLSEARCH_HOME")
    os.environ["VLSEARCH_HOME"] = str(tmp_path_factory.mktemp("vlsearch-home"))
    yield
    if previous is None:
        os.environ.pop("VLSEARCH_HOME", None)
    else:
        os.environ["VLSEARCH_HOME"] = previous


@pytest.fixture(scope="session")
def embedder_path(tmp_path_factory) -> Path:
    from vlsearch.testing import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-embedder", seed=0, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def reranker_path(tmp_path_factory) -> Path:
    from vlsearch.testing import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-reranker", seed=1, tie_word_embeddings=False)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def embedder(embedder_path):
    from vlsearch import Embedder

    return Embedder(embedder_path)


@pytest.fixture(scope="session")
def reranker(reranker_path):
    from vlsearch import Reranker

    return Reranker(reranker_path)


@pytest.fixture(scope="module")
def http(server):
    """An HTTP client of the test module's own ``server`` fixture (a running vlsearch server)."""
    with server.client() as client:
        yield client


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, embedder_path, embedder, reranker):
    """A home with one collection, "docs": a text, an image, a two-page PDF and a video (``agent_corpus``)."""
    from agent_corpus import build

    return build(tmp_path_factory.mktemp("indexed"), embedder_path, embedder, reranker)


@pytest.fixture
def row_count_sensitive_blas(monkeypatch):
    """Matrix products that round each call by its row count, as MKL does on some CPUs: a stand-in
    for the kernel choices of a machine we do not run on."""
    import torch

    def sensitive(product):
        def call(*args, out=None, **kwargs):
            result = product(*args, **kwargs)
            result = result * (1 + (result.shape[-2] % 5 if result.dim() > 1 else 0) * 2.0 ** -22)
            return out.copy_(result) if out is not None else result
        return call

    for name in ("mm", "addmm", "matmul", "bmm"):
        monkeypatch.setattr(torch, name, sensitive(getattr(torch, name)))
    monkeypatch.setattr(torch.nn.functional, "linear", sensitive(torch.nn.functional.linear))
