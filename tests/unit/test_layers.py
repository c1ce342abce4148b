"""Imports run one way (domain <- events <- service layer <- adapters <- entry points) and never
in a circle. Every import counts, including those inside functions (a lazy import is still a
dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "taskflow"

#: Lower layers never import higher ones. Modules of one layer may import each other.
LAYERS: dict[str, int] = {
    "taskflow.domain": 0,
    "taskflow.events": 1,
    "taskflow.telemetry": 1,
    "taskflow.service_layer": 2,
    "taskflow.config": 3,
    "taskflow.functions": 3,
    "taskflow.adapters": 3,
    "taskflow.observability": 4,
    "taskflow.bootstrap": 4,
    "taskflow.api": 4,
    "taskflow.embedded": 4,
    "taskflow.server": 4,
    "taskflow.worker_metrics": 4,
    "taskflow.cli": 4,
    "taskflow.migrations": 4,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["taskflow", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The taskflow module an import names (a module, or the package it is defined in)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            if name.startswith("taskflow"):
                target = _resolve(name)
                if target and target != module and target != "taskflow":
                    found.add(target)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> int:
    for prefix, rank in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "taskflow"))
def test_no_upward_import(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports a higher layer: {upward}"


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components: any component of two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_violation() -> None:
    """The graph is real: the API imports the service layer, and the domain imports nothing above it."""
    assert "taskflow.service_layer.tasks" in GRAPH["taskflow.api.app"]
    assert _layer("taskflow.domain.model") < _layer("taskflow.service_layer.tasks")
