"""Options shared by several commands."""

from __future__ import annotations

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

    return ControlClient(home_path(home) / "run" / SOCKET_NAME, timeout=timeout)


def home_path(home: Path | None) -> Path:
    from accord.device.home import resolve_home

    return resolve_home(home)
