"""Issue 13 §2 and §4 in real `accord up` processes, driven by the CLI as a person
would: leaving is reversible (the TV leaves and pairs again with a new PIN, keeping
its identity), and writes outlive their writer's membership (a tablet that pairs
after the fridge was revoked gets what the fridge wrote as a member). What is
asserted is what `accord ... --json` shows on the devices."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from accord.sim.household import Household, SimDevice, free_port
from tests.helpers import (
    accord,
    accord_json,
    device,
    running_household,
    wait_for,
    wait_seen,
)

WAIT = 15.0


def _home(dev: SimDevice) -> tuple[str, str]:
    return ("--home", str(dev.home))


def trust_list(dev: SimDevice) -> dict[str, Any]:
    listed: dict[str, Any] = accord_json("trust", "list", *_home(dev))
    return listed


def member_ids(dev: SimDevice) -> set[str]:
    return {m["device_id"] for m in trust_list(dev)["members"]}


def text(dev: SimDevice, store: str, key: str) -> str | None:
    """The value ``dev`` holds for ``key`` in ``store``, as `accord kv get` shows it."""
    proc = accord("kv", "get", store, key, "--json", *_home(dev))
    if proc.returncode != 0:
        return None
    got = json.loads(proc.stdout)
    return str(got["text"]) if got["found"] else None


def put(dev: SimDevice, store: str, key: str, value: str) -> None:
    proc = accord("kv", "put", store, key, value, *_home(dev))
    assert proc.returncode == 0, proc.stderr


def pair_by_pin(host: SimDevice, joiner: SimDevice) -> None:
    """`accord pair open` on ``host``, `accord pair join` on ``joiner`` with its PIN."""
    wait_seen(joiner.home, host.device_id, WAIT, f"{joiner.name} to see {host.name}")
    opener = subprocess.Popen(
        [sys.executable, "-m", "accord", "pair", "open", "--json", "--timeout", "60",
         *_home(host)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert opener.stdout is not None
        opened = json.loads(opener.stdout.readline())
        assert opened["event"] == "open", opened
        joined = accord("pair", "join", host.name, "--pin", opened["pin"], "--json",
                        *_home(joiner))  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        paired = json.loads(opener.stdout.readline())
        assert paired["event"] == "paired", paired
        assert paired["code"] == json.loads(joined.stdout)["code"]
        assert opener.wait(10) == 0
    finally:
        if opener.poll() is None:
            opener.kill()
            opener.wait()
        if opener.stdout is not None:
            opener.stdout.close()


@pytest.fixture
def phone_and_tv() -> Iterator[Household]:
    """A household of its own: the TV leaves the circle and comes back."""
    yield from running_household(["nokia-x60", "tv"], "acc-mbr-")


@pytest.fixture
def phone_and_fridge() -> Iterator[Household]:
    """A household of its own: the fridge is revoked and a tablet joins later."""
    yield from running_household(["nokia-x60", "midea-fridge"], "acc-mbw-")


def test_the_tv_leaves_and_pairs_again_with_its_identity(phone_and_tv: Household) -> None:
    phone, tv = device(phone_and_tv, "nokia-x60"), device(phone_and_tv, "tv")
    both = {phone.device_id, tv.device_id}
    assert member_ids(phone) == both
    assert member_ids(tv) == both

    left = accord("trust", "leave", "--yes", *_home(tv))
    assert left.returncode == 0, left.stderr
    assert "Left the circle" in left.stdout
    assert member_ids(tv) == {tv.device_id}  # a circle of its own
    wait_for(lambda: member_ids(phone) == {phone.device_id}, WAIT, "the phone to see it leave")

    pair_by_pin(phone, tv)

    # Both list the TV as a member again, under the same device id as before.
    for dev in (phone, tv):
        listed = trust_list(dev)
        assert {m["device_id"] for m in listed["members"]} == both, (dev.name, listed)
        record = next(m for m in listed["members"] if m["device_id"] == tv.device_id)
        assert record["name"] == tv.name
        assert tv.device_id not in listed.get("revoked", [])
    assert accord_json("status", *_home(tv))["membership"] == "member"

    # And what it writes reaches the phone.
    put(tv, "notes", "back", "the TV is back")
    wait_for(lambda: text(phone, "notes", "back") == "the TV is back", WAIT, "the TV's write")


def test_a_tablet_paired_after_the_fridge_was_revoked_gets_its_writes(
    phone_and_fridge: Household,
) -> None:
    house = phone_and_fridge
    phone, fridge = device(house, "nokia-x60"), device(house, "midea-fridge")
    put(fridge, "notes", "door", "closed by the fridge")
    wait_for(lambda: text(phone, "notes", "door") == "closed by the fridge", WAIT, "the sync")

    revoked = accord("trust", "revoke", fridge.name, "--json", *_home(phone))
    assert revoked.returncode == 0, revoked.stderr
    assert fridge.device_id in trust_list(phone)["revoked"]
    assert member_ids(phone) == {phone.device_id}

    # A tablet that was never in the circle starts only now (stopped with the rest).
    tablet = SimDevice("tablet", house.folder / "tablet", free_port())
    house.devices.append(tablet)
    house.prepare()
    house.restart(tablet)
    assert text(tablet, "notes", "door") is None
    pair_by_pin(phone, tablet)
    assert member_ids(tablet) == {phone.device_id, tablet.device_id}
    assert fridge.device_id in trust_list(tablet)["revoked"]

    wait_for(
        lambda: text(tablet, "notes", "door") == "closed by the fridge",
        WAIT,
        "the revoked fridge's earlier write to reach the tablet",
    )
    assert text(phone, "notes", "door") == "closed by the fridge"
