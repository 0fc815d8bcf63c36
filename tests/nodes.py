"""In-process nodes on real Zenoh for tests: a mesh of nodes, pairing, waits."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from accord.bus.settings import BusSettings
from accord.device.home import Home, init_home
from accord.node import Node
from accord.sim.household import free_port
from accord.trust.circle import Circle


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Mesh:
    """Nodes that each listen on a port and connect to every node started before."""

    def __init__(self, folder: Path, stack: AsyncExitStack) -> None:
        self.folder = folder
        self.stack = stack
        self.endpoints: list[str] = []
        self.ports: dict[str, int] = {}

    async def start(self, name: str, profile: str, home: Home | None = None) -> Node:
        home = home or init_home(self.folder / name, profile_name=profile, name=name)
        port = self.ports.setdefault(name, free_port())
        ep = f"tcp/127.0.0.1:{port}"
        settings = BusSettings(
            listen=(ep,), connect=tuple(e for e in self.endpoints if e != ep), multicast=False
        )
        node = await self.stack.enter_async_context(Node(home, settings))
        if ep not in self.endpoints:
            self.endpoints.append(ep)
        return node


def sees(node: Node, other: Node) -> bool:
    assert node.directory is not None
    rec = node.directory.get(other.home.device_id)
    return rec is not None and rec.online


async def pair(host: Node, joiner: Node) -> dict[str, str]:
    await wait_until(lambda: sees(joiner, host), 5, "joiner to see host")
    pin = (await host.trust.pair_window({"timeout": 30}))["pin"]
    result = await joiner.trust.pair_join({"device": host.name, "pin": pin})
    return result


def detailed(node: Node, other: Node) -> Callable[[], bool]:
    def check() -> bool:
        assert node.directory is not None
        rec = node.directory.get(other.home.device_id)
        return rec is not None and rec.online and rec.profile is not None

    return check


def circle_of(node: Node) -> Circle:
    assert node.circle is not None
    return node.circle


async def household(mesh: Mesh, *devices: tuple[str, str]) -> list[Node]:
    """Start (name, profile) nodes, pair each with the first, and wait until every
    node holds every other's details."""
    nodes = [await mesh.start(name, profile) for name, profile in devices]
    for joiner in nodes[1:]:
        await pair(nodes[0], joiner)
    for a in nodes:
        for b in nodes:
            if a is not b:
                await wait_until(detailed(a, b), 10, f"{a.name} to hold {b.name}'s details")
    return nodes


async def accord_async(*args: str, timeout: float = 90.0) -> tuple[int, str, str]:
    """The real `accord` command, without blocking the loop the in-process nodes run
    on: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accord",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
