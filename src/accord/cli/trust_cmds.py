"""Commands for the circle of trust: pair open/join, trust list."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.cli.render import ago

out = Console()
pair_app = typer.Typer(help="Pair devices into a circle of trust with a PIN.", no_args_is_help=True)
trust_app = typer.Typer(help="The circle of trust: list, revoke, leave.", no_args_is_help=True)


def removed_message(client: Any) -> str:
    """Why this device talks to no circle, if it was removed from its own ("" if
    not, or if the node does not say): for commands that would reach other members."""
    from accord.errors import AccordError

    try:
        status = client.call("status")
    except AccordError:
        return ""
    revocation = status.get("revocation") or {}
    if status.get("membership") != "revoked":
        return ""
    return str(revocation.get("message") or "this device was removed from its circle")


def explain_removal(client: Any, exc: Exception) -> None:
    """A command that talks to the circle failed: if it is because this device was
    removed from its circle, raise that instead."""
    from accord.errors import AccordError

    message = removed_message(client)
    if message and message not in str(exc):
        raise AccordError(message) from exc


@pair_app.command("open")
def pair_open(
    home: Path | None = HomeOpt,
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds the window stays open."),
    as_json: bool = JsonOpt,
) -> None:
    """Show a 6-digit PIN and wait for a device to join with it (Ctrl-C closes it)."""
    for event in control_client(home).stream("pair_open", timeout=timeout):
        if as_json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
            continue
        if event["event"] == "open":
            out.print(f"PIN [bold]{event['pin']}[/]  (open for {event['timeout']:g} s)")
            if "level" in event:
                out.print(
                    f"This device is {event['level']}: a device that joins is admitted at "
                    f"{event['level']} at most (a member of a higher level can raise it).",
                    highlight=False,
                )
            out.print(
                f"On the new device run: accord pair join THIS-DEVICE --pin {event['pin']}",
                highlight=False,
            )
        elif event["event"] == "paired":
            out.print(
                f"[green]{event['name']}[/] joined the circle at {event.get('level') or '?'}. "
                f"Verification code [bold]{event['code']}[/]: check it matches."
            )
            if event.get("declared_level"):
                out.print(
                    f"It declares {event['declared_level']}; to confirm that, run on a member "
                    f"at {event['declared_level']} or higher: accord trust set-level "
                    f"{json.dumps(event['name'])} {event['declared_level']}",
                    highlight=False,
                )
        else:
            out.print(f"[yellow]window closed:[/] {event['reason']}")
            raise typer.Exit(1)


@pair_app.command("join")
def pair_join(
    device: str = typer.Argument(
        ...,
        help="The device showing the PIN: its name (or the start of it), type such as tv, or id.",
    ),
    pin: str = typer.Option(..., "--pin", help="The 6-digit PIN it shows."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Join the circle of the device showing a PIN."""
    result = control_client(home, timeout=30.0).call("pair_join", device=device, pin=pin)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(
        f"Paired with [bold]{result['name']}[/]. Verification code "
        f"[bold]{result['code']}[/]: check it matches the other device."
    )


@trust_app.command("list")
def trust_list(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """The members of this device's circle."""
    data = control_client(home).call("trust_list")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if data.get("membership") == "revoked":
        out.print(Text(data["revocation"]["message"], style="bold red"))
        return
    table = Table(
        title=f"Circle {data['circle_id']} (key epoch {data['epoch']})", title_justify="left"
    )
    for col in ("Name", "Type", "Id", "Level", "Online", "Added"):
        table.add_column(col)
    for m in data["members"]:
        table.add_row(
            m["name"] + (" (this device)" if m["is_self"] else ""),
            m["type"],
            m["device_id"][:10],
            m["security_level"]
            + (f" (declares {m['declared_level']})" if m.get("declared_level") else ""),
            "[green]online[/]" if m["online"] else "[dim]offline[/]",
            ago(m["added_at"]),
        )
    out.print(table)
    if data["revoked"]:
        names = data.get("revoked_names", {})
        out.print(
            "Revoked: " + ", ".join(f"{names.get(d, d[:10])} ({d[:10]})" for d in data["revoked"]),
            highlight=False,
        )


@trust_app.command("revoke")
def trust_revoke(
    device: str = typer.Argument(
        ..., help="The member to revoke: its name, type such as tv, or id (4+ characters)."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove a device from the circle everywhere and rotate the circle key."""
    result = control_client(home, timeout=30.0).call("trust_revoke", device=device)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(
        f"Revoked [bold]{result['name']}[/]; circle key epoch {result['epoch']} "
        f"sent to {len(result['rekeyed'])} member(s)."
    )
    if result.get("notified"):
        out.print(f"{result['name']} was told it is no longer a member.", highlight=False)
    else:
        out.print(
            f"{result['name']} is told it is no longer a member when it next reaches a member.",
            highlight=False,
        )
    if result["unreached"]:
        out.print(
            f"{len(result['unreached'])} member(s) did not answer; they get the new key "
            "when they are next online."
        )


@trust_app.command("set-level")
def trust_set_level(
    device: str = typer.Argument(..., help="The member: its name, type such as tv, or id."),
    level: str = typer.Argument(..., metavar="LEVEL", help="SL1..SL5, at most this device's."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Confirm a member at a higher security level (run on a member at LEVEL or above).

    A pairing host admits a device at the host's own level at most; a device that
    declares more keeps the declaration until a member of that level confirms it."""
    result = control_client(home).call("trust_set_level", device=device, level=level)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(f"{result['name']} is now {result['level']} (was {result['from']}).")


@trust_app.command("leave")
def trust_leave(
    yes: bool = typer.Option(False, "--yes", "-y", help="Leave without asking (for scripts)."),
    force: bool = typer.Option(
        False, "--force", help="Stop the apps that cannot move elsewhere instead of refusing."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Take this device out of its circle (it starts a circle of its own).

    The apps running here move to other members first; a keep-alive app that cannot
    move is restarted by another member from its last state. If another app cannot
    move, nothing happens and the command says which and why (--force stops them).
    Asks before leaving (--yes for scripts). To come back, pair again."""
    warn = Console(stderr=True)
    client = control_client(home, timeout=10.0)
    plan = client.call("trust_leave", plan=True, force=force)
    apps = plan["apps"]
    blocked = [a for a in apps if a["action"] == "blocked"]
    shown = warn if as_json else out
    members = ", ".join(plan["members"])
    shown.print(
        f"[bold]{plan['name']}[/] will leave circle {plan['circle_id']} ({members} stay in "
        "it): they stop trusting this device, it stops receiving the circle's data, and "
        "it starts a circle of its own.",
        highlight=False,
    )
    if apps:
        shown.print("Apps running here:")
    for a in apps:
        shown.print(f"  {a['app_id']}: {_leave_action(a)}", highlight=False)
    shown.print(
        "To come back later, pair again: run `accord pair open` on a member, then here "
        "`accord pair join MEMBER --pin PIN`.",
        highlight=False,
    )
    if blocked:
        names = ", ".join(a["app_id"] for a in blocked)
        warn.print(
            f"[red]Not leaving:[/] {names} cannot move to another member (see above). Stop "
            "them (accord app stop APP), or leave with --force to stop them.",
            highlight=False,
        )
        raise typer.Exit(1)
    if not yes:
        if not sys.stdin.isatty():
            warn.print(
                "[red]Not leaving:[/] confirm with --yes (no terminal to ask on).",
                highlight=False,
            )
            raise typer.Exit(1)
        if not typer.confirm("Leave the circle?", default=False, err=True):
            warn.print("Not leaving; nothing changed.")
            raise typer.Exit(1)
    result = control_client(home, timeout=180.0).call("trust_leave", force=force)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for a in result.get("apps", []):
        out.print(f"  {a['app_id']}: {_left_action(a)}", highlight=False)
    out.print("Left the circle; this device is now in a circle of its own.")


def _leave_action(app: dict[str, object]) -> str:
    """What leaving will do with an app running here (a row of the plan)."""
    action, to, reason = app["action"], app.get("to"), app.get("reason") or ""
    if action == "move":
        return f"moves to {to}"
    if action == "failover":
        return f"stops here; {to} restarts it from its last state ({reason})"
    if action == "stop":
        return f"is stopped (--force): {reason}"
    return f"cannot move: {reason}"


def _left_action(app: dict[str, object]) -> str:
    """What leaving did with an app (a row of the result)."""
    action, to = app["action"], app.get("to")
    if action == "move":
        return f"moved to {to}"
    if action == "failover":
        late = "" if app.get("synced", True) else " (it may restart from an earlier state)"
        return f"stopped here; {to} restarts it from its last state{late}"
    return "stopped"


def register(app: typer.Typer) -> None:
    app.add_typer(pair_app, name="pair")
    app.add_typer(trust_app, name="trust")
