"""`accord notify`, `accord notifications` and `accord ring`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client

out = Console()
notifications_app = typer.Typer(
    help="Notifications on this device, its own and those members mirror to it.",
    invoke_without_command=True,
)


def notify(
    device: str = typer.Argument(..., help="A circle member, or all."),
    title: str = typer.Argument(..., help="The notification's title."),
    body: str = typer.Argument("", help="Its text."),
    app: str = typer.Option("", "--app", help="The app it is from (for per-app filters)."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Post a notification on a device (or all); members that opted in mirror it."""
    result = control_client(home).call("notify", device=device, title=title, body=body, app=app)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print("posted " + ", ".join(result["ids"]), markup=False, highlight=False)


def _row(note: dict[str, Any]) -> list[str]:
    when = time.strftime("%H:%M:%S", time.localtime(note["created"]))
    state = "dismissed" if note["dismissed"] else ("muted" if note["muted"] else "")
    text = note["title"] + (f": {note['body']}" if note["body"] else "")
    return [note["id"], when, note["on"], note["app"] or note["from"], text, state]


@notifications_app.callback()
def notifications(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", help="Keep showing changes (Ctrl-C stops)."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List notifications (newest last); `dismiss ID` dismisses one everywhere."""
    if ctx.invoked_subcommand is not None:
        return
    if watch:
        with contextlib.suppress(KeyboardInterrupt):
            for event in control_client(home).stream("notifications_watch"):
                if as_json:
                    sys.stdout.write(json.dumps(event) + "\n")
                    sys.stdout.flush()
                else:
                    line = " | ".join(_row(event["notification"]))
                    out.print(f"{event['kind']}: {line}", markup=False, highlight=False)
        return
    result = control_client(home).call("notifications")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="notifications", title_justify="left")
    for col in ("Id", "At", "On", "From", "Text", "State"):
        table.add_column(col)
    for note in result["notifications"]:
        table.add_row(*_row(note))
    out.print(table)


@notifications_app.command("dismiss")
def dismiss(
    note_id: str = typer.Argument(..., metavar="ID", help="The notification's id."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Dismiss a notification here and on every member."""
    result = control_client(home).call("notifications_dismiss", id=note_id)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    where = ", ".join(["here", *result["dismissed_on"]])
    out.print(f"dismissed {note_id} ({where})", markup=False, highlight=False)


def ring(
    device: str = typer.Argument(..., help="The circle member to find."),
    stop: bool = typer.Option(False, "--stop", help="Stop it ringing (here or from afar)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start it ringing and return."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find my device: ring its speaker until it is stopped there or from here
    (Ctrl-C, or `accord ring DEVICE --stop` from any member)."""
    client = control_client(home)

    def speaker(method: str) -> dict[str, Any]:
        result: dict[str, Any] = client.call(
            "call", device=device, target=f"speaker.{method}", args=None, timeout=5.0
        )
        return result

    if stop:
        state = speaker("stop_ring")
        if as_json:
            sys.stdout.write(json.dumps(state) + "\n")
        else:
            out.print(f"{device} stopped ringing", markup=False, highlight=False)
        return
    state = speaker("ring")
    if as_json or no_wait:
        if as_json:
            sys.stdout.write(json.dumps(state) + "\n")
        else:
            out.print(f"{device} is ringing; stop it with: ring --stop", markup=False)
        return
    out.print(f"{device} is ringing; Ctrl-C stops it", markup=False, highlight=False)
    try:
        while speaker("ringing")["ringing"]:
            time.sleep(0.3)
    except KeyboardInterrupt:
        speaker("stop_ring")
        out.print(f"{device} stopped ringing", markup=False, highlight=False)
        return
    out.print(f"{device} was found: stopped there", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(notify)
    app.add_typer(notifications_app, name="notifications")
    app.command()(ring)
