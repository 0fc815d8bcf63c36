"""Notifications between real node processes on 127.0.0.1: a notification sent to
the TV is listed there, mirrored to the others once, shown on the TV's display, and
dismissed everywhere from any device; `all` makes no duplicates; filters hold."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import accord_json, device, running_household, wait_for

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses


@pytest.fixture(scope="module")
def house(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(
        ["laptop", "nokia-x60", "tv"], "acc-note-", shared=shared_processes
    )


def _notes(dev: SimDevice) -> dict[str, dict[str, Any]]:
    rows = accord_json("notifications", "--home", str(dev.home))["notifications"]
    return {r["id"]: r for r in rows}


def _holds(dev: SimDevice, note_id: str, *, dismissed: bool = False) -> Callable[[], bool]:
    def check() -> bool:
        note = _notes(dev).get(note_id)
        return note is not None and (note["dismissed"] or not dismissed)

    return check


def _shown(dev: SimDevice) -> str:
    return str(dev.client.call("call", device=dev.name, target="display.current").get("text", ""))


def test_sent_to_the_tv_listed_there_and_dismissed_everywhere(house: Household) -> None:
    laptop, phone, tv = (device(house, p) for p in ("laptop", "nokia-x60", "tv"))
    posted = accord_json(
        "notify", "Living-room TV", "Dinner", "is ready", "--home", str(laptop.home)
    )
    (note_id,) = posted["ids"]
    assert note_id.startswith(tv.device_id + ":")
    on_tv = _notes(tv)[note_id]
    assert (on_tv["on"], on_tv["from"], on_tv["title"]) == ("Living-room TV", "Laptop", "Dinner")
    assert _shown(tv) == "Laptop: Dinner\nis ready"
    for dev in (laptop, phone):
        wait_for(_holds(dev, note_id), 10, f"{dev.name} to mirror it")
    accord_json("notifications", "dismiss", note_id, "--home", str(phone.home))
    for dev in (laptop, phone, tv):
        wait_for(_holds(dev, note_id, dismissed=True), 10, f"{dev.name} to dismiss it")
    assert _shown(tv) == ""  # nothing left to show


def test_all_reaches_each_device_once(house: Household) -> None:
    laptop, phone, tv = (device(house, p) for p in ("laptop", "nokia-x60", "tv"))
    before = {d.name: set(_notes(d)) for d in (laptop, phone, tv)}
    ids = accord_json("notify", "all", "Storm warning", "--home", str(phone.home))["ids"]
    assert len(ids) == 3
    for dev in (laptop, phone, tv):
        new = set(_notes(dev)) - before[dev.name]
        assert len(new) == 1, (dev.name, new)  # its own copy; nobody mirrored theirs


def test_muted_apps_and_do_not_disturb(house: Household) -> None:
    laptop, tv = device(house, "laptop"), device(house, "tv")
    accord_json("settings", "notify_muted_apps=games", "notify_dnd=true", "--home", str(tv.home))
    try:
        shown = _shown(tv)
        accord_json("notify", "Living-room TV", "Quiet please", "--home", str(laptop.home))
        assert _shown(tv) == shown  # do not disturb: listed, not shown
        posted = accord_json(
            "notify", "Laptop", "High score", "--app", "games", "--home", str(laptop.home)
        )
        assert _notes(laptop)[posted["ids"][0]]["app"] == "games"
        accord_json("notify", "Laptop", "Mail", "--app", "mail", "--home", str(laptop.home))
        wait_for(
            lambda: any(n["title"] == "Mail" for n in _notes(tv).values()), 10, "mail mirrored"
        )
        assert all(n["app"] != "games" for n in _notes(tv).values())
    finally:
        accord_json("settings", "notify_muted_apps=", "notify_dnd=false", "--home", str(tv.home))


def test_ring_until_stopped_there_or_from_the_caller(house: Household) -> None:
    laptop, tv = device(house, "laptop"), device(house, "tv")
    ringing = subprocess.Popen(
        [sys.executable, "-m", "accord", "ring", "Living-room TV", "--home", str(laptop.home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _ringing(tv)["ringing"], 10, "the TV to ring")
        assert _ringing(tv)["by"] == laptop.device_id
        # Found: stopped on the TV itself; the caller's command sees it and ends.
        accord_json("ring", "Living-room TV", "--stop", "--home", str(tv.home))
        out, err = ringing.communicate(timeout=20)
    finally:
        if ringing.poll() is None:
            ringing.kill()
            ringing.communicate()
    assert ringing.returncode == 0, err
    assert "stopped there" in out
    # From the caller: --no-wait, then --stop from the laptop.
    assert accord_json("ring", "Living-room TV", "--home", str(laptop.home))["ringing"]
    assert not accord_json("ring", "Living-room TV", "--stop", "--home", str(laptop.home))[
        "ringing"
    ]
    sounds = [s["kind"] for s in _call(tv, "speaker.history")]
    assert sounds[-4:] == ["ring", "ring-stopped", "ring", "ring-stopped"]


def _call(dev: SimDevice, target: str) -> Any:
    return dev.client.call("call", device=dev.name, target=target)


def _ringing(dev: SimDevice) -> dict[str, Any]:
    return _call(dev, "speaker.ringing")  # type: ignore[no-any-return]
