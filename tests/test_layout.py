"""The house rules of ../shared/DESIGN.md, checked on the source: one package per
capability, nothing else at the root, no import cycles, layers pointing one way.

Imports are read with ``ast`` wherever they are (module level, inside functions,
under ``if TYPE_CHECKING:``): a lazy or type-only import is still a dependency, and
laziness is for start-up time, not for hiding a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "accord"
ROOT_MODULES = {"__init__", "__main__", "node", "errors", "clock", "profile"}

# What each layer may not import (DESIGN.md: cli, web -> control -> node ->
# capabilities -> {rpc, bus, trust} -> wire, clock, profile, errors).
CAPABILITIES = {"data", "apps", "hardware", "superdevice", "sim", "continuity"}
FORBIDDEN = {
    "wire": {"bus", "trust", "rpc", "node", "cli", "control", *CAPABILITIES},
    "device": {"bus", "trust", "rpc", "node", "cli", "control", *CAPABILITIES},
    "bus": {"trust", "rpc", "node", "cli", "control", *CAPABILITIES},
    "trust": {"rpc", "node", "cli", "control", *CAPABILITIES},
    "rpc": {"node", "cli", "control", *CAPABILITIES},
    "data": {"node", "cli", "apps", "hardware", "superdevice", "sim", "continuity"},
    "hardware": {"node", "cli", "apps", "data", "sim", "continuity"},
    "continuity": {"node", "cli", "apps", "superdevice", "sim"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = (
        _module_name(path)
        if path.name == "__init__.py"
        else _module_name(path)[: -len(path.stem) - 1]
    )

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            out.update(a.name for a in node.names if a.name.startswith("accord"))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if not mod.startswith("accord"):
                return
            out.add(mod)
            for alias in node.names:  # "from accord.trust import pairing" names a module
                candidate = f"{mod}.{alias.name}"
                if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").exists():
                    out.add(candidate)

    Visitor().visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path):
            # "accord.data" as an import means the package's __init__
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                deps.add(imported)
        graph[name] = deps
    return graph


def test_nothing_at_the_root_but_the_composition_and_the_basics() -> None:
    stray = {p.stem for p in SRC.glob("*.py")} - ROOT_MODULES
    assert not stray, f"move these into their capability's package: {sorted(stray)}"


def test_no_import_cycles() -> None:
    graph = _graph()
    # Package __init__ files re-export their children; an edge child -> package is
    # how Python resolves "from accord.data import X" and is not a cycle of design.
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + ".") or node.startswith(dep + "."):
                continue  # a package and its own modules
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_one_way(layer: str) -> None:
    graph = _graph()
    bad = []
    for module, deps in graph.items():
        if module != f"accord.{layer}" and not module.startswith(f"accord.{layer}."):
            continue
        for dep in deps:
            top = dep.split(".")[1] if dep.count(".") else ""
            if top in FORBIDDEN[layer]:
                bad.append(f"{module} imports {dep}")
    assert not bad, "\n".join(sorted(bad))
