"""Data stores between real node processes on 127.0.0.1: concurrent writers with a
SIGKILL and restart, a stopped node's catch-up moving only the delta, and the CLI."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME
from accord.errors import AccordError
from accord.sim.household import Household, SimDevice
from tests.helpers import accord, accord_json, device, running_household, wait_for, wait_sees_all

SETTINGS = ["anti_entropy_ms=1000"]  # repair lost messages within a second


@pytest.fixture(scope="module")
def house() -> Iterator[Household]:
    yield from running_household(["nokia-x60", "tablet", "laptop"], "acc-kv-", settings=SETTINGS)


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_threads() -> None:
    return  # the household outlives each test on purpose: it is shared by the module


def _client(dev: SimDevice, timeout: float = 10.0) -> ControlClient:
    return ControlClient(dev.home / "run" / SOCKET_NAME, timeout=timeout)


def _contents(dev: SimDevice, store: str) -> dict[str, str] | None:
    try:
        result = _client(dev).call("kv_ls", store=store, values=True)
    except AccordError:
        return None
    return {e["key"]: e["value_b64"] for e in result["entries"]}


def _restart_and_wait(house: Household, dev: SimDevice) -> None:
    house.restart(dev)
    everyone = {d.device_id for d in house.devices}
    for d in house.devices:
        wait_sees_all(d.home, everyone, timeout=15)


def test_concurrent_writers_survive_a_sigkill_and_converge(house: Household) -> None:
    acked: dict[str, set[str]] = {d.name: set() for d in house.devices}
    victim = device(house, "tablet")
    half = threading.Event()

    def write(dev: SimDevice, start: int, count: int) -> None:
        client = _client(dev, timeout=5.0)
        for i in range(start, start + count):
            key = f"{dev.name}/{i:04d}"
            try:
                client.call("kv_put", store="race", key=key, value=f"v{i}")
            except AccordError:
                return  # the node was killed under us
            acked[dev.name].add(key)
            if dev is victim and i == start + count // 2:
                half.set()

    threads = [threading.Thread(target=write, args=(d, 0, 150), daemon=True) for d in house.devices]
    for t in threads:
        t.start()
    assert half.wait(30), "the victim's writer never got half way"
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)  # mid-stream: its writer is still going
    victim.proc.wait()
    for t in threads:
        t.join(60)
    killed_at = len(acked[victim.name])
    assert 75 <= killed_at < 150 or killed_at == 150
    _restart_and_wait(house, victim)
    write(victim, 1000, 20)  # and it writes again after the restart

    want = {k for keys in acked.values() for k in keys}

    def converged() -> bool:
        views = [_contents(d, "race") for d in house.devices]
        return all(v is not None and set(v) == want for v in views) and all(
            v == views[0] for v in views
        )

    wait_for(converged, 30, "every node to hold every acknowledged write")


def test_a_stopped_node_catches_up_with_only_the_delta(house: Household) -> None:
    phone, laptop = device(house, "nokia-x60"), device(house, "laptop")
    value = base64.b64encode(os.urandom(2048)).decode()  # 2 KiB of incompressible text
    for i in range(0, 400, 50):
        for j in range(i, i + 50):
            _client(phone).call("kv_put", store="big", key=f"k{j:03d}", value=value)
    wait_for(lambda: len(_contents(laptop, "big") or {}) == 400, 30, "the laptop to hold the store")
    assert laptop.proc is not None
    laptop.proc.send_signal(signal.SIGKILL)
    laptop.proc.wait()
    changed = {f"k{j:03d}": f"changed-{j}-" + "x" * 2048 for j in range(0, 400, 20)}  # 20 keys
    for key, new in changed.items():
        _client(phone).call("kv_put", store="big", key=key, value=new)
    changed_bytes = sum(len(k) + len(v) for k, v in changed.items())
    _restart_and_wait(house, laptop)

    def caught_up() -> bool:
        got = _contents(laptop, "big") or {}
        return all(base64.b64decode(got.get(k, "")) == v.encode() for k, v in changed.items())

    wait_for(caught_up, 30, "the laptop to catch up")
    traffic = _client(laptop).call("kv_stores")["traffic"]
    received = sum(t["received"] for t in traffic.values())
    # Both other members answer its pulls; each sends the changed rows once.
    assert received <= 3 * changed_bytes + 32 * 1024, (received, changed_bytes)
    assert received < 400 * 2048 // 4  # far from the whole store


def test_the_kv_commands(house: Household, tmp_path: Path) -> None:
    phone, tablet = device(house, "nokia-x60"), device(house, "tablet")
    ph, tb = ("--home", str(phone.home)), ("--home", str(tablet.home))
    put = accord("kv", "put", "cli", "todo", "milk", *ph)
    assert put.returncode == 0, put.stderr
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    assert accord("kv", "put", "cli", "blob", f"@{blob}", *ph).returncode == 0
    wait_for(lambda: len(_contents(tablet, "cli") or {}) == 2, 15, "the tablet to get both")
    got = subprocess.run(
        [sys.executable, "-m", "accord", "kv", "get", "cli", "blob", *tb],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert got.stdout == blob.read_bytes()
    assert accord_json("kv", "get", "cli", "todo", *tb)["text"] == "milk"
    listing = accord_json("kv", "ls", "cli", *tb)
    assert [e["key"] for e in listing["entries"]] == ["blob", "todo"]
    stores = accord_json("kv", "stores", *tb)
    cli = next(s for s in stores["stores"] if s["name"] == "cli")
    assert (cli["kind"], cli["label"], cli["keys"]) == ("shared", "S1", 2)

    watcher = subprocess.Popen(
        [sys.executable, "-m", "accord", "kv", "watch", "cli", "to", "--json", *tb],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in watcher.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # Until the watch is subscribed, local probes under its prefix go unseen.
        def probe_seen() -> bool:
            _client(tablet).call("kv_put", store="cli", key="to-probe", value="1")
            try:
                return bool(json.loads(lines.get(timeout=0.5))["source"] == "local")
            except queue.Empty:
                return False

        wait_for(probe_seen, 20, "the watch to start")
        assert accord("kv", "del", "cli", "todo", *ph).returncode == 0
        event: dict[str, Any] = {}
        while event.get("source") != "push":
            event = json.loads(lines.get(timeout=15))
    finally:
        watcher.terminate()
        watcher.wait(10)
        if watcher.stdout is not None:
            watcher.stdout.close()
    assert event["changes"][0]["key"] == "todo"
    assert event["changes"][0]["deleted"] is True
    assert event["changes"][0]["origin"] == phone.device_id

    ops = [{"key": f"b{i}", "value_b64": base64.b64encode(b"x").decode()} for i in range(10)]
    assert _client(phone).call("kv_batch", store="cli", ops=[*ops, {"key": "blob"}])["ops"] == 11
    wait_for(
        lambda: set(_contents(tablet, "cli") or {}) == {f"b{i}" for i in range(10)} | {"to-probe"},
        15,
        "the batch on the tablet",
    )
    with pytest.raises(AccordError, match="list of"):
        _client(phone).call("kv_batch", store="cli", ops=[])

    missing = accord("kv", "get", "nostore", "k", *tb)
    assert missing.returncode == 1
    assert "no store named 'nostore'" in missing.stderr
    absent = accord("kv", "get", "cli", "todo", *tb)
    assert absent.returncode == 1
    assert "accord kv ls cli" in absent.stderr
    bad = accord("kv", "put", "cli2", "k", "v", "--label", "S9", *ph)
    assert bad.returncode == 1
    assert "unknown data label" in bad.stderr
    long_key = accord("kv", "put", "cli", "k" * 2000, "v", *ph)
    assert long_key.returncode == 1
    assert "1024 byte limit" in long_key.stderr
