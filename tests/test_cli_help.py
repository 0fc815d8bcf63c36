"""``accord --help`` reads like a well-kept command-line tool: values have names
(``--home PATH``, ``DEVICE``), flags show none, and ``--version`` answers."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

import accord
from accord.cli import command

# Type tags and brace-wrapped arguments that typer prints unless told otherwise.
TYPE_TAG = re.compile(r"<(bool|int|float|str|path|text|list\[[^\]]*\])>", re.IGNORECASE)
BRACED = re.compile(r"\{[a-z_]+\}")


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        found += _paths(sub, (*prefix, name))
    return found


def _help(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    code = command().main([*args, "--help"], prog_name="accord", standalone_mode=False)
    assert code in (None, 0)
    return capsys.readouterr().out


def test_every_help_page_is_free_of_type_tags_and_braces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _paths(command())
    assert len(paths) > 30  # every command and subcommand, not just a few
    for path in paths:
        text = _help(path, capsys)
        assert text.startswith("Usage: accord"), path
        assert not TYPE_TAG.findall(text), (path, text)
        usage = text.splitlines()[0]
        assert not BRACED.findall(usage), (path, usage)


def test_values_are_named_and_flags_take_none(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(("call",), capsys)
    assert text.splitlines()[0] == "Usage: accord call [OPTIONS] DEVICE TARGET [ARGS]"
    assert re.search(r"^  --home PATH ", text, re.MULTILINE)
    assert re.search(r"^  --timeout SECONDS ", text, re.MULTILINE)
    assert re.search(r"^  --json +Compact", text, re.MULTILINE)  # a flag: no value after it
    up = _help(("up",), capsys)
    assert re.search(r"^  -l, --listen ENDPOINT ", up, re.MULTILINE)
    assert re.search(r"^  --no-multicast +No multicast", up, re.MULTILINE)
    allow = _help(("permissions", "allow"), capsys)
    assert allow.splitlines()[0].endswith("SERVICE DEVICES...")


def test_the_real_command_shows_help_and_version() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "accord", "--help"], capture_output=True, text=True, timeout=30
    )
    assert helped.returncode == 0
    assert "--version" in helped.stdout
    assert not TYPE_TAG.findall(helped.stdout)
    version = subprocess.run(
        [sys.executable, "-m", "accord", "--version"], capture_output=True, text=True, timeout=30
    )
    assert (version.returncode, version.stdout) == (0, f"accord {accord.__version__}\n")
