"""`accord send`, `accord transfers` and `accord settings`: files between devices."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError

out = Console()
err = Console(stderr=True)


def send(
    paths: list[Path] = typer.Argument(..., help="Files and folders to send."),
    to: str = typer.Option(..., "--to", help="The circle member to send them to."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Send files and folders to a device's inbox, with a progress bar. Sending the
    same files again after an interruption moves only the blocks still missing."""
    for path in paths:
        if not path.exists():
            raise AccordError(f"no such file or folder: {path}")
    absolute = [str(p.absolute()) for p in paths]
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    )
    done: dict[str, Any] | None = None
    with progress:
        task = progress.add_task(f"sending to {to}", total=None)
        for event in control_client(home, 15.0).stream("send", device=to, paths=absolute):
            if event["kind"] == "start":
                progress.update(task, total=event["bytes_total"])
            elif event["kind"] == "progress":
                progress.update(task, completed=event["bytes_done"])
            elif event["kind"] == "done":
                done = event
    if done is None:
        raise AccordError(f"the send to {to} ended without a confirmation; send again")
    if as_json:
        sys.stdout.write(json.dumps(done) + "\n")
        return
    moved = done["bytes_sent"] / 1e6
    seconds = max(done["seconds"], 1e-3)
    for f in done["files"]:
        out.print(f"{f['name']} -> {done['to']}: inbox/{f['saved_as']}", markup=False)
    resumed = (
        f", {done['bytes_skipped'] / 1e6:.1f} MB already there" if done["bytes_skipped"] else ""
    )
    out.print(
        f"sent {len(done['files'])} file(s), {done['bytes_total'] / 1e6:.1f} MB "
        f"({moved:.1f} MB moved{resumed}) in {seconds:.1f} s",
        markup=False,
        highlight=False,
    )


def transfers(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Files this device is receiving, has received, and has partly received."""
    result = control_client(home).call("transfers")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"incoming files (inbox: {result['inbox']})", title_justify="left")
    for col in ("From", "Files", "State", "Progress"):
        table.add_column(col)
    for row in [*result["active"], *result["recent"]]:
        files = ", ".join(row["saved"] or row["files"])
        size = f"{row['bytes_done'] / 1e6:.1f} of {row['bytes_needed'] / 1e6:.1f} MB"
        state = row["state"] + (f": {row['error']}" if row["error"] else "")
        table.add_row(row["from"], files, state, size)
    for row in result["partial"]:
        size = f"{row['bytes_done'] / 1e6:.1f} of {row['bytes_total'] / 1e6:.1f} MB"
        table.add_row(row["from"], row["file"], "partial: send again to resume", size)
    out.print(table)


def settings(
    changes: list[str] = typer.Argument(None, help="NAME=VALUE settings to change."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show or change this device's continuity settings (inbox, clipboard, notifications)."""
    result = control_client(home).call("settings", changes=changes or [])
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for name, value in result.items():
        if isinstance(value, list):
            value = ",".join(value)
        out.print(f"{name} = {value}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(send)
    app.command()(transfers)
    app.command()(settings)
