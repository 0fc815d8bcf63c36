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
    help="Who may use this device's services (default: every circle member; apps: "
    "members at this device's level or higher).",
    no_args_is_help=True,
)


# Who may use a service that is not restricted, where that is not every member.
_DEFAULTS = {
    "apps": "every member may list; members at {level} or higher may install, run, stop, "
    "move and message apps",
    "appdata": "only the device a transfer was offered to",
    "outbox": "only the device a file send was offered to",
}


def _print(result: dict[str, Any], level: str, as_json: bool) -> None:
    for row in result["services"]:
        if row["allowed"] is None and row["service"] in _DEFAULTS:
            row["default"] = _DEFAULTS[row["service"]].format(level=level)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="services of this device", title_justify="left")
    table.add_column("Service")
    table.add_column("Who may call it")
    for row in result["services"]:
        if row["allowed"] is not None:
            who = ", ".join(row["allowed"])
        else:
            who = row.get("default", "every member")
        table.add_row(row["service"], who)
    out.print(table)


def _call(home: Path | None, method: str, **params: Any) -> tuple[dict[str, Any], str]:
    client = control_client(home)
    result = client.call(method, **params)
    return result, str(client.call("status").get("security_level", "its level"))


@app.command("ls")
def ls(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List this device's services and who may call each. Apps: by default members at
    this device's level or higher may manage them (an allow-list replaces that)."""
    _print(*_call(home, "permissions"), as_json)


@app.command("allow")
def allow(
    service: str = typer.Argument(..., help="A service of this device, e.g. camera."),
    devices: list[str] = typer.Argument(
        ..., help="The only members that may call it: names, types such as tv, or ids."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Restrict a service to the named members; anyone else gets PermissionDenied.
    For apps this replaces the level rule: the members named may install and run apps
    here whatever their level, and no one else may (name them all)."""
    _print(*_call(home, "restrict", service=service, devices=devices), as_json)


@app.command("reset")
def reset(
    service: str = typer.Argument(..., help="A service of this device, e.g. camera."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Open a service to every circle member again (apps: back to the level rule)."""
    _print(*_call(home, "restrict", service=service, devices=None), as_json)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="permissions")
