"""Nodes run in this process (real Zenoh on 127.0.0.1): the directory's join and
leave events for local code, and the control socket's handling of bad requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from accord.bus.directory import DirectoryEvent
from accord.bus.settings import BusSettings
from accord.control.client import ControlClient
from accord.device.home import init_home
from accord.errors import NodeAlreadyRunning, RemoteError
from accord.node import Node
from accord.sim.household import free_port
from tests.nodes import detailed, pair, sees, wait_until


def _settings(port: int, connect: tuple[str, ...] = ()) -> BusSettings:
    return BusSettings(listen=(f"tcp/127.0.0.1:{port}",), connect=connect, multicast=False)


@pytest.fixture
async def first(short_tmp: Path) -> AsyncIterator[tuple[Node, int]]:
    home = init_home(short_tmp / "a", profile_name="nokia-x60")
    port = free_port()
    async with Node(home, _settings(port)) as node:
        yield node, port


async def _next(events: AsyncIterator[DirectoryEvent], timeout: float = 5.0) -> DirectoryEvent:
    return await asyncio.wait_for(anext(events), timeout)


async def test_join_and_leave_events(first: tuple[Node, int], short_tmp: Path) -> None:
    node, port = first
    assert node.directory is not None
    events = node.directory.events()
    got: list[str] = []
    undo = node.directory.subscribe(lambda e: got.append(e.kind))
    try:
        tablet_home = init_home(short_tmp / "b", profile_name="tablet", name="Kitchen tablet")
        async with Node(tablet_home, _settings(free_port(), (f"tcp/127.0.0.1:{port}",))):
            joined = await _next(events)
            assert joined.kind == "joined"
            assert joined.device.name == "Kitchen tablet"
            assert joined.device.device_id == tablet_home.device_id
            # A stranger learns only the public announcement: no profile, no vendor.
            assert joined.device.type == "tablet"
            assert joined.device.standing == "stranger"
            assert joined.device.profile is None
            assert joined.device.vendor == ""
        left = await _next(events)
        assert left.kind == "left"
        assert left.device.device_id == tablet_home.device_id
        assert not left.device.online
        assert got == ["joined", "left"]
    finally:
        undo()
        await events.aclose()


async def test_second_node_on_a_home_is_refused(first: tuple[Node, int]) -> None:
    node, _ = first
    with pytest.raises(NodeAlreadyRunning, match="already running"):
        await Node(node.home, _settings(free_port())).start()


async def test_directory_keeps_members_across_restart_and_forgets_strangers(
    short_tmp: Path,
) -> None:
    """Members (and their first-seen time) survive a restart; a stranger, which
    anyone can fake, is never written to disk (issue 12 §7)."""
    a = init_home(short_tmp / "a", profile_name="tv")
    b = init_home(short_tmp / "b", profile_name="laptop")
    c = init_home(short_tmp / "c", profile_name="tablet")
    port = free_port()
    connect = (f"tcp/127.0.0.1:{port}",)
    async with Node(a, _settings(port)) as node:
        assert node.directory is not None
        async with (
            Node(b, _settings(free_port(), connect)) as member,
            Node(c, _settings(free_port(), connect)) as stranger,
        ):
            await wait_until(lambda: sees(node, stranger), 5, "a to see c")
            await pair(node, member)
            await wait_until(detailed(node, member), 5, "a to hold b's details")
            rec = node.directory.get(b.device_id)
            assert rec is not None
            first_seen = rec.first_seen
    async with Node(a, _settings(port)) as node:
        assert node.directory is not None
        rec = node.directory.get(b.device_id)
        assert rec is not None
        assert not rec.online
        assert rec.first_seen == first_seen
        assert rec.standing == "member"
        assert node.directory.get(c.device_id) is None


async def test_control_socket_rejects_garbage_and_keeps_serving(
    first: tuple[Node, int],
) -> None:
    node, _ = first
    path = node.home.socket_path
    loop = asyncio.get_running_loop()

    def raw(line: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(line)
            return s.makefile("rb").readline()

    for junk in (b"not json\n", b"[1,2,3]\n", b'{"id": "x", "method": 5}\n', b"\xff\xfe\n"):
        reply = msgspec.json.decode(await loop.run_in_executor(None, raw, junk))
        assert reply["error"]["type"] == "ControlError"
    client = ControlClient(path)
    with pytest.raises(RemoteError, match="unknown method"):
        await loop.run_in_executor(None, client.call, "launch-missiles")
    status = await loop.run_in_executor(None, client.call, "status")
    assert status["device_id"] == node.home.device_id


async def test_control_socket_is_private(first: tuple[Node, int]) -> None:
    node, _ = first
    assert node.home.path.stat().st_mode & 0o077 == 0
    assert node.home.socket_path.stat().st_mode & 0o077 == 0
