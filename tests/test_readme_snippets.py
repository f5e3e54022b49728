"""Every Python snippet of the README's "Agents and frameworks" section runs, with the model names, the
server URL and the key swapped for the tiny checkpoints and a loopback server holding the test
collection "docs" (the MCP snippet starts ``vlsearch mcp`` over stdio itself)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from server_helpers import serve  # noqa: E402
from vlsearch.server import ServerConfig  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
KEY = "test-key-0123456789"
NEEDS = {"MCP": "mcp", "LangChain": "langchain_openai", "LlamaIndex": "llama_index.core", "Cohere": "cohere"}


def snippets() -> list[tuple[str, str]]:
    """(subsection heading, code) of each python block of the section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Agents and frameworks\n", 1)[1].split("\n## ", 1)[0]
    found, heading = [], ""
    for part in re.split(r"(?m)^(### .*)$", section):
        if part.startswith("### "):
            heading = part[4:].strip()
            continue
        found += [(heading, code) for code in re.findall(r"```python\n(.*?)```", part, re.S)]
    return found


SNIPPETS = snippets()


def test_every_integration_has_a_snippet():
    headings = {h.split(":")[0].split(" ")[0] for h, _ in SNIPPETS}
    assert {"MCP", "LangChain", "LlamaIndex", "Cohere", "sentence-transformers"} <= headings, headings


@pytest.fixture(scope="module")
def server(indexed, reranker_path):
    with serve(ServerConfig(model=indexed.model, reranker=str(reranker_path), home=indexed.home,
                            api_keys=(KEY,))) as running:
        yield running


@pytest.mark.parametrize("heading, code", SNIPPETS, ids=[f"{h}-{i}" for i, (h, _) in enumerate(SNIPPETS)])
def test_snippet_runs(heading, code, server, indexed, embedder_path, reranker_path, tmp_path, monkeypatch, capfd):
    for word, module in NEEDS.items():
        if heading.startswith(word):
            pytest.importorskip(module)
    for name, value in {"Qwen/Qwen3-VL-Embedding-2B": str(embedder_path),
                        "Qwen/Qwen3-VL-Reranker-2B": str(reranker_path),
                        "http://localhost:8000": server.url, '"KEY"': repr(KEY)}.items():
        code = code.replace(name, value)
    src = str(Path(__import__("vlsearch").__file__).parent.parent)
    for name, value in {"VLSEARCH_HOME": str(indexed.home), "VLSEARCH_EMBEDDER": str(embedder_path),
                        "VLSEARCH_RERANKER": str(reranker_path), "HF_HUB_OFFLINE": "1",
                        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
                        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    from vlsearch.testing import gradient_image

    gradient_image(160, 120, seed=4).save(tmp_path / "chart.png")
    exec(compile(code, f"README.md ({heading})", "exec"), {"__name__": "__main__"})
    printed = capfd.readouterr().out
    assert printed.strip(), "the snippet printed nothing"
