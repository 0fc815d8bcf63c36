"""Issue 13 §3 in real node processes, driven by the CLI as a person would: the TV
runs notes and fridge-guard for the phone; `accord trust leave` on the TV warns,
asks, and hands both apps to other members before it leaves; `accord trust revoke`
on the phone brings the TV's apps back on other members at once. What is asserted
is what `accord ps` shows on the phone."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import (
    NoAnswer,
    accord,
    accord_json,
    device,
    online_ids,
    running_household,
    wait_for,
)
from tests.test_apps_processes import _saved_text

EXAMPLES = Path(__file__).parent.parent / "examples"
PROFILES = ["nokia-x60", "tablet", "midea-fridge", "tv"]


@pytest.fixture
def house() -> Iterator[Household]:
    """A household of its own: after these tests the TV is no longer in the circle."""
    yield from running_household(PROFILES, "acc-leave-")


def ps(dev: SimDevice) -> dict[str, tuple[str, dict[str, Any]]]:
    """app id -> (device, status) of the apps running across the circle, as ``dev``'s
    `accord ps --json` shows them (an app listed twice fails)."""
    proc = accord("ps", "--json", "--home", str(dev.home))
    if proc.returncode != 0:
        raise NoAnswer(f"accord ps on {dev.name} failed: {proc.stderr}")
    rows = json.loads(proc.stdout)["running"]
    shown = {r["app_id"]: (r["device"], r.get("status", {})) for r in rows}
    assert len(shown) == len(rows), rows  # one copy of each app, circle-wide
    return shown


def runs_here(dev: SimDevice) -> set[str]:
    """The apps ``dev`` itself runs, as its node says."""
    rows = dev.client.call("ps")["running"]
    return {r["app_id"] for r in rows if r["device_id"] == dev.device_id}


def members(dev: SimDevice) -> set[str]:
    return {m["name"] for m in accord_json("trust", "list", "--home", str(dev.home))["members"]}


def notes_saved(dev: SimDevice, host: SimDevice, text: str) -> bool:
    """Whether ``dev`` holds ``host``'s checkpoint of notes with ``text``."""
    return _saved_text(dev, host) == text


def start_both_on_the_tv(house: Household) -> tuple[SimDevice, SimDevice]:
    """From the phone: install notes and fridge-guard everywhere, run both on the TV
    (as after a failover onto it), type into notes."""
    phone, tv = device(house, "nokia-x60"), device(house, "tv")
    ph = ("--home", str(phone.home))
    for app in ("notes", "fridge-guard"):
        installed = accord_json("app", "install", str(EXAMPLES / app), "--on", "all", *ph)
        assert installed["failed"] == [], installed
    accord_json("app", "run", "notes", "--on", tv.name, "-p", "text=Hello world",
                "-p", "cursor=5", *ph)  # fmt: skip
    accord_json("app", "run", "fridge-guard", "--on", tv.name, "-p", "threshold_s=42", *ph)
    typed = accord("app", "send", "notes", '{"op": "type", "text": ","}', *ph)
    assert json.loads(typed.stdout) == {"text": "Hello, world", "cursor": 6}
    shown = ps(phone)
    assert {a: d for a, (d, _) in shown.items()} == {"notes": tv.name, "fridge-guard": tv.name}
    return phone, tv


def leave_on_a_terminal(dev: SimDevice, answer: str) -> tuple[int, str]:
    """`accord trust leave` on ``dev`` with a terminal for stdin, answering ``answer``
    to its question; (exit code, everything it printed)."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "accord", "trust", "leave", "--home", str(dev.home)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        os.write(controller, answer.encode() + b"\n")
        output, _ = proc.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    return proc.returncode, output.decode()


def memo(folder: Path) -> Path:
    """notes as an app that can neither move nor be restarted elsewhere."""
    app = folder / "memo"
    shutil.copytree(EXAMPLES / "notes", app)
    manifest = (app / "accord-app.toml").read_text()
    for old, new in (('id = "notes"', 'id = "memo"'), ("continuable = true", "continuable = false"),
                     ("keep_alive = true", "keep_alive = false")):  # fmt: skip
        assert old in manifest
        manifest = manifest.replace(old, new)
    (app / "accord-app.toml").write_text(manifest)
    return app


def test_the_tv_leaves_after_handing_notes_and_fridge_guard_to_members(
    house: Household, short_tmp: Path
) -> None:
    phone, tv = start_both_on_the_tv(house)
    tablet, fridge = device(house, "tablet"), device(house, "midea-fridge")
    everyone = {d.name for d in house.devices}
    ph = ("--home", str(phone.home))

    # An app that cannot move keeps the TV in, and the command says which and why.
    accord_json("app", "install", str(memo(short_tmp)), "--on", tv.name, *ph)
    accord_json("app", "run", "memo", "--on", tv.name, *ph)
    blocked = accord("trust", "leave", "--yes", "--home", str(tv.home))
    assert blocked.returncode == 1
    assert "Not leaving: memo cannot move" in blocked.stderr
    assert "--force" in blocked.stderr
    assert "memo: cannot move: it is not continuable" in " ".join(blocked.stdout.split())
    assert members(phone) == everyone
    accord_json("app", "stop", "memo", *ph)

    # From a script without --yes: it says what it would do, and does not leave.
    refused = accord("trust", "leave", "--home", str(tv.home))
    assert refused.returncode == 1
    assert "confirm with --yes" in refused.stderr
    said = " ".join(refused.stdout.split())
    assert f"{tv.name} will leave circle" in said
    assert f"notes: moves to {tablet.name}" in said  # the larger display
    assert f"fridge-guard: moves to {fridge.name}" in said  # on mains power
    assert "pair again" in said
    assert members(phone) == everyone

    # Asked on a terminal, "n" keeps it in the circle with its apps.
    code, output = leave_on_a_terminal(tv, "n")
    assert code == 1, output
    assert "Leave the circle?" in output
    assert "Not leaving" in output
    assert members(phone) == everyone
    assert {d for d, _ in ps(phone).values()} == {tv.name}

    # "y": the apps move first, with their state, then the TV leaves.
    code, output = leave_on_a_terminal(tv, "y")
    assert code == 0, output
    assert f"notes: moved to {tablet.name}" in output
    assert "Left the circle" in output
    shown = ps(phone)  # at once: the moves were done before the TV left
    assert shown["notes"] == (tablet.name, {"text": "Hello, world", "cursor": 6})
    assert shown["fridge-guard"][0] == fridge.name
    assert shown["fridge-guard"][1]["threshold_s"] == 42
    assert runs_here(tv) == set()  # the TV, alone now, runs nothing
    wait_for(lambda: tv.name not in members(phone), 10, "the phone to see the TV leave")
    # Seeing the TV go, nobody restarts a second copy from its old checkpoints.
    time.sleep(2)
    assert {a: d for a, (d, _) in ps(phone).items()} == {
        "notes": tablet.name,
        "fridge-guard": fridge.name,
    }
    assert {a: d for a, (d, _) in ps(tablet).items()} == {
        "notes": tablet.name,
        "fridge-guard": fridge.name,
    }


def test_the_apps_of_a_revoked_tv_come_back_on_members_at_once(house: Household) -> None:
    phone, tv = start_both_on_the_tv(house)
    tablet, fridge = device(house, "tablet"), device(house, "midea-fridge")
    # Whoever takes notes over (the tablet: the larger display) holds the TV's latest save.
    wait_for(partial(notes_saved, tablet, tv, "Hello, world"), 15, "the TV's save on the tablet")
    revoked = time.monotonic()
    proc = accord("trust", "revoke", tv.name, "--home", str(phone.home))
    assert proc.returncode == 0, proc.stderr

    def back() -> dict[str, tuple[str, dict[str, Any]]] | None:
        shown = ps(phone)
        return shown if set(shown) == {"notes", "fridge-guard"} else None

    shown = wait_for(back, 15, "notes and fridge-guard to run on members again")
    took = time.monotonic() - revoked
    assert shown["notes"] == (tablet.name, {"text": "Hello, world", "cursor": 6})
    assert shown["fridge-guard"][0] == fridge.name
    assert shown["fridge-guard"][1]["threshold_s"] == 42
    assert took < 6, took
    assert tv.running  # the TV never went offline: the revocation brought them back
    assert tv.device_id in online_ids(phone.home)
    human = accord("ps", "--home", str(phone.home))
    assert "notes" in human.stdout
    assert tablet.name in human.stdout
    assert tv.name not in human.stdout

    status = accord_json("status", "--home", str(tv.home))
    if "membership" in status:  # once the revoked device learns it (issue 13 §1)
        wait_for(
            lambda: accord_json("status", "--home", str(tv.home))["membership"] == "revoked",
            15,
            "the TV to learn it was revoked",
        )
        wait_for(lambda: runs_here(tv) == set(), 10, "the TV to stop the circle's apps")
    assert {a: d for a, (d, _) in ps(phone).items()} == {
        "notes": tablet.name,
        "fridge-guard": fridge.name,
    }
