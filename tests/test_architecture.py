"""The import rules of docs/architecture.md, checked on the source: no cycles among the project's modules (lazy,
function-level imports included) and the layering between the packages."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folder at the repository root -> the package it installs as (pyproject.toml's package-dir).
PACKAGES = {
    "classifier": "tierwise.classifier",
    "registry": "tierwise.registry",
    "training": "tierwise.training",
    "serving": "tierwise.serving",
    "tierwise": "tierwise",
}
GENERATED = ROOT / "serving" / "tierwise"


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages by installed dotted name (generated gRPC stubs left out)."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if GENERATED in path.parents:
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(imported project module, the statement, whether it runs at import time) for every import in a module."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != name:
                yield target, node, id(node) in top_level


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {target for target, _, _ in imports_of(name, path, modules)} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each one an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_lazy_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_project_modules():
    assert cycles(import_graph()) == []


# The layers, lowest first, and the packages each one may import (besides itself; `*`: every package), by name under
# `tierwise.`: every edge of the package graph points down this table. docs/architecture.md shows it as a picture and
# as the same table, which the last test holds to this one.
MAY_IMPORT = {
    "classifier": set(),
    "registry": {"classifier"},
    "serving": {"classifier", "registry"},
    "training": {"classifier", "registry"},
    "training.data": {"classifier", "training"},
    "training.embedding": {"classifier", "registry", "training"},
    "training.replay": {"classifier", "training", "training.data"},
    "training.evaluation": {"classifier", "registry", "training", "training.data", "training.embedding"},
    "training.fit": {"classifier", "training", "training.data", "training.embedding", "training.evaluation"},
    "training.tracking": {
        *("classifier", "registry", "training", "training.data", "training.embedding", "training.evaluation"),
        "training.fit",
    },
    "training.audit": {
        *("classifier", "training", "training.data", "training.embedding", "training.evaluation", "training.fit"),
    },
    "tierwise": {"*"},
}
DOCS = ROOT / "docs" / "architecture.md"


def package_graph() -> dict[str, set[str]]:
    """Package -> the other packages its modules import (short names, as in MAY_IMPORT)."""
    modules = project_modules()

    def package(name: str) -> str:
        inside = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
        return inside.removeprefix("tierwise.") or "tierwise"

    graph: dict[str, set[str]] = {package(name): set() for name in modules}
    for name, path in modules.items():
        graph[package(name)] |= {package(target) for target, _, _ in imports_of(name, path, modules)} - {package(name)}
    return graph


def allowed(table: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: set(table) - {name} if "*" in targets else targets for name, targets in table.items()}


def test_no_strongly_connected_group_of_packages():
    assert cycles(package_graph()) == []
    assert cycles(allowed(MAY_IMPORT)) == [], "the layer table itself must point down"


def test_every_package_imports_only_the_layers_below_it():
    """classifier imports nothing of the project; serving and training never import each other; inside training,
    data < embedding, replay < evaluation < fit < tracking, audit."""
    graph, may = package_graph(), allowed(MAY_IMPORT)
    assert set(graph) == set(may), "every package has its row in MAY_IMPORT"
    assert {(name, target) for name, targets in graph.items() for target in targets - may[name]} == set()


def test_the_architecture_document_shows_the_same_layer_table():
    lines = DOCS.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| `")]
    documented = {row[0].strip("`"): set(re.findall(r"`([^`]+)`", row[1])) for row in rows}
    assert documented == MAY_IMPORT


def test_every_import_names_the_installed_package():
    """The root folders install as `tierwise.*`: a bare `classifier` import works only from the repository root."""
    folders = {folder for folder in PACKAGES if folder != "tierwise"}
    sources = [p for d in (*PACKAGES, "tests", "benchmarks", "deploy") for p in (ROOT / d).rglob("*.py")]
    bare = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bare += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] in folders]
    assert bare == []
