"""`accord app` and `accord ps`: apps that follow the user across the circle."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError

out = Console()
err = Console(stderr=True)
app = typer.Typer(help="Install, run and move apps across the circle.", no_args_is_help=True)
AppArg = typer.Argument(..., help="The app's id (from its accord-app.toml).")
LONG = 75.0  # seconds: moves and installs may carry megabytes


def _json(result: Any) -> None:
    sys.stdout.write(json.dumps(result) + "\n")


def _devices_table(title: str, devices: dict[str, Any]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("Device")
    table.add_column("Result")
    for name, r in devices.items():
        status = r.get("status", "ok" if r["ok"] else "failed")
        if r["ok"]:
            shown = f"[green]{status}[/]"
        elif status == "skipped":
            shown = f"[yellow]skipped:[/] {escape(r['error'])}"
        else:
            shown = f"[red]{escape(r['error'])}[/]"
        table.add_row(escape(name), shown)
    out.print(table)


def _finish(result: dict[str, Any], what: str) -> None:
    """Exit 1 unless the node says the operation succeeded: some device did it and
    none failed (devices skipped for a reason given do not count as failures)."""
    ok = result.get("ok", all(r["ok"] for r in result["devices"].values()))
    if not ok:
        if not result["devices"]:
            err.print(f"[red]no device to {what} it on[/]")
        elif not result.get("failed"):
            err.print(f"[red]no device could {what} it[/]")
        raise typer.Exit(1)


@app.command("install")
def install(
    path: Path = typer.Argument(..., help="The app folder (with accord-app.toml)."),
    on: list[str] = typer.Option(
        [],
        "--on",
        help="Device(s) to install on (name, type such as tv, or id), or 'all' "
        "(default: this device).",
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Bundle, sign and install an app; each target checks the signature and that
    it meets the app's requirements, or refuses with the reason. With --on all, a
    device that lacks what the app requires is skipped (and named, with the reason);
    the command succeeds if every other device installed it."""
    client = control_client(home, timeout=LONG)
    result = client.call("app_install", path=str(path.resolve()), on=on or None)
    if as_json:
        _json(result)
    else:
        _devices_table(
            f"{result['app_id']} {result['version']} ({result['bytes']} bytes, "
            f"sha256 {result['hash'][:12]})",
            result["devices"],
        )
    _finish(result, "install")


@app.command("ls")
def ls(
    all_devices: bool = typer.Option(False, "--all", help="Every online member's apps."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List installed apps."""
    result = control_client(home).call("app_ls", all=all_devices)
    if as_json:
        _json(result)
        return
    table = Table(title="installed apps", title_justify="left")
    for col in ("Device", "App", "Version", "Requires", "State", "Keep alive", "Running"):
        table.add_column(col)
    for a in result["apps"]:
        keep = "yes" if a["keep_alive"] else "no"
        requires = ", ".join(a["requires"]) or "-"
        running = "yes" if a["running"] else ""
        label = a.get("state_label", "S1")
        table.add_row(a["device"], a["app_id"], a["version"], requires, label, keep, running)
    out.print(table)
    if result.get("unreachable"):
        out.print(f"[yellow]did not answer:[/] {', '.join(result['unreachable'])}")


@app.command("remove")
def remove(
    app_id: str = AppArg,
    on: list[str] = typer.Option(
        [], "--on", help="Device(s) (name, type or id), or 'all' (default: this one)."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Uninstall an app (stopping it first if it runs there). With --on all, devices
    that do not hold it are skipped."""
    result = control_client(home, LONG).call("app_remove", app=app_id, on=on or None)
    if as_json:
        _json(result)
    else:
        _devices_table(f"remove {app_id}", result["devices"])
    _finish(result, "remove")


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise AccordError(f"--param takes NAME=VALUE, not {pair!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value  # plain text
    return params


@app.command("run")
def run(
    app_id: str = AppArg,
    on: str | None = typer.Option(
        None,
        "--on",
        help="Where to run it: name, type such as tv, or id (default: the best device).",
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE passed to on_start."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Start an app. Without --on: mains power over battery, a larger display if the
    app wants one, then the lower load (see docs/architecture.md)."""
    result = control_client(home, LONG).call("app_run", app=app_id, on=on, params=_params(param))
    if as_json:
        _json(result)
    else:
        out.print(f"{app_id} started on [bold]{result['device']}[/] (pid {result['pid']})")


@app.command("stop")
def stop(app_id: str = AppArg, home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Stop an app wherever it runs (a keep-alive app is not failed over)."""
    result = control_client(home, LONG).call("app_stop", app=app_id)
    if as_json:
        _json(result)
    else:
        out.print(f"{app_id} stopped on {result['device']}")


@app.command("move")
def move(
    app_id: str = AppArg,
    to: str = typer.Option(..., "--to", help="The device to continue on: name, type or id."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Continue a running app on another device, with its state. If any step fails
    it goes on where it was, with its state intact."""
    result = control_client(home, LONG + 10).call("app_move", app=app_id, to=to)
    if as_json:
        _json(result)
    else:
        out.print(
            f"{app_id} moved from {result['from']} to [bold]{result['to']}[/] with "
            f"{result['state_bytes']} bytes of state in {result['seconds'] * 1000:.0f} ms"
        )


@app.command("send")
def send(
    app_id: str = AppArg,
    message: str = typer.Argument(..., help="A JSON value for the app's on_message."),
    home: Path | None = HomeOpt,
) -> None:
    """Send a message to a running app and print its JSON reply."""
    try:
        body = json.loads(message)
    except json.JSONDecodeError as exc:
        raise AccordError(f"the message is not JSON: {exc}") from exc
    _json(control_client(home, LONG).call("app_send", app=app_id, message=body))


def ps(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Show the apps running across the circle."""
    result = control_client(home, 15.0).call("ps")
    if as_json:
        _json(result)
        return
    table = Table(title="running apps", title_justify="left")
    for col in ("App", "Device", "PID", "Keep alive", "Status"):
        table.add_column(col)
    for r in result["running"]:
        status = json.dumps(r.get("status", {}))[:80]
        keep = "yes" if r["keep_alive"] else "no"
        shown = "paused" if r["paused"] else status
        table.add_row(r["app_id"], r["device"], str(r["pid"]), keep, shown)
    out.print(table)
    for c in result["crashed_here"]:
        out.print(f"[red]{c['app_id']} crashed here:[/] {c['reason']}")
    if result["unreachable"]:
        out.print(f"[yellow]did not answer:[/] {', '.join(result['unreachable'])}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="app")
    root.command("ps")(ps)
