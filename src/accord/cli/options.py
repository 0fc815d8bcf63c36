"""Options shared by several commands."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import typer

HomeOpt = typer.Option(
    None,
    "--home",
    envvar="ACCORD_HOME",
    help="Device home folder (default: $ACCORD_HOME, else the user data folder).",
    show_default=False,
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def control_client(home: Path | None, timeout: float = 10.0) -> Any:
    """A client of the node running on ``home`` (the CLI's only way to reach it)."""
    from accord.control.client import ControlClient
    from accord.device.home import SOCKET_NAME

    return ControlClient(
        home_path(home) / "run" / SOCKET_NAME, timeout=timeout, command=accord_command()
    )


def accord_command() -> str:
    """How to run this ``accord`` from the user's shell, for the commands we suggest.

    ``accord`` when it is on PATH (an activated virtualenv); otherwise the path of
    this installation's script, relative to the working folder when under it (so
    after ``make demo`` the hints read ``.venv/bin/accord ...``, runnable from the repo
    root as printed); otherwise ``PYTHON -m accord``.
    """
    script = Path(sys.executable).parent / "accord"
    on_path = shutil.which("accord")
    if not script.is_file():
        return "accord" if on_path else f"{shlex.quote(sys.executable)} -m accord"
    if on_path and os.path.samefile(on_path, script):
        return "accord"
    here = Path.cwd()
    try:
        shown = str(script.absolute().relative_to(here)) if here != here.parent else ""
    except ValueError:
        shown = ""
    shown = shown or str(script.absolute())
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def home_path(home: Path | None) -> Path:
    from accord.device.home import resolve_home

    return resolve_home(home)
