"""The control center sits at the top beside the CLI and reaches the node only
through the control API's client: never Zenoh, the bus, the node or a capability
(DESIGN.md: the CLI and the web page never talk to Zenoh: they ask the local node)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_layout import SRC, _graph

ALLOWED = ("accord.web", "accord.control.aio", "accord.control.protocol", "accord.errors")


def test_web_uses_only_the_control_client() -> None:
    bad = []
    for module, deps in _graph().items():
        if module == "accord.web" or module.startswith("accord.web."):
            bad += [f"{module} imports {d}" for d in deps if not d.startswith(ALLOWED)]
    assert not bad, "\n".join(sorted(bad))


def test_web_never_imports_zenoh() -> None:
    for path in (SRC / "web").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "zenoh" for n in names), path


def test_nothing_below_imports_web() -> None:
    users = {
        m
        for m, deps in _graph().items()
        if not m.startswith(("accord.web", "accord.cli"))
        and any(d.startswith("accord.web") for d in deps)
    }
    assert not users


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN: the household may have no internet."""
    static = Path(SRC / "web" / "static")
    for path in static.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/", ""), path
        assert "https://" not in text, path
        assert "//cdn" not in text, path
