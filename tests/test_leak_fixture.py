"""The leak fixture itself must catch leaks (checked by running pytest on a sample)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE = """
import asyncio, subprocess, sys

async def test_leaks_a_task():
    asyncio.get_running_loop().create_task(asyncio.sleep(60))

def test_leaks_a_process():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
"""


def test_leaks_are_reported(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_sample.py").write_text(SAMPLE)
    conftest = Path(__file__).with_name("conftest.py").read_text()
    (tests / "conftest.py").write_text(conftest.replace("LEAK_GRACE_S = 5.0", "LEAK_GRACE_S = 0.3"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            str(tests),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert "leaked asyncio tasks" in out, out
    assert "leaked processes" in out, out
    assert "2 errors" in out or "2 error" in out, out
