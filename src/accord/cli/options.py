"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import typer

HomeOpt = typer.Option(
    None,
    "--home",
    envvar="ACCORD_HOME",
    help="Device home folder (default: $ACCORD_HOME, else the user data folder).",
    show_default=False,
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def home_path(home: Path | None) -> Path:
    from accord.home import resolve_home

    return resolve_home(home)
