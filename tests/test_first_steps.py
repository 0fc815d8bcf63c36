"""A new user's first commands work as written: the README says how to get
``accord`` on the PATH and every ``accord`` line in it parses; ``accord sim`` and the
CLI's hints print commands that run as printed, without an activated virtualenv."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from accord.cli import command
from accord.cli.options import accord_command

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "accord"  # this installation's entry point


def _parse(argv: list[str]) -> Any:
    """Parse ``accord ARGV`` down to its leaf command as the CLI would, invoking
    nothing; a wrong command, option or missing argument raises."""
    cmd: Any = command()
    try:
        ctx = cmd.make_context("accord", argv)
    except typer.Exit:  # an eager option such as --version did its job
        return cmd
    while hasattr(cmd, "resolve_command"):  # a group: go on into its subcommand
        rest = [*ctx._protected_args, *ctx.args]
        if not rest and cmd.invoke_without_command:  # a group that acts alone
            return cmd
        name, cmd, args = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, args, parent=ctx)
    return cmd


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    # Every fenced block, so a fence's language tag cannot shift the pairing; the
    # untagged ones are shell.
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    found = []
    for block in (body for language, body in fenced if not language):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "accord":
                found.append(words)
    return found


def _without_venv_path() -> str:
    venv_bin = str(SCRIPT.parent)
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)


def test_readme_says_how_to_put_accord_on_the_path() -> None:
    text = (ROOT / "README.md").read_text()
    assert ". .venv/bin/activate" in text
    assert "`.venv/bin/accord`" in text
    assert "accord is installed in $(BIN)" in (ROOT / "Makefile").read_text()


def test_every_accord_command_in_the_readme_parses() -> None:
    commands = _readme_commands()
    assert len(commands) > 10
    for words in commands:
        try:
            _parse(words[1:])
        except Exception as exc:  # parse errors are click exceptions with a message
            pytest.fail(f"README command does not parse: {shlex.join(words)}: {exc}")


def test_hints_name_accord_as_the_user_can_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    if not SCRIPT.is_file():
        pytest.skip("no accord script beside this interpreter")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", f"{SCRIPT.parent}{os.pathsep}{_without_venv_path()}")
    assert accord_command() == "accord"  # an activated virtualenv
    monkeypatch.setenv("PATH", _without_venv_path())
    shown = accord_command()
    if SCRIPT.is_relative_to(ROOT):
        assert shown == shlex.quote(str(SCRIPT.relative_to(ROOT)))  # .venv/bin/accord
    monkeypatch.chdir("/")
    assert accord_command() == shlex.quote(str(SCRIPT))


def test_sim_tour_commands_run_as_printed(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    from accord.cli.sim_cmd import _tour
    from accord.sim import DEFAULT_DEVICES
    from accord.sim.household import Household

    house = Household(list(DEFAULT_DEVICES), short_tmp / "house")
    names = ("Nokia X60", "Tablet", "Laptop", "Living-room TV", "Midea Refrigerator")
    for dev, name in zip(house.devices, names, strict=True):
        dev.name = name
    monkeypatch.chdir(ROOT)
    path = _without_venv_path()
    monkeypatch.setenv("PATH", path)
    printed = [ln.strip() for ln in _tour(house).splitlines() if ln.startswith("  ")]
    assert len(printed) >= 8
    for line in printed:
        words = shlex.split(line)
        program = words[0] if os.sep in words[0] else shutil.which(words[0], path=path)
        assert program is not None, line
        assert os.access(program, os.X_OK), line
        _parse(words[1:] if words[1] != "-m" else words[3:])
    # And one for real, in a shell that has not activated the virtualenv: it runs,
    # finds no node (the household is not started), and says how to start one.
    ran = subprocess.run(
        ["sh", "-c", printed[0]],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 1, ran.stderr
    program = shlex.split(printed[0])[0]
    assert f"start one with: {program} up --home" in ran.stderr
