"""A revoked device learns it and says so (issue 13 §1), in real `accord up` processes,
asserting what a person sees on the fridge after `accord trust revoke` on the phone.

Before: the fridge still listed the whole circle at key epoch 1, showed everyone as
members and online, took `kv put` that nobody received, reported the phone as gone
when it called it, and logged nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from accord.sim.household import Household, SimDevice
from tests.adversary import stop
from tests.helpers import accord, accord_json, device, running_household, wait_for


@pytest.fixture
def house() -> Iterator[Household]:
    yield from running_household(["nokia-x60", "tablet", "midea-fridge"], "acc-rv-")


def _home(dev: SimDevice) -> str:
    return str(dev.home)


def _status(dev: SimDevice) -> dict[str, object]:
    status: dict[str, object] = accord_json("status", "--home", _home(dev))
    return status


def _text(dev: SimDevice, store: str, key: str) -> str | None:
    proc = accord("kv", "get", store, key, "--home", _home(dev), "--json")
    if proc.returncode != 0:
        return None
    got = json.loads(proc.stdout)
    return str(got["text"]) if got["found"] else None


def _removed(dev: SimDevice) -> bool:
    return _status(dev)["membership"] == "revoked"


def _assert_says_removed(fridge: SimDevice, phone: SimDevice, tablet: SimDevice) -> str:
    """What the fridge shows once it knows; returns the message."""
    status = _status(fridge)
    assert status["membership"] == "revoked"
    assert status["circle_members"] == 0
    revocation = status["revocation"]
    assert isinstance(revocation, dict)
    assert revocation["by"] == phone.device_id
    assert revocation["by_name"] == phone.name
    message = str(revocation["message"])
    assert message.startswith(f"this device was removed from circle {revocation['circle_id'][:4]}")
    assert f"by {phone.name} at " in message
    assert message.endswith("; pair again to rejoin")

    shown = accord("status", "--home", _home(fridge))
    assert shown.returncode == 0, shown.stderr
    assert message in shown.stdout

    listed = accord_json("trust", "list", "--home", _home(fridge))
    assert listed["membership"] == "revoked"
    assert listed["members"] == []
    shown = accord("trust", "list", "--home", _home(fridge))
    assert shown.returncode == 0, shown.stderr
    assert message in shown.stdout
    assert tablet.name not in shown.stdout  # no table of members it no longer has

    records = accord_json("devices", "--home", _home(fridge))
    assert [r["standing"] for r in records if r["standing"] == "member"] == []
    shown = accord("devices", "--home", _home(fridge))
    assert message in shown.stdout

    called = accord("call", phone.name, "device.info", "--home", _home(fridge), "--timeout", "3")
    assert called.returncode != 0
    assert message in " ".join(called.stderr.split())
    return message


def test_a_fridge_revoked_while_online_learns_it_and_says_so(house: Household) -> None:
    phone, tablet, fridge = (device(house, p) for p in ("nokia-x60", "tablet", "midea-fridge"))
    assert _status(fridge)["membership"] == "member"
    assert _status(phone)["membership"] == "member"
    put = accord("kv", "put", "notes", "hello", "from the phone", "--home", _home(phone))
    assert put.returncode == 0, put.stderr
    wait_for(lambda: _text(fridge, "notes", "hello") == "from the phone", 10, "the fridge sync")

    proc = accord("trust", "revoke", fridge.name, "--home", _home(phone), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["notified"] is True
    assert tablet.device_id in result["rekeyed"]

    message = _assert_says_removed(fridge, phone, tablet)

    # A write stays on the fridge, and says so; nobody receives it.
    put = accord("kv", "put", "notes", "fridge-note", "from a revoked fridge", "--home",
                 _home(fridge))  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert "on this device only" in put.stdout
    assert message in " ".join(put.stderr.split())
    stores = accord_json("kv", "stores", "--home", _home(fridge))["stores"]
    assert [s["shared_with"] for s in stores if s["name"] == "notes"] == [[]]
    time.sleep(1.0)  # what a sync would take, many times over
    assert _text(phone, "notes", "fridge-note") is None
    assert _text(tablet, "notes", "fridge-note") is None

    # Its log says it, once.
    log = (fridge.home / "node.log").read_text()
    assert log.count("removed from circle") == 1, log

    # The others carry on without it.
    assert fridge.device_id in accord_json("trust", "list", "--home", _home(phone))["revoked"]
    assert _status(phone)["membership"] == "member"
    info = accord("call", tablet.name, "device.info", "--home", _home(phone), "--json")
    assert info.returncode == 0, info.stderr


def test_a_fridge_revoked_while_off_learns_it_when_it_comes_back(house: Household) -> None:
    phone, tablet, fridge = (device(house, p) for p in ("nokia-x60", "tablet", "midea-fridge"))
    stop(fridge)
    proc = accord("trust", "revoke", fridge.name, "--home", _home(phone))
    assert proc.returncode == 0, proc.stderr
    assert "when it next reaches a member" in proc.stdout

    house.restart(fridge)
    wait_for(lambda: _removed(fridge), 15, "the fridge to learn it was revoked")
    _assert_says_removed(fridge, phone, tablet)

    # It stays removed across a restart, and stays quiet about it in the circle.
    stop(fridge)
    house.restart(fridge)
    assert _removed(fridge)
    assert tablet.device_id not in {
        r["device_id"]
        for r in accord_json("devices", "--home", _home(fridge))
        if r["standing"] == "member"
    }
