"""The example apps in a real household of node processes, driven by the CLI: notes
moves from the Nokia X60 to the tablet with its text and cursor, fridge-guard
alerts when the refrigerator's door stays open, and a keep-alive app whose device
is SIGKILLed comes back on another member."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import accord, accord_json, device, running_household, wait_for, wait_sees_all

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def house() -> Iterator[Household]:
    yield from running_household(["nokia-x60", "tablet", "midea-fridge", "tv"], "acc-app-")


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_threads() -> None:
    return  # the household outlives each test on purpose: it is shared by the module


def _ps(dev: SimDevice, app_id: str) -> list[dict[str, Any]]:
    proc = accord("ps", "--json", "--home", str(dev.home))
    if proc.returncode != 0:
        return []
    return [r for r in json.loads(proc.stdout)["running"] if r["app_id"] == app_id]


def test_notes_moves_from_the_phone_to_the_tablet(house: Household) -> None:
    phone, tablet = device(house, "nokia-x60"), device(house, "tablet")
    ph = ("--home", str(phone.home))
    proc = accord("app", "install", str(EXAMPLES / "notes"), "--on", "all", "--json", *ph)
    assert proc.returncode == 1  # not everywhere: the fridge has no display
    installed = json.loads(proc.stdout)
    assert installed["devices"][tablet.name]["ok"] is True
    assert installed["devices"][device(house, "midea-fridge").name]["ok"] is False
    assert "lacks display" in installed["devices"][device(house, "midea-fridge").name]["error"]
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
    phone, tablet = device(house, "nokia-x60"), device(house, "tablet")
    if not _ps(phone, "notes"):  # standalone run: put notes on the tablet first
        accord("app", "install", str(EXAMPLES / "notes"), "--on", "all", "--home", str(phone.home))
        accord_json("app", "run", "notes", "--on", tablet.name, "-p", "text=Hello, world",
                    "--home", str(phone.home))  # fmt: skip
    assert [r["device"] for r in _ps(phone, "notes")] == [tablet.name]
    time.sleep(1.5)  # a checkpoint interval: the latest state is with every member
    assert tablet.proc is not None
    killed = time.monotonic()
    os.kill(tablet.proc.pid, signal.SIGKILL)
    tablet.proc.wait()
    rows = wait_for(lambda: _ps(phone, "notes"), 15, "notes to come back")
    took = time.monotonic() - killed
    assert len(rows) == 1
    assert rows[0]["device"] in (phone.name, device(house, "tv").name)
    assert rows[0]["status"]["text"] == "Hello, world"
    assert took < 10, took
    house.restart(tablet)  # the tablet comes back and does not start a second copy
    wait_sees_all(tablet.home, {d.device_id for d in house.devices}, timeout=15)
    time.sleep(1.0)
    assert len(_ps(phone, "notes")) == 1


def test_fridge_guard_alerts_when_the_door_stays_open(house: Household) -> None:
    phone, fridge, tv = (device(house, p) for p in ("nokia-x60", "midea-fridge", "tv"))
    ph = ("--home", str(phone.home))
    accord_json("app", "install", str(EXAMPLES / "fridge-guard"), *ph)
    accord_json("app", "run", "fridge-guard", "--on", phone.name, "-p", "threshold_s=0.5", *ph)
    door = json.dumps({"door": "fridge", "open": True})
    opened = accord("call", fridge.name, "sim.door", door, *ph)
    assert opened.returncode == 0, opened.stderr

    def alerted() -> dict[str, Any] | None:
        shown = accord_json("call", tv.name, "display.current", *ph)
        return shown if "open for" in shown.get("text", "") else None

    shown = wait_for(alerted, 20, "the alert on the TV", interval=0.2)
    assert "fridge door has been open" in shown["text"]
    sounds = accord_json("call", phone.name, "speaker.history", "--home", str(tv.home))
    assert any(s["kind"] == "tone" for s in sounds)
    status = _ps(phone, "fridge-guard")[0]["status"]
    assert status["alerts"] >= 1
    accord("call", fridge.name, "sim.door", json.dumps({"door": "fridge", "open": False}), *ph)
    accord_json("app", "stop", "fridge-guard", *ph)
