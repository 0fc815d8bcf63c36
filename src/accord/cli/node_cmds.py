"""Commands for one device: init, up, down, status, devices, profiles."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from accord.cli.options import HomeOpt, JsonOpt, accord_command, control_client, home_path
from accord.cli.render import devices_table, status_table

out = Console()
err = Console(stderr=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def init(
    home: Path | None = HomeOpt,
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="A built-in profile (see: accord profiles)."
    ),
    profile_file: Path | None = typer.Option(
        None, "--profile-file", help="Your own profile TOML file."
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Display name of this device."),
    force: bool = typer.Option(False, "--force", help="Replace an existing home (new identity)."),
) -> None:
    """Create a device home: profile, identity and data folder."""
    from accord.device.home import init_home

    path = home_path(home)
    h = init_home(path, profile_name=profile, profile_file=profile_file, name=name, force=force)
    out.print(f"Created [bold]{h.name}[/] ({h.profile.vendor} {h.profile.model}) in {path}")
    out.print(f"Device id {h.device_id}, key fingerprint {h.identity.fingerprint}")
    start = f"{accord_command()} up --home {shlex.quote(str(path))}"
    out.print(f"Start it with: {start}", highlight=False, markup=False, soft_wrap=True)


def up(
    home: Path | None = HomeOpt,
    listen: list[str] = typer.Option([], "--listen", "-l", help="Zenoh endpoint to listen on."),
    connect: list[str] = typer.Option([], "--connect", "-c", help="Zenoh endpoint to connect to."),
    no_multicast: bool = typer.Option(
        False, "--no-multicast", help="No multicast scouting (use --connect)."
    ),
    relay: list[str] = typer.Option(
        [],
        "--relay",
        "-r",
        help="Reach the circle through this relay (accord relay): a Zenoh client of it, "
        "no listening, no multicast.",
    ),
    setting: list[str] = typer.Option(
        [], "--set", "-s", help="Override a setting, e.g. lease_ms=3000 or zenoh.PATH=JSON5."
    ),
    hardware: str = typer.Option(
        "simulated",
        "--hardware",
        metavar="KIND",
        help="Drivers: 'simulated' (deterministic) or 'host' (this machine's battery "
        "where it has one; simulated otherwise).",
    ),
) -> None:
    """Run this device in the foreground until Ctrl-C or SIGTERM."""
    from accord.data import sqlite_process
    from accord.errors import AccordError

    sqlite_process.tune()  # before any store opens: see the module

    if hardware not in ("simulated", "host"):
        raise AccordError(f"--hardware is 'simulated' or 'host', not {hardware!r}")
    if relay and listen:
        raise AccordError("--listen has no effect with --relay: a relay's client listens nowhere")
    import asyncio

    from accord.bus.settings import BusSettings
    from accord.device.home import open_home

    h = open_home(home_path(home))
    settings = BusSettings(
        listen=tuple(listen),
        connect=tuple(connect),
        relay=tuple(relay),
        multicast=not no_multicast,
    ).with_overrides(setting)
    asyncio.run(_run(h, settings, hardware))


async def _run(h: Any, settings: Any, hardware: Any) -> None:
    import asyncio

    from accord.cli.stopping import stop_on_signals
    from accord.node import Node

    node = Node(h, settings, drivers=hardware)
    restore = stop_on_signals(asyncio.get_running_loop(), node.stopping.set)
    try:
        async with node:
            err.print(f"[bold]{h.name}[/] is up as {h.device_id}; Ctrl-C to leave", highlight=False)
            await node.run_until_stopped()
    finally:
        restore()
    err.print(f"{h.name} left", highlight=False)


def down(
    home: Path | None = HomeOpt,
    timeout: float = typer.Option(
        10.0, "--timeout", help="Seconds to wait for the node to leave before giving up."
    ),
) -> None:
    """Stop the node running on this home; returns once it has left."""
    from accord.errors import AccordError, ControlError

    path = home_path(home)
    client = control_client(path, timeout)
    node = client.call("status")
    name, pid = node["name"], node["pid"]
    with contextlib.suppress(ControlError):  # a node that dies mid-reply is leaving too
        client.call("stop")
    deadline = time.monotonic() + timeout
    while _holds_home_lock(path):
        if time.monotonic() >= deadline:
            raise AccordError(
                f"{name} (pid {pid}) did not stop within {timeout:g} s; "
                f"see its log, or end it with: kill {pid}"
            )
        time.sleep(0.02)
    out.print(f"{name} stopped", highlight=False)


def _holds_home_lock(path: Path) -> bool:
    """Whether a node still holds ``path``'s lock. A node releases it as the last step
    of leaving (after its peers have seen it go), and the kernel releases it when the
    process dies, so a free lock means the node has left, however it ended."""
    try:
        fd = os.open(path / "run" / "node.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # held for an instant, never waited on
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock
    return False


def status(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """This node's own state."""
    data = control_client(home).call("status")
    if as_json:
        _print_json(data)
    else:
        out.print(status_table(data))
        out.print(_membership_line(data))


def _membership_line(data: dict[str, Any]) -> Text:
    membership = data.get("membership")
    if membership == "revoked":
        return Text((data.get("revocation") or {}).get("message", ""), style="bold red")
    if membership == "alone":
        return Text("In a circle of its own: pair it with another device to share.")
    others = int(data.get("circle_members", 1)) - 1
    return Text(f"Member of circle {data.get('circle_id', '')[:4]}… with {others} other(s).")


def devices(
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
    watch: bool = typer.Option(False, "--watch", "-w", help="Print joins and leaves as they come."),
) -> None:
    """The devices this node knows: online or not, what they are, when last seen."""
    client = control_client(home)
    if watch:
        for event in client.stream("watch"):
            if as_json:
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
            else:
                d = event["device"]
                out.print(f"{event['kind']:8} {d['name']} ({d['type']}, {d['device_id'][:10]})")
        return
    records = client.call("devices")
    if as_json:
        _print_json(records)
    else:
        from accord.cli.trust_cmds import removed_message

        removed = removed_message(client)
        if removed:
            out.print(Text(removed + " (no device below is a member with it)", style="bold red"))
        out.print(devices_table(records))


def profiles(as_json: bool = JsonOpt) -> None:
    """List the built-in device profiles."""
    from accord.profile import builtin_names, load_builtin, to_dict

    names = builtin_names()
    if as_json:
        _print_json({n: to_dict(load_builtin(n)) for n in names})
        return
    for n in names:
        p = load_builtin(n)
        out.print(
            f"[bold]{n:14}[/] {p.type:13} {p.vendor} {p.model} ({p.security_level}): {p.summary()}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    for fn in (init, up, down, status, devices, profiles, call):
        app.command()(fn)


def call(
    device: str = typer.Argument(..., help="A circle member: name, id or id prefix."),
    target: str = typer.Argument(..., help="SERVICE.METHOD, e.g. device.info"),
    args: str = typer.Argument("null", help="Arguments as JSON (default: none)."),
    home: Path | None = HomeOpt,
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds before the call gives up."),
    stream: bool = typer.Option(
        False, "--stream", help="The method is a stream: print each item as a JSON line."
    ),
    as_json: bool = typer.Option(False, "--json", help="Compact JSON on one line."),
) -> None:
    """Call a service method on another device of the circle; prints the JSON result.

    Bytes in results are base64. Examples: accord call tv display.current;
    accord call fridge thermostat.set '{"cabinet": "fridge", "celsius": 3}'"""
    from accord.errors import AccordError

    service, dot, method = target.partition(".")
    if not dot or not service or not method:
        raise AccordError(f"{target!r} is not SERVICE.METHOD (e.g. device.info)")
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise AccordError(f"arguments are not valid JSON: {exc}") from None
    from accord.cli.trust_cmds import explain_removal

    client = control_client(home, timeout + 5)
    try:
        if stream:
            for item in client.stream(
                "stream", device=device, target=target, args=parsed, timeout=timeout
            ):
                sys.stdout.write(json.dumps(item) + "\n")
                sys.stdout.flush()
            return
        result = client.call("call", device=device, target=target, args=parsed, timeout=timeout)
    except AccordError as exc:
        explain_removal(client, exc)  # the call failed because this device was removed?
        raise
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_json(result)
