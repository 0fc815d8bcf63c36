"""The example apps in a real household of node processes, driven by the CLI: notes
moves from the Nokia X60 to the tablet with its text and cursor, fridge-guard
alerts when the refrigerator's door stays open, and a keep-alive app whose device
is SIGKILLed comes back on another member."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from accord.apps.messages import Checkpoint
from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME
from accord.errors import RemoteError
from accord.sim.household import Household, SimDevice
from tests.helpers import (
    NoAnswer,
    accord,
    accord_json,
    device,
    running_household,
    wait_for,
    wait_sees_all,
)

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(
        ["nokia-x60", "tablet", "midea-fridge", "tv"], "acc-app-", shared=shared_processes
    )


@pytest.fixture
def house(_household: Household) -> Iterator[Household]:
    """The module's household, whole (a device an earlier test killed runs again) and
    running no apps; whatever apps a test started are stopped after it."""
    _restore(_household)
    yield _household
    _restore(_household)


def _restore(house: Household) -> None:
    for dev in house.devices:
        if not dev.running:
            house.restart(dev)
    everyone = {d.device_id for d in house.devices}
    for dev in house.devices:
        wait_sees_all(dev.home, everyone, timeout=15)
    phone = device(house, "nokia-x60")
    for app_id in sorted({r["app_id"] for r in _ps(phone)}):
        stopped = accord("app", "stop", app_id, "--home", str(phone.home))
        assert stopped.returncode == 0, stopped.stderr
    assert _ps(phone) == []


def _ps(dev: SimDevice, app_id: str | None = None) -> list[dict[str, Any]]:
    """The apps running across the circle, as ``dev`` sees them."""
    proc = accord("ps", "--json", "--home", str(dev.home))
    if proc.returncode != 0:
        raise NoAnswer(f"accord ps on {dev.name} failed: {proc.stderr}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)["running"]
    return [r for r in rows if app_id is None or r["app_id"] == app_id]


def _apps_store(app_id: str) -> str:
    """The store an example app checkpoints into: ``accord.apps`` for S1 state,
    ``accord.apps.sN`` for state labelled SN."""
    manifest = tomllib.loads((EXAMPLES / app_id / "accord-app.toml").read_text())
    label = str(manifest.get("state_label", "S1"))
    return "accord.apps" if label == "S1" else f"accord.apps.{label.lower()}"


def _saved(dev: SimDevice, app_id: str) -> tuple[str, bytes] | None:
    """(host, saved state) of ``app_id``'s checkpoint as ``dev`` holds it in the apps
    store of its label; None until the checkpoint and all its chunks are there."""
    client = ControlClient(dev.home / "run" / SOCKET_NAME, timeout=10.0)
    store = _apps_store(app_id)
    try:
        got = client.call("kv_get", store=store, key=f"ckpt/{app_id}")
    except RemoteError as exc:
        if exc.remote_type == "UnknownStore":
            return None  # nothing of that label has reached this device yet
        raise
    if not got["found"]:
        return None
    ckpt = msgspec.msgpack.decode(base64.b64decode(got["value_b64"]), type=Checkpoint)
    prefix = f"blob/{app_id}/{ckpt.state_blob}/"
    chunks = client.call("kv_ls", store=store, prefix=prefix, values=True)["entries"]
    if len(chunks) != ckpt.state_chunks:
        return None
    return ckpt.host, b"".join(base64.b64decode(c["value_b64"]) for c in chunks)


def _saved_text(dev: SimDevice, host: SimDevice) -> str | None:
    """The text of the notes checkpoint ``dev`` holds, if ``host`` made it with a save."""
    saved = _saved(dev, "notes")
    if saved is None or saved[0] != host.device_id or not saved[1]:
        return None  # not there yet, from another host, or the empty one of the start
    text: str = msgspec.msgpack.decode(saved[1])["text"]
    return text


def _install(house: Household, app: str) -> None:
    phone = device(house, "nokia-x60")
    installed = accord_json("app", "install", str(EXAMPLES / app), "--on", "all",
                            "--home", str(phone.home))  # fmt: skip
    assert installed["failed"] == [], installed


def test_notes_moves_from_the_phone_to_the_tablet(house: Household) -> None:
    phone, tablet = device(house, "nokia-x60"), device(house, "tablet")
    ph = ("--home", str(phone.home))
    proc = accord("app", "install", str(EXAMPLES / "notes"), "--on", "all", "--json", *ph)
    assert proc.returncode == 0, proc.stderr  # everywhere it can run
    installed = json.loads(proc.stdout)
    assert installed["devices"][tablet.name]["ok"] is True
    [skipped] = installed["skipped"]  # the fridge has no display
    assert skipped["device"] == device(house, "midea-fridge").name
    assert "lacks display" in skipped["reason"]
    started = accord_json("app", "run", "notes", "--on", phone.name,
                          "-p", "text=Hello world", "-p", "cursor=5", *ph)  # fmt: skip
    assert started["device"] == phone.name
    typed = accord("app", "send", "notes", '{"op": "type", "text": ","}', *ph)
    assert json.loads(typed.stdout) == {"text": "Hello, world", "cursor": 6}
    moved = accord_json("app", "move", "notes", "--to", tablet.name, *ph)
    assert (moved["from"], moved["to"]) == (phone.name, tablet.name)
    rows = _ps(phone, "notes")
    assert [r["device"] for r in rows] == [tablet.name]
    assert rows[0]["status"] == {"text": "Hello, world", "cursor": 6}
    refused = accord("app", "move", "notes", "--to", device(house, "midea-fridge").name, *ph)
    assert refused.returncode == 1
    assert "lacks display" in refused.stderr
    assert [r["device"] for r in _ps(phone, "notes")] == [tablet.name]  # still there


def test_a_killed_devices_keep_alive_app_comes_back_elsewhere(house: Household) -> None:
    phone, tablet, tv = (device(house, p) for p in ("nokia-x60", "tablet", "tv"))
    _install(house, "notes")
    accord_json("app", "run", "notes", "--on", tablet.name, "-p", "text=Hello, world",
                "--home", str(phone.home))  # fmt: skip
    assert [r["device"] for r in _ps(phone, "notes")] == [tablet.name]
    # The latest state must be with whichever member takes over (the phone or the TV:
    # the fridge has no display), saved by the app, not the empty checkpoint of its start.
    for dev in (phone, tv):
        wait_for(partial(_saved_text, dev, tablet), 15, f"the tablet's checkpoint on {dev.name}")
        assert _saved_text(dev, tablet) == "Hello, world"
    assert tablet.proc is not None
    killed = time.monotonic()
    os.kill(tablet.proc.pid, signal.SIGKILL)
    tablet.proc.wait()
    rows = wait_for(lambda: _ps(phone, "notes"), 15, "notes to come back")
    took = time.monotonic() - killed
    assert len(rows) == 1
    assert rows[0]["device"] in (phone.name, tv.name)
    assert rows[0]["status"]["text"] == "Hello, world"
    assert took < 10, took
    successor = phone if rows[0]["device"] == phone.name else tv
    house.restart(tablet)  # the tablet comes back and does not start a second copy
    wait_sees_all(tablet.home, {d.device_id for d in house.devices}, timeout=15)
    # Once the tablet holds the successor's checkpoint it knows all there is to know.
    wait_for(
        lambda: (_saved(tablet, "notes") or ("", b""))[0] == successor.device_id,
        15,
        "the tablet to catch up with the successor's checkpoint",
    )
    assert [r["device"] for r in _ps(phone, "notes")] == [successor.name]
    assert [r["device"] for r in _ps(tablet, "notes")] == [successor.name]


def test_fridge_guard_alerts_when_the_door_stays_open(house: Household) -> None:
    phone, fridge, tv = (device(house, p) for p in ("nokia-x60", "midea-fridge", "tv"))
    ph = ("--home", str(phone.home))
    accord_json("app", "install", str(EXAMPLES / "fridge-guard"), *ph)
    accord_json("app", "run", "fridge-guard", "--on", phone.name, "-p", "threshold_s=0.5", *ph)
    door = json.dumps({"door": "fridge", "open": True})
    opened = accord("call", fridge.name, "sim.door", door, *ph)
    assert opened.returncode == 0, opened.stderr
    try:

        def alerted() -> dict[str, Any] | None:
            shown = accord_json("call", tv.name, "display.current", *ph)
            return shown if "open for" in shown.get("text", "") else None

        shown = wait_for(alerted, 20, "the alert on the TV", interval=0.2)
        assert "fridge door has been open" in shown["text"]
        sounds = accord_json("call", phone.name, "speaker.history", "--home", str(tv.home))
        assert any(s["kind"] == "tone" for s in sounds)
        status = _ps(phone, "fridge-guard")[0]["status"]
        assert status["alerts"] >= 1
    finally:
        closed = json.dumps({"door": "fridge", "open": False})
        assert accord("call", fridge.name, "sim.door", closed, *ph).returncode == 0
    accord_json("app", "stop", "fridge-guard", *ph)
