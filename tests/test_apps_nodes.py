"""Apps across in-process nodes on real Zenoh (each ability in its own process):
install, placement, lifecycle, moves with 10 MiB of state, failures injected at
every step of a move, crash isolation, and failover when the host leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psutil
import pytest

from accord.apps import AppError, TamperedBundle, runtime
from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, CallTimeout, DeviceUnavailable, RemoteError
from accord.node import Node
from tests.nodes import Mesh, household, wait_until

PROBE = Path(__file__).parent / "apps" / "probe"
EXAMPLES = Path(__file__).parent.parent / "examples"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _probe_journals_to_tmp_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe app journals into the test's tmp_path, which the app sandbox (a
    separate user and Landlock) rightly forbids; the sandbox has its own tests
    (test_apps_sandbox.py), these test the runtime."""
    monkeypatch.setenv("ACCORD_APP_SANDBOX", "off")


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


async def eventually(condition: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
    """Await ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


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


@pytest.mark.parametrize("how", ["cancel", "caller-timeout", "call-timeout"])
async def test_a_move_cancelled_or_timed_out_leaves_the_source_running(
    home: dict[str, Node], tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move is abandoned while the source app is SIGSTOPped and the target is still
    fetching: cancelled, by its caller's deadline, or by its own call timing out. The
    source must get SIGCONT and go on, whatever ended the move."""
    await start_probe(home, tmp_path, size=200_000)
    phone, tablet = home["phone"], home["tablet"]
    await ctl(phone).call("app_send", app="probe", message={"op": "inc"})
    sha = (await running(phone, "probe"))[0]["status"]["sha"]
    fetching, release = asyncio.Event(), asyncio.Event()

    async def stuck(source: str, transfer: str, part: str) -> bytes:
        fetching.set()
        await release.wait()
        raise DeviceUnavailable("released by the test")

    tablet.apps._fetch = stuck  # type: ignore[method-assign]
    if how == "call-timeout":
        monkeypatch.setattr(runtime, "MOVE_TIMEOUT_S", 1.0)
    deadlines: list[asyncio.Timeout] = []

    async def caller() -> None:
        async with asyncio.timeout(None) as deadline:
            deadlines.append(deadline)
            await phone.apps.move("probe", tablet.home.device_id)

    move = asyncio.get_running_loop().create_task(caller())
    try:
        await asyncio.wait_for(fetching.wait(), 20)
        source = psutil.Process((await running(phone, "probe"))[0]["pid"])
        # Mid-move the source is paused (SIGSTOP takes effect once the kernel runs it).
        await wait_until(lambda: source.status() == psutil.STATUS_STOPPED, 10, "the SIGSTOP")
        if how == "cancel":
            move.cancel()
            with pytest.raises(asyncio.CancelledError):
                await move
        elif how == "caller-timeout":
            deadlines[0].reschedule(asyncio.get_running_loop().time())  # the deadline is now
            with pytest.raises(TimeoutError):
                await move
        else:
            with pytest.raises(CallTimeout):
                await move
    finally:
        release.set()
        move.cancel()
    try:
        await wait_until(lambda: source.status() != psutil.STATUS_STOPPED, 10,
                         "the source app to get SIGCONT after the move ended")  # fmt: skip
    except AssertionError:
        source.resume()  # the rollback missed this exit; let the node stop it cleanly
        raise
    await _assert_still_on_phone(home, sha, counter=1)
    del tablet.apps._fetch  # and a later move goes through
    moved = await ctl(phone).call("app_move", app="probe", to=tablet.home.device_id)
    assert moved["to"] == "tablet"


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

    await eventually(restarted, 15, "keep-alive to restart the app")
    status = await ctl(phone).call("status")  # the node itself never went down
    assert status["name"] == "phone"
    assert "probe" not in phone.apps.crashed


async def test_failover_when_the_host_leaves(home: dict[str, Node], tmp_path: Path) -> None:
    await start_probe(home, tmp_path, size=50_000, on="tablet")
    tablet = home["tablet"]
    await ctl(tablet).call("app_send", app="probe", message={"op": "inc"})
    sha = (await running(tablet, "probe"))[0]["status"]["sha"]
    # Either of the others may take over: both must hold a checkpoint with counter 1.
    for node in (home["phone"], home["laptop"]):
        await eventually(
            partial(_saved_counter, node, "probe", tablet.home.device_id, 1),
            15,
            f"a checkpoint with counter 1 on the {node.name}",
        )
    await tablet.stop()
    rows = await eventually(partial(running, home["phone"], "probe"), 15, "the failover")
    assert len(rows) == 1, rows  # exactly one member took it over
    assert rows[0]["device"] in ("phone", "laptop")
    assert rows[0]["status"]["sha"] == sha
    assert rows[0]["status"]["counter"] == 1


async def _saved_counter(node: Node, app_id: str, host: str, counter: int) -> bool:
    """True once ``node`` holds a checkpoint of ``app_id`` made on ``host`` whose saved
    state (every chunk of it arrived) has ``counter``."""
    ckpt = await node.apps.checkpoints.get(app_id)
    if ckpt is None or ckpt.host != host:
        return False
    try:
        state = await node.apps.checkpoints.read_blob(app_id, ckpt.state_blob, ckpt.state_chunks)
    except AppError:  # a chunk not here yet, or the blob replaced by a newer checkpoint
        return False
    return bool(state) and msgspec.msgpack.decode(state)["counter"] == counter


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
    label = bundle.manifest.state_label  # notes keeps S2 state: accord.apps.s2
    store = runtime.STORE if label == "S1" else f"{runtime.STORE}.{label.lower()}"
    apps_store = home["laptop"].data.stores.get(store)
    assert apps_store.scan("blob/notes/")  # keep-alive: its checkpoint and chunks
    await ctl(phone).call("app_stop", app="notes")
    assert await running(phone, "notes") == []
    assert apps_store.scan("ckpt/notes") == []
    assert apps_store.scan("blob/notes/") == []  # stopped for good: nothing left behind
