"""Store identity (issue 13 §5) between real node processes, as a user sees it with
`accord kv`: the SL1 fridge cannot create its own `health` beside the phone's S2 one,
and is told why; a store it created before the circle's declaration reached it is
refused writes as soon as it does, and every device says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import accord, device, running_household, wait_for, wait_sees_all

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

SETTINGS = ["anti_entropy_ms=1000"]
NOT_HELD = "store 'health' exists in this circle with label S2; this device (SL1) may not hold it"


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(
        ["nokia-x60", "tablet", "midea-fridge"], "acc-id-", settings=SETTINGS,
        shared=shared_processes,
    )  # fmt: skip


@pytest.fixture
def house(_household: Household) -> Household:
    """The module's household, whole: a device an earlier test stopped runs again."""
    for dev in _household.devices:
        if not dev.running:
            _household.restart(dev)
    _everyone_sees_everyone(_household)
    return _household


def _everyone_sees_everyone(house: Household) -> None:
    everyone = {d.device_id for d in house.devices}
    for dev in house.devices:
        wait_sees_all(dev.home, everyone, timeout=15)


def kv(dev: SimDevice, *args: str) -> Any:
    return accord("kv", *args, "--home", str(dev.home))


def kv_json(dev: SimDevice, *args: str) -> Any:
    proc = kv(dev, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_line(text: str) -> str:
    """Rich wraps long lines: read what it printed as one line."""
    return " ".join(text.split())


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the tables a command printed."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()
            if line.startswith("│")]  # fmt: skip


def reads(dev: SimDevice, store: str, key: str) -> str | None:
    proc = kv(dev, "get", store, key)
    return proc.stdout if proc.returncode == 0 else None


def down(dev: SimDevice) -> None:
    proc = accord("down", "--home", str(dev.home))
    assert proc.returncode == 0, proc.stderr
    assert dev.proc is not None
    dev.proc.wait(15)


def test_the_fridge_cannot_create_a_store_the_circle_holds_at_s2(house: Household) -> None:
    phone, tablet, fridge = (device(house, p) for p in ("nokia-x60", "tablet", "midea-fridge"))
    put = kv(phone, "put", "health", "pulse", "62", "--label", "S2")
    assert put.returncode == 0, put.stderr
    wait_for(lambda: reads(tablet, "health", "pulse") == "62", 10, "the tablet to read 62")

    def fridge_lists_it() -> bool:
        elsewhere = kv_json(fridge, "stores")["elsewhere"]
        return any(e["name"] == "health" for e in elsewhere)

    wait_for(fridge_lists_it, 10, "the fridge to learn of the phone's store")
    # kv get: not "no store", but why.
    got = kv(fridge, "get", "health", "pulse")
    assert got.returncode == 1
    assert got.stdout == ""
    assert NOT_HELD in one_line(got.stderr)
    # kv put: refused, with or without a label; nothing is created.
    for extra in ([], ["--label", "S1"]):
        put = kv(fridge, "put", "health", "pulse", "999", *extra)
        assert put.returncode == 1, put.stdout
        assert NOT_HELD in one_line(put.stderr)
    stores = kv_json(fridge, "stores")
    assert "health" not in [s["name"] for s in stores["stores"]]
    listed = kv(fridge, "stores").stdout
    assert "in the circle, not on this device" in listed
    row = ["health", "shared", "S2", "lww", phone.name, "may not be held here"]
    assert row in table_rows(listed)
    # Everyone else reads the phone's value.
    assert reads(phone, "health", "pulse") == "62"
    assert reads(tablet, "health", "pulse") == "62"


def test_a_store_made_before_the_catalog_arrived_is_refused_writes_once_it_does(
    house: Household,
) -> None:
    """The fridge is away while the phone creates `sleep` at S2; then the fridge, alone,
    creates its own (S1): nothing told it. When they meet, every device names the
    phone's the circle's: the fridge refuses further writes and says why; the phone
    and the tablet keep theirs, and show that the fridge holds another."""
    phone, tablet, fridge = (device(house, p) for p in ("nokia-x60", "tablet", "midea-fridge"))
    down(fridge)
    assert kv(phone, "put", "sleep", "hours", "8", "--label", "S2").returncode == 0
    wait_for(lambda: reads(tablet, "sleep", "hours") == "8", 10, "the tablet to read 8")
    down(phone)
    down(tablet)
    house.restart(fridge)
    made = kv(fridge, "put", "sleep", "hours", "999")  # the window: nothing knows `sleep`
    assert made.returncode == 0, made.stderr
    assert reads(fridge, "sleep", "hours") == "999"
    house.restart(phone)
    house.restart(tablet)
    _everyone_sees_everyone(house)

    def conflict_on(dev: SimDevice) -> str | None:
        rows = kv_json(dev, "stores")["stores"]
        return next((s["conflict"] for s in rows if s["name"] == "sleep"), None)

    why = wait_for(lambda: conflict_on(fridge), 15, "the fridge to see the conflict")
    assert "conflicts with the circle's store 'sleep'" in why
    assert "this device (SL1) may not hold it" in why
    # Its next write is refused, with the reason; what it holds stays readable.
    refused = kv(fridge, "put", "sleep", "hours", "1000")
    assert refused.returncode == 1
    assert "conflicts with the circle's store 'sleep'" in one_line(refused.stderr)
    got = kv(fridge, "get", "sleep", "hours")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "999"
    assert "warning: store 'sleep' on this device" in one_line(got.stderr)
    assert "conflicts with the circle's store 'sleep'" in one_line(kv(fridge, "stores").stdout)
    # The phone and the tablet: their store, 8, and they say who holds another.
    assert reads(phone, "sleep", "hours") == "8"
    assert reads(tablet, "sleep", "hours") == "8"
    assert conflict_on(phone) is None
    assert conflict_on(tablet) is None

    def phone_names_the_fridge() -> bool:
        rows = kv_json(phone, "stores")["stores"]
        others = next(s["others"] for s in rows if s["name"] == "sleep")
        return [o["device"] for o in others] == [fridge.device_id]

    wait_for(phone_names_the_fridge, 10, "the phone to name the fridge's store")
    listed = one_line(kv(phone, "stores").stdout)
    assert f"sleep: {fridge.name} holds another store of this name" in listed
    assert reads(phone, "sleep", "hours") == "8"
