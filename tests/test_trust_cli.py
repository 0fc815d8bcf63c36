"""The trust commands between real node processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.sim.household import Household
from tests.helpers import accord, accord_json, wait_for, wait_sees_all


@pytest.fixture
def house(short_tmp: Path) -> Iterator[Household]:
    h = Household(["laptop", "tablet", "tv"], short_tmp / "house", pair=False)
    h.start()
    try:
        yield h
    finally:
        h.stop()


def _members(home: Path) -> set[str]:
    return {m["device_id"] for m in accord_json("trust", "list", "--home", str(home))["members"]}


def test_pair_open_join_list_revoke(house: Household) -> None:
    laptop, tablet, tv = house.devices
    everyone = {d.device_id for d in house.devices}
    wait_sees_all(tablet.home, everyone)
    opener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accord",
            "pair",
            "open",
            "--json",
            "--timeout",
            "60",
            "--home",
            str(laptop.home),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert opener.stdout is not None
        opened = json.loads(opener.stdout.readline())
        assert opened["event"] == "open"
        assert len(opened["pin"]) == 6
        records = accord_json("devices", "--home", str(tablet.home))
        host = next(r for r in records if r["device_id"] == laptop.device_id)
        assert host["standing"] == "stranger"
        assert host["vendor"] == ""  # strangers see no profile details

        wrong = f"{(int(opened['pin']) + 1) % 1_000_000:06d}"
        bad = accord("pair", "join", "Laptop", "--pin", wrong, "--home", str(tablet.home))
        assert bad.returncode == 1
        assert "wrong PIN" in bad.stderr

        joined = accord(
            "pair", "join", "Laptop", "--pin", opened["pin"], "--json", "--home", str(tablet.home)
        )
        assert joined.returncode == 0, joined.stderr
        code = json.loads(joined.stdout)["code"]
        paired = json.loads(opener.stdout.readline())
        assert paired["event"] == "paired"
        assert paired["code"] == code  # the same verification code on both devices
        assert opener.wait(10) == 0
    finally:
        if opener.poll() is None:
            opener.kill()
            opener.wait()
        if opener.stdout is not None:
            opener.stdout.close()

    assert _members(laptop.home) == {laptop.device_id, tablet.device_id}
    assert _members(tablet.home) == {laptop.device_id, tablet.device_id}

    def tablet_sees_laptop_details() -> bool:
        recs = accord_json("devices", "--home", str(tablet.home))
        return any(r["device_id"] == laptop.device_id and r["vendor"] == "Generic" for r in recs)

    wait_for(tablet_sees_laptop_details, 10, "members to exchange details")

    # One to three characters of an id never select a device (`trust revoke l`).
    for n in (1, 2, 3):
        short = tablet.device_id[:n]
        if any(name.lower().startswith(short) for name in ("laptop", "tablet")):
            continue  # a name prefix would rightly select by name
        refused = accord("trust", "revoke", short, "--home", str(laptop.home))
        assert refused.returncode == 1
        assert "no member" in refused.stderr
    assert _members(laptop.home) == {laptop.device_id, tablet.device_id}

    revoke = accord("trust", "revoke", "Tablet", "--home", str(laptop.home))
    assert revoke.returncode == 0, revoke.stderr
    listing = accord_json("trust", "list", "--home", str(laptop.home))
    assert tablet.device_id in listing["revoked"]
    assert listing["epoch"] == 2
    recs = accord_json("devices", "--home", str(laptop.home))
    assert next(r for r in recs if r["device_id"] == tablet.device_id)["standing"] == "revoked"
    again = accord("trust", "revoke", "Tablet", "--home", str(laptop.home))
    assert again.returncode == 1
    assert "no member" in again.stderr
    assert tv.device_id not in _members(laptop.home)


def test_loose_key_file_is_refused(short_tmp: Path) -> None:
    home = short_tmp / "h"
    assert accord("init", "--home", str(home), "--profile", "tv").returncode == 0
    (home / "identity.key").chmod(0o644)
    proc = accord("up", "--home", str(home), "--no-multicast")
    assert proc.returncode == 1
    assert f"chmod 600 {home / 'identity.key'}" in proc.stderr


def test_leave_without_a_circle_is_a_clear_error(house: Household) -> None:
    proc = accord("trust", "leave", "--home", str(house.devices[0].home))
    assert proc.returncode == 1
    assert "no circle but its own" in proc.stderr
