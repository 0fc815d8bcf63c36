"""`accord permissions`: which members may use this device's services."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client

out = Console()
app = typer.Typer(
    help="Who may use this device's services (default: every circle member).",
    no_args_is_help=True,
)


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="services of this device", title_justify="left")
    table.add_column("Service")
    table.add_column("Who may call it")
    for row in result["services"]:
        who = ", ".join(row["allowed"]) if row["allowed"] is not None else "every member"
        table.add_row(row["service"], who)
    out.print(table)


@app.command("ls")
def ls(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List this device's services and who may call each."""
    _print(control_client(home).call("permissions"), as_json)


@app.command("allow")
def allow(
    service: str = typer.Argument(..., help="A service of this device, e.g. camera."),
    devices: list[str] = typer.Argument(
        ..., help="The only members that may call it: names, types such as tv, or ids."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Restrict a service to the named members; anyone else gets PermissionDenied."""
    _print(control_client(home).call("restrict", service=service, devices=devices), as_json)


@app.command("reset")
def reset(
    service: str = typer.Argument(..., help="A service of this device, e.g. camera."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Open a service to every circle member again."""
    _print(control_client(home).call("restrict", service=service, devices=None), as_json)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="permissions")
