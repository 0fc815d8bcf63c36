"""A callee process SIGKILLed in the middle of a call or a stream: the caller gets
DeviceUnavailable within a bounded time, never a hang."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from accord.control.client import ControlClient
from accord.device.home import init_home
from accord.errors import DeviceUnavailable
from accord.node import Node
from accord.sim.household import free_port
from tests.nodes import Mesh, wait_until

KILL_BOUND_S = 3.0  # SIGKILL closes the TCP link; Zenoh ends the query at once


@pytest.fixture
async def callee(
    mesh: Mesh, short_tmp: Path
) -> AsyncIterator[tuple[Node, str, subprocess.Popen[bytes]]]:
    home = init_home(short_tmp / "slow", profile_name="tv", name="slow")
    port = free_port()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.slow_node", str(home.path), f"tcp/127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == b"ready"
        mesh.endpoints.append(f"tcp/127.0.0.1:{port}")
        laptop = await mesh.start("laptop", "laptop")
        await wait_until(lambda: _online(laptop, home.device_id), 10, "the callee")
        client = ControlClient(home.socket_path)
        pin = (await asyncio.to_thread(client.call, "pair_window", timeout=30))["pin"]
        await laptop.trust.pair_join({"device": "slow", "pin": pin})
        yield laptop, home.device_id, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _online(node: Node, device_id: str) -> bool:
    assert node.directory is not None
    rec = node.directory.get(device_id)
    return rec is not None and rec.online


async def test_killed_mid_call(callee: tuple[Node, str, subprocess.Popen[bytes]]) -> None:
    laptop, target, proc = callee
    call = asyncio.create_task(laptop.rpc.call(target, "slow", "sleep", 30.0, str, timeout=60))
    await asyncio.sleep(0.3)  # the call is running on the callee
    assert not call.done()
    proc.kill()
    t0 = time.monotonic()
    with pytest.raises(DeviceUnavailable):
        await asyncio.wait_for(call, KILL_BOUND_S * 2)
    assert time.monotonic() - t0 < KILL_BOUND_S


async def test_killed_mid_stream(callee: tuple[Node, str, subprocess.Popen[bytes]]) -> None:
    laptop, target, proc = callee
    got: list[int] = []
    t0 = 0.0

    async def consume() -> None:
        nonlocal t0
        async with laptop.rpc.stream(target, "slow", "drip", 30.0, int, timeout=60) as items:
            async for i in items:
                got.append(i)
                proc.kill()
                t0 = time.monotonic()

    with pytest.raises(DeviceUnavailable, match="mid-stream"):
        await consume()
    assert got == [0]
    assert time.monotonic() - t0 < KILL_BOUND_S
