"""The package's layers, checked on its source: imports only go downward, and no module imports itself
back through others (no import circle). Every import counts, also those inside functions and under
``TYPE_CHECKING``; docs/DESIGN.md draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "vlsearch"

#: bottom to top; a component may import its own modules and those of lower layers only
LAYERS: list[set[str]] = [
    {"errors", "version"},
    {"files", "items", "locator", "testing", "grounding"},
    {"media"},
    {"wire"},
    {"models", "stores"},
    {"ingest"},
    {"catalog", "moments"},
    {"collection", "remote"},
    {"watch"},
    {"server", "eval", "integrations"},
    {"mcp", "tune"},  # tune: the eval harness, collections and the models
    {"cli"},
    {"vlsearch"},  # the package root (public API) and __main__
]
RANK = {component: rank for rank, layer in enumerate(LAYERS) for component in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def component(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "vlsearch"
    return parts[1]


def imports(module: str) -> set[str]:
    """The vlsearch modules that ``module`` imports, resolved to the most specific module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("vlsearch") and target != module:
                found.add(target)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_component_has_a_layer():
    assert {component(m) for m in MODULES} <= set(RANK), "add new components to LAYERS (and docs/DESIGN.md)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    here = component(module)
    upward = [target for target in sorted(GRAPH[module])
              if component(target) != here and RANK[component(target)] >= RANK[here]]
    assert not upward, f"{module} ({here}, layer {RANK[here]}) imports {upward}"


def test_no_import_circle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import circles: {cycles}"


def test_the_checker_sees_lazy_and_relative_imports():
    """The checker itself: a function-level relative import is an edge."""
    assert "vlsearch.ingest.ray" in GRAPH["vlsearch.collection"]  # imported inside a method
    assert "vlsearch.models.qwen3vl" in GRAPH["vlsearch.models.embedder"]
    assert "vlsearch.version" in GRAPH["vlsearch.cli"]
