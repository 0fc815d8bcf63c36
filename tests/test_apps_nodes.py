"""Apps across in-process nodes on real Zenoh (each ability in its own process):
install, placement, lifecycle, moves with 10 MiB of state, failures injected at
every step of a move, crash isolation, and failover when the host leaves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.apps import TamperedBundle
from accord.apps.messages import Checkpoint
from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, DeviceUnavailable, RemoteError
from accord.node import Node
from tests.nodes import Mesh, household, wait_until

PROBE = Path(__file__).parent / "apps" / "probe"
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("laptop", "laptop")
    )
    return {n.name: n for n in nodes}


def ctl(node: Node) -> AsyncControlClient:
    return AsyncControlClient(node.home.socket_path)


async def running(node: Node, app_id: str) -> list[dict[str, Any]]:
    ps = await ctl(node).call("ps")
    return [r for r in ps["running"] if r["app_id"] == app_id]


async def start_probe(
    home: dict[str, Node], tmp_path: Path, on: str = "phone", size: int = 0
) -> Path:
    journal = tmp_path / "journal.txt"
    phone = home["phone"]
    installed = await ctl(phone).call("app_install", path=str(PROBE), on="all")
    assert all(r["ok"] for r in installed["devices"].values()), installed
    await ctl(phone).call("app_run", app="probe", on=on,
                          params={"journal": str(journal), "size": size})  # fmt: skip
    return journal


def journal_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_a_move_carries_10_mib_and_keeps_the_lifecycle_order(
    home: dict[str, Node], tmp_path: Path
) -> None:
    size = 10 * 1024 * 1024 - 512  # 10 MiB of state with its envelope
    journal = await start_probe(home, tmp_path, size=size)
    before = await running(home["phone"], "probe")
    assert [r["device"] for r in before] == ["phone"]
    moved = await ctl(home["laptop"]).call("app_move", app="probe", to="tablet")
    assert (moved["from"], moved["to"]) == ("phone", "tablet")
    assert size < moved["state_bytes"] <= 10 * 1024 * 1024
    after = await running(home["laptop"], "probe")
    assert [r["device"] for r in after] == ["tablet"]  # exactly one copy, on the target
    assert after[0]["status"]["sha"] == before[0]["status"]["sha"]
    assert after[0]["status"]["bytes"] == size
    events = journal_of(journal)
    # The keep-alive checkpointer may add saves; the order of the rest is fixed.
    core = [e for e in events if not e.endswith("save")]
    assert core == ["phone start", "phone continue", "tablet start restored", "phone stop"]
    assert events.index("phone continue") < events.index("tablet start restored")
    assert events.index("tablet start restored") < events.index("phone stop")


async def _assert_still_on_phone(home: dict[str, Node], sha: str, counter: int) -> None:
    rows = await running(home["laptop"], "probe")
    assert [r["device"] for r in rows] == ["phone"], rows
    assert rows[0]["paused"] is False
    assert rows[0]["status"]["sha"] == sha
    reply = await ctl(home["phone"]).call("app_send", app="probe", message={"op": "inc"})
    assert reply["counter"] == counter + 1  # running again, with the state it had


@pytest.mark.parametrize("failure", ["refuse", "fail_restore", "crash_restore", "cut", "offline"])
async def test_a_failed_move_leaves_the_source_running_with_its_state(
    home: dict[str, Node], tmp_path: Path, failure: str, mesh: Mesh
) -> None:
    await start_probe(home, tmp_path, size=200_000)
    phone = ctl(home["phone"])
    await phone.call("app_send", app="probe", message={"op": "inc"})
    sha = (await running(home["phone"], "probe"))[0]["status"]["sha"]
    tablet = home["tablet"]
    if failure in ("refuse", "fail_restore", "crash_restore"):
        await phone.call("app_send", app="probe", message={"op": "set", failure: True})
    elif failure == "cut":

        async def cut(source: str, transfer: str, part: str) -> bytes:
            raise DeviceUnavailable("transfer cut")

        tablet.apps._fetch = cut  # type: ignore[method-assign]
    else:
        await tablet.stop()
        await wait_until(
            lambda: tablet.home.device_id not in home["phone"].directory.online_ids(),  # type: ignore[union-attr]
            10,
            "the phone to see the tablet gone",
        )
    with pytest.raises(RemoteError) if failure != "offline" else pytest.raises(AccordError):
        await phone.call("app_move", app="probe", to=tablet.home.device_id)
    await _assert_still_on_phone(home, sha, counter=1)  # the only copy, circle-wide


async def test_an_app_crash_is_isolated_and_keep_alive_restarts_it(
    home: dict[str, Node], tmp_path: Path
) -> None:
    await start_probe(home, tmp_path)
    phone = home["phone"]
    first = (await running(phone, "probe"))[0]
    with pytest.raises(RemoteError, match="died"):
        await ctl(phone).call("app_send", app="probe", message={"op": "crash"})

    async def restarted() -> bool:
        rows = await running(phone, "probe")
        return bool(rows) and rows[0]["pid"] != first["pid"]

    end = time.monotonic() + 15
    while not await restarted():
        assert time.monotonic() < end, "the keep-alive app was not restarted"
        await asyncio.sleep(0.05)
    status = await ctl(phone).call("status")  # the node itself never went down
    assert status["name"] == "phone"
    assert "probe" not in phone.apps.crashed


async def test_failover_when_the_host_leaves(home: dict[str, Node], tmp_path: Path) -> None:
    await start_probe(home, tmp_path, size=50_000, on="tablet")
    tablet = home["tablet"]
    await ctl(tablet).call("app_send", app="probe", message={"op": "inc"})
    sha = (await running(tablet, "probe"))[0]["status"]["sha"]
    # Wait for a checkpoint holding counter 1 to reach the others.
    await wait_until(
        lambda: any(c.host == tablet.home.device_id for c in _ckpts(home["laptop"])),
        10,
        "the checkpoint on the laptop",
    )
    await asyncio.sleep(1.0)  # one more checkpoint interval: counter 1 is saved
    await tablet.stop()
    end = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while time.monotonic() < end:
        rows = await running(home["phone"], "probe")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1, rows  # exactly one member took it over
    assert rows[0]["device"] in ("phone", "laptop")
    assert rows[0]["status"]["sha"] == sha
    assert rows[0]["status"]["counter"] == 1


def _ckpts(node: Node) -> list[Checkpoint]:
    replica = node.data.stores.get("accord.apps")
    return [msgspec.msgpack.decode(e.value, type=Checkpoint) for e in replica.scan("ckpt/")]


async def test_placement_and_a_tampered_bundle(home: dict[str, Node], tmp_path: Path) -> None:
    phone = home["phone"]
    installed = await ctl(phone).call("app_install", path=str(EXAMPLES / "notes"), on="all")
    assert all(r["ok"] for r in installed["devices"].values())
    started = await ctl(phone).call("app_run", app="notes", params={"text": "hello"})
    assert started["device"] == "laptop"  # the only member on mains power
    bundle = phone.apps.bundle("notes")
    middle = len(bundle.zip) // 2
    flipped = bundle.zip[:middle] + bytes([bundle.zip[middle] ^ 1]) + bundle.zip[middle + 1 :]
    tampered = msgspec.structs.replace(bundle, zip=flipped)
    with pytest.raises(TamperedBundle):
        await home["tablet"].apps.install(tampered)
    apps_store = home["laptop"].data.stores.get("accord.apps")
    assert apps_store.scan("blob/notes/")  # keep-alive: its checkpoint and chunks
    await ctl(phone).call("app_stop", app="notes")
    assert await running(phone, "notes") == []
    assert apps_store.scan("ckpt/notes") == []
    assert apps_store.scan("blob/notes/") == []  # stopped for good: nothing left behind
