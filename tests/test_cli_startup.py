"""The ``accord`` command starts fast: importing the CLI, and running a command that
only talks to a node, load neither Zenoh nor the node nor the crypto stack.

Asserted on ``sys.modules`` in a fresh interpreter (deterministic, unlike timing).
Measured, ``accord --help`` went from ~0.37 s to ~0.12 s and ``accord status`` from
~0.39 s to ~0.22 s on a 2-core machine; ``python -X importtime -m accord ...`` shows
where the rest goes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# What only a running node, or a command that makes one, may load.
HEAVY = (
    "zenoh",
    "accord.node",
    "accord.bus",
    "accord.trust",
    "accord.rpc",
    "accord.data",
    "accord.apps",
    "accord.hardware",
    "accord.superdevice",
    "accord.device.identity",
    "accord.sim.household",
    "cryptography",
    "spake2",
    "asyncio",
    "psutil",
)


def _modules_after(code: str) -> list[str]:
    """The modules loaded once ``code`` has run (or exited) in a fresh interpreter."""
    prelude = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write("
        "'\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    line = proc.stderr.rsplit("\nMODULES ", 1)[-1]
    loaded: list[str] = json.loads(line)
    return loaded


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_importing_the_cli_loads_nothing_heavy() -> None:
    modules = _modules_after("import accord.cli")
    assert "accord.cli" in modules
    assert _heavy(modules) == []


def test_import_accord_is_lazy_and_from_import_still_works() -> None:
    assert _heavy(_modules_after("import accord; accord.__all__; accord.AccordError")) == []
    modules = _modules_after("from accord import Node, SuperDevice")
    assert "accord.node" in modules
    assert "accord.superdevice.api" in modules


def test_help_and_a_client_command_load_nothing_heavy(tmp_path: Path) -> None:
    run = "from accord.cli import main\nsys.argv = {argv!r}\nmain()\n"
    for argv in (
        ["accord", "--help"],
        ["accord", "status", "--home", str(tmp_path / "no-node")],
        ["accord", "devices", "--json", "--home", str(tmp_path / "no-node")],
    ):
        modules = _modules_after(run.format(argv=argv))
        assert "accord.cli" in modules, argv
        assert _heavy(modules) == [], argv
