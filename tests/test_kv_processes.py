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
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zenoh

from accord.bus import keys
from accord.bus.settings import BusSettings, zenoh_config
from accord.control.client import ControlClient
from accord.data.limits import DOT_OVERHEAD, ROW_OVERHEAD
from accord.device.home import SOCKET_NAME
from accord.errors import AccordError
from accord.sim.household import Household, SimDevice
from tests.helpers import (
    accord,
    accord_json,
    device,
    running_household,
    wait_for,
    wait_gone,
    wait_sees_all,
)

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

SETTINGS = ["anti_entropy_ms=1000"]  # repair lost messages within a second
QUIET = ["anti_entropy_ms=3600000"]  # no summaries: a catch-up is only what a restart starts


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(
        ["nokia-x60", "tablet", "laptop"], "acc-kv-", settings=SETTINGS, shared=shared_processes
    )


@pytest.fixture
def house(_household: Household) -> Household:
    """The module's household, whole: a device an earlier test killed runs again."""
    for dev in _household.devices:
        if not dev.running:
            _household.restart(dev)
    everyone = {d.device_id for d in _household.devices}
    for dev in _household.devices:
        wait_sees_all(dev.home, everyone, timeout=15)
    return _household


@pytest.fixture
def quiet_house() -> Iterator[Household]:
    """A household of its own without anti-entropy rounds."""
    yield from running_household(["nokia-x60", "tablet", "laptop"], "acc-kvq-", settings=QUIET)


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
    cut_short: set[str] = set()  # writers whose node stopped answering
    victim = device(house, "tablet")
    half = threading.Event()

    def write(dev: SimDevice, start: int, count: int) -> None:
        client = _client(dev, timeout=5.0)
        for i in range(start, start + count):
            key = f"{dev.name}/{i:04d}"
            try:
                client.call("kv_put", store="race", key=key, value=f"v{i}")
            except AccordError:
                cut_short.add(dev.name)
                return  # the node was killed under us
            acked[dev.name].add(key)
            if dev is victim and i == start + 75:
                half.set()

    # The victim's writer has far more to write than it can before the kill lands, so
    # the kill always meets a writer that is still going.
    counts = {d.name: 5000 if d is victim else 150 for d in house.devices}
    threads = [
        threading.Thread(target=write, args=(d, 0, counts[d.name]), daemon=True)
        for d in house.devices
    ]
    for t in threads:
        t.start()
    assert half.wait(30), "the victim's writer never got half way"
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)  # mid-stream: its writer is still going
    victim.proc.wait()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    # Only the victim's writer was cut short, by the kill (not by running out of keys),
    # and every write the others sent was acknowledged.
    assert cut_short == {victim.name}
    killed_at = len(acked[victim.name])
    assert 76 <= killed_at < counts[victim.name], killed_at
    assert all(len(acked[d.name]) == 150 for d in house.devices if d is not victim)
    _restart_and_wait(house, victim)
    write(victim, 10_000, 20)  # and it writes again after the restart
    assert len(acked[victim.name]) == killed_at + 20

    want = {k for keys in acked.values() for k in keys}
    # The one write in flight when the kill landed may have committed without its
    # acknowledgement reaching the writer: it may be there, nothing else may.
    in_flight = f"{victim.name}/{killed_at:04d}"

    def differences() -> dict[str, Any]:
        """Per device, what it lacks or has beyond the acknowledged writes (empty once
        every node holds them and all hold the same)."""
        views = {d.name: _contents(d, "race") for d in house.devices}
        out: dict[str, Any] = {}
        for name, view in views.items():
            if view is None:
                out[name] = "no answer"
            elif not want <= set(view) <= want | {in_flight}:
                out[name] = {"lacks": sorted(want - set(view)), "extra": sorted(set(view) - want)}
        if not out and len({json.dumps(v, sort_keys=True) for v in views.values()}) > 1:
            out["all"] = "the nodes hold different values"
        return out

    try:
        wait_for(lambda: not differences(), 30, "every node to hold every acknowledged write")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still: {differences()}") from None


@contextmanager
def frames_to(house: Household, device_id: str) -> Iterator[list[int]]:
    """The size of every data sync frame sent to ``device_id`` while inside: a Zenoh
    session of the test's own, connected to the household, listening on that device's
    data key (frames are sealed: it sees their sizes, not what they say)."""
    endpoints = tuple(d.endpoint for d in house.devices if d.running)
    settings = BusSettings(connect=endpoints, multicast=False, listen=("tcp/127.0.0.1:0",))
    session = zenoh.open(zenoh_config(settings))
    sizes: list[int] = []
    lock = threading.Lock()

    def seen(sample: zenoh.Sample) -> None:
        with lock:
            sizes.append(len(sample.payload.to_bytes()))

    try:
        sub = session.declare_subscriber(keys.data_key(device_id), seen)
        try:
            yield sizes
        finally:
            sub.undeclare()  # type: ignore[no-untyped-call]
    finally:
        session.close()  # type: ignore[no-untyped-call]


def test_a_stopped_node_catches_up_with_only_the_delta(quiet_house: Household) -> None:
    """A node that was down catches up with the rows that changed, not the store.

    Measured on the catch-up itself: the size of each frame sent to the restarted
    node. Totals depend on timing (a peer's own pull or summary can make the node ask
    again before the first answer arrived, and each ask is answered with the same
    page), so each page is held to the changed rows, and the total only to a fraction
    of the store. Anti-entropy is off: its summaries would start more such asks."""
    house = quiet_house
    phone, laptop = device(house, "nokia-x60"), device(house, "laptop")
    value = base64.b64encode(os.urandom(2048)).decode()  # 2 KiB of incompressible text
    for i in range(0, 400, 50):
        for j in range(i, i + 50):
            _client(phone).call("kv_put", store="big", key=f"k{j:03d}", value=value)
    wait_for(lambda: len(_contents(laptop, "big") or {}) == 400, 30, "the laptop to hold the store")
    store_bytes = 400 * (4 + len(value))
    assert laptop.proc is not None
    laptop.proc.send_signal(signal.SIGKILL)
    laptop.proc.wait()
    wait_gone(phone.home, laptop.device_id, 10, "the phone to see the laptop gone")
    changed = {f"k{j:03d}": f"changed-{j}-" + "x" * 2048 for j in range(0, 400, 20)}  # 20 keys
    for key, new in changed.items():
        _client(phone).call("kv_put", store="big", key=key, value=new)
    changed_bytes = sum(len(k) + len(v) for k, v in changed.items())

    def caught_up() -> bool:
        got = _contents(laptop, "big") or {}
        return all(base64.b64decode(got.get(k, "")) == v.encode() for k, v in changed.items())

    with frames_to(house, laptop.device_id) as sizes:
        _restart_and_wait(house, laptop)
        wait_for(caught_up, 30, "the laptop to catch up")
    # A page of the changed rows: their keys and values, each row's framing and dots,
    # and a header (store name, version vector, seal).
    page = changed_bytes + len(changed) * (ROW_OVERHEAD + DOT_OVERHEAD) + 1024
    assert max(sizes) >= changed_bytes, sizes  # the changed rows came in one page...
    assert max(sizes) <= page, (sizes, page)  # ...and no frame held more than them
    assert sum(sizes) < store_bytes // 2, (sizes, store_bytes)  # far from the whole store


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
