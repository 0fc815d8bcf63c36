"""``accord sim``: a simulated household on this machine."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from accord.cli.options import accord_command
from accord.errors import SimError
from accord.sim import DEFAULT_DEVICES

if TYPE_CHECKING:
    from accord.sim.household import Household, SimDevice

out = Console()


def _table(rows: list[dict[str, Any]], total: int) -> Table:
    """One line per device, as its own node sees the household; fits 80 columns (the
    hardware summary is cut short with an ellipsis there, shown whole when wider)."""
    table = Table(
        title="Household: each row as that device's own node sees it",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    # Only "Has" may give up width (it is the one wrappable column); its cells are cut
    # with an ellipsis rather than wrapped, so every device stays on one line.
    table.add_column("Device", no_wrap=True, overflow="ellipsis", max_width=20)
    for header in ("PID", "Sees", "Seen by", "Circle"):
        table.add_column(header, no_wrap=True)
    table.add_column("Has")
    for r in rows:
        pid = str(r["pid"]) if r["running"] else "[red]stopped[/]"
        sees = "-" if r["sees_online"] is None else f"{r['sees_online']}/{total}"
        ok = r["running"] and r["seen_by"] == r["viewers"]
        seen_by = f"[{'green' if ok else 'yellow'}]{r['seen_by']}/{r['viewers']}[/]"
        members = r.get("circle_members")
        circle = "-" if members is None else f"{members}/{total}"
        has = Text(r["summary"] or "-", no_wrap=True, overflow="ellipsis")
        table.add_row(r["name"], pid, sees, seen_by, circle, has)
    return table


def sim(
    devices: str = typer.Option(
        ",".join(DEFAULT_DEVICES),
        "--devices",
        "-d",
        metavar="PROFILES",
        help="Comma-separated built-in profiles, or a number N: that many devices of "
        "the default profiles in turn.",
    ),
    folder: Path | None = typer.Option(
        None,
        "--dir",
        metavar="DIR",
        help="Keep the homes here (default: a temporary folder, removed after).",
    ),
    duration: float = typer.Option(
        0.0, "--duration", help="Stop by itself after this many seconds (0: until Ctrl-C)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON snapshot when all see each other, then stop."
    ),
    setting: list[str] = typer.Option([], "--set", "-s", help="Setting passed to every node."),
    web: bool = typer.Option(
        False, "--web", help="Also serve the control center (accord web) and print its address."
    ),
    relay: bool = typer.Option(
        False,
        "--relay",
        help="Run an accord relay too, and connect every device only through it "
        "(as devices at different sites would).",
    ),
) -> None:
    """Start a simulated household, one real node process per device, and show it live."""
    profiles = _profiles(devices)
    from accord.profile import builtin_text
    from accord.sim.household import Household

    for p in profiles:
        builtin_text(p)  # unknown names fail here, before anything starts
    with tempfile.TemporaryDirectory(prefix="accord-sim-") as tmp:
        house = Household(profiles, folder or Path(tmp), settings=setting)
        # Ctrl-C and SIGTERM are how a person ends the sim: a flag, checked between
        # steps, so no half-done step is interrupted; then stop everything, exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: house.stopping.set())
        try:
            if relay:
                endpoint = house.start_relay()
                if not as_json:
                    out.print(f"Relay: {endpoint} (every device connects through it)")
            _run(house, len(profiles), duration, as_json, web and not as_json)
        finally:
            house.stop()
    if not as_json:
        out.print("household stopped; no node left running")


def _profiles(devices: str) -> list[str]:
    """The profiles ``--devices`` names: a list, or a count of default ones."""
    if devices.strip().isdigit():
        count = int(devices)
        if not 1 <= count <= 256:  # the member list holds at most 256 devices
            raise SimError("--devices N takes 1 to 256 devices")
        return [DEFAULT_DEVICES[i % len(DEFAULT_DEVICES)] for i in range(count)]
    return [p.strip() for p in devices.split(",") if p.strip()]


def _run(house: Household, total: int, duration: float, as_json: bool, web: bool) -> None:
    console = Console(stderr=True) if as_json else out
    with console.status("starting devices...") as status:

        def progress(dev: SimDevice) -> None:
            status.update(f"started {dev.name}; starting the next...")

        house.start(progress)
    if house.stopping.is_set():
        return
    deadline = time.monotonic() + duration if duration > 0 else None
    if as_json:
        end = time.monotonic() + (duration or 10.0)
        rows = house.snapshot()
        while time.monotonic() < end and not all(_settled(r, total) for r in rows):
            if house.stopping.wait(0.1):
                break
            rows = house.snapshot()
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    server = _start_web(_guide(house)) if web else None
    try:
        if server is not None:
            out.print(f"Control center: {server[1]}", highlight=False, soft_wrap=True)
        # Soft wrap: a long command stays one line, so it copies and pastes whole.
        out.print(_tour(house), highlight=False, markup=False, soft_wrap=True)
        _watch(house, total, deadline)
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(5)
            if server[0].stdout is not None:
                server[0].stdout.close()


WEB_PORT = 7480  # accord web's own default; any free port if it is taken


def _start_web(dev: SimDevice) -> tuple[subprocess.Popen[str], str]:
    """``accord web`` for ``dev``'s node, stopped with the household; its URL."""
    from accord.sim.household import die_with_parent

    for port in (WEB_PORT, 0):
        proc = subprocess.Popen(
            [sys.executable, "-m", "accord", "web", "--home", str(dev.home), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the sim, which stops it
            preexec_fn=die_with_parent(),
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "control center: URL", or nothing if it failed
        if line.startswith("control center:"):
            return proc, line.split()[-1]
        proc.wait()
        proc.stdout.close()
    raise SimError(f"accord web did not start for {dev.name}")


def _guide(house: Household) -> SimDevice:
    """The device the tour's commands and the control center use: the laptop if any."""
    return next((d for d in house.devices if d.profile == "laptop"), house.devices[0])


def _watch(house: Household, total: int, deadline: float | None) -> None:
    events: deque[str] = deque(maxlen=EVENT_LINES)
    rows = house.snapshot()
    with Live(_view(rows, total, events), console=out, refresh_per_second=4) as live:
        while deadline is None or time.monotonic() < deadline:
            if house.stopping.wait(0.5):
                break
            new = house.snapshot()
            events.extend(_changes(rows, new))
            rows = new
            live.update(_view(rows, total, events))
    if not out.is_terminal:
        out.line()  # a terminal's live view ends its last line itself; a pipe's does not


EVENT_LINES = 6


def _tour(house: Household) -> str:
    """Commands worth trying against this household, from its laptop if it has one,
    each runnable as printed from where the sim was started (see ``accord_command``)."""
    by = {d.profile: d for d in house.devices}
    me = _guide(house)
    accord = accord_command()

    def cmd(*args: str, on: SimDevice = me) -> str:
        return f"  {accord} {' '.join(args)} --home {_shown(on.home)}"

    lines = [f"Homes are in {house.folder}. Try, in another terminal:", cmd("devices")]
    phone = by.get("nokia-x60")
    if phone is not None:
        lines.append(cmd("capture", _q(phone.name), "-o photo.jpg"))
        # Continuity: copied on the phone, pasted here; the photo sent on (resumable).
        lines.append(cmd("clip copy", _q(f"Hello from {phone.name}"), on=phone))
        lines.append(cmd("clip paste"))
        lines.append(cmd("send photo.jpg --to", _q(by.get("tablet", phone).name)))
        lines.append(cmd("ring", _q(phone.name)))
    if "tv" in by:
        lines.append(cmd("show", _q(by["tv"].name), _q(f"Hello from {me.name}")))
        lines.append(cmd("notify", _q(by["tv"].name), _q("Dinner is ready")))
    if "midea-fridge" in by:
        fridge = _q(by["midea-fridge"].name)
        lines.append(cmd("sensors", fridge, "--watch"))
        lines.append(cmd("setpoint", fridge, "freezer -20"))
    lines.append(cmd("kv put notes todo", _q("buy milk")))
    lines.append(cmd("kv watch notes"))
    examples = Path(__file__).resolve().parents[3] / "examples"
    if "nokia-x60" in by and examples.is_dir():
        lines.append(cmd("app install", _shown(examples / "notes"), "--on all"))
        lines.append(cmd("app run notes --on", _q(by["nokia-x60"].name), '-p text="Hello"'))
        if "tablet" in by:
            lines.append(cmd("app move notes --to", _q(by["tablet"].name)))
        lines.append(cmd("ps"))
    lines.append("Ctrl-C stops the household.")
    return "\n".join(lines)


def _q(text: str) -> str:
    """``text`` as one shell word, in double quotes where it needs quoting at all."""
    if shlex.quote(text) == text:
        return text
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def _shown(path: Path) -> str:
    """``path`` for the shell: relative when under the working folder, quoted if need be."""
    try:
        shown = str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        shown = str(path.absolute())
    return shlex.quote(shown)


def _settled(row: dict[str, Any], total: int) -> bool:
    """Seen by every other node, knowing the whole circle (the sim pairs them all; a
    member learns of the last joiner from the member list the host publishes just
    after the pairing), and showing its details."""
    return (
        row["seen_by"] == total - 1 and row.get("circle_members") == total and bool(row["summary"])
    )


def _changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """What changed between two snapshots, as lines for the event log."""
    now = time.strftime("%H:%M:%S")
    lines = []
    for a, b in zip(old, new, strict=True):
        if a["running"] and not b["running"]:
            lines.append(f"{now}  {b['name']}: process exited")
        elif not a["running"] and b["running"]:
            lines.append(f"{now}  {b['name']}: process started")
        if b["running"] and (a["seen_by"], a["viewers"]) != (b["seen_by"], b["viewers"]):
            lines.append(f"{now}  {b['name']}: seen online by {b['seen_by']}/{b['viewers']}")
    return lines


def _view(rows: list[dict[str, Any]], total: int, events: deque[str]) -> Group:
    log = "\n".join(events) or "(no changes yet: kill or stop a node process to see it)"
    return Group(_table(rows, total), Panel(log, title="events", title_align="left"))


def register(app: typer.Typer) -> None:
    app.command()(sim)
