"""Sealed typed RPC between paired nodes on real Zenoh (in-process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.errors import (
    CallTimeout,
    DeviceUnavailable,
    PermissionDenied,
    RemoteError,
    TrustError,
)
from accord.node import Node
from tests.nodes import Mesh, circle_of, detailed, pair, wait_until


class Greeting(msgspec.Struct):
    name: str
    times: int = 1


class Reply(msgspec.Struct):
    text: str


@pytest.fixture
async def pair_of_nodes(short_tmp: Path) -> AsyncIterator[tuple[Mesh, Node, Node]]:
    async with AsyncExitStack() as stack:
        mesh = Mesh(short_tmp, stack)
        laptop = await mesh.start("laptop", "laptop")
        phone = await mesh.start("phone", "nokia-x60")
        await pair(laptop, phone)
        await wait_until(detailed(laptop, phone), 5, "details")
        yield mesh, laptop, phone


async def test_typed_round_trip_and_device_info(pair_of_nodes: tuple[Mesh, Node, Node]) -> None:
    _, laptop, phone = pair_of_nodes

    async def greet(params: Greeting, caller: str) -> Reply:
        assert caller == laptop.home.device_id  # the callee knows who called
        return Reply(" ".join([f"hello {params.name}"] * params.times))

    phone.services.register("greeter", "greet", greet, Greeting)
    got = await laptop.rpc.call(
        phone.home.device_id, "greeter", "greet", Greeting("tablet", 2), Reply
    )
    assert got == Reply("hello tablet hello tablet")
    info = await laptop.rpc.call(phone.home.device_id, "device", "info", None, dict)
    assert info["profile"]["model"] == "X60"


async def test_remote_errors_come_back_typed(pair_of_nodes: tuple[Mesh, Node, Node]) -> None:
    _, laptop, phone = pair_of_nodes

    async def broken(_params: None, _caller: str) -> None:
        raise ValueError("the lens cap is on")

    phone.services.register("camera", "capture", broken)
    target = phone.home.device_id
    with pytest.raises(RemoteError, match="lens cap") as info:
        await laptop.rpc.call(target, "camera", "capture")
    assert info.value.remote_type == "ValueError"
    with pytest.raises(RemoteError) as unknown:
        await laptop.rpc.call(target, "camera", "zoom")
    assert unknown.value.remote_type == "UnknownMethod"
    phone.services.register("greeter", "greet", lambda p, c: _echo(p), Greeting)
    with pytest.raises(RemoteError) as bad:
        await laptop.rpc.call(target, "greeter", "greet", {"name": 5})
    assert bad.value.remote_type == "InvalidParams"
    # the callee keeps serving after all of that
    assert (await laptop.rpc.call(target, "device", "info", None, dict))["name"] == "phone"


async def _echo(p: Greeting) -> str:
    return p.name


def serve_slow(node: Node) -> tuple[asyncio.Event, asyncio.Event]:
    """Serve work.slow on ``node``: sets the first event when it starts, the second
    when its work ends (it only ends by being cancelled)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(_params: None, _caller: str) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.set()

    node.services.register("work", "slow", slow)
    return started, cancelled


async def test_timeout_cancels_the_work_on_the_callee(
    pair_of_nodes: tuple[Mesh, Node, Node],
) -> None:
    _, laptop, phone = pair_of_nodes
    _, cancelled = serve_slow(phone)
    t0 = time.monotonic()
    with pytest.raises(CallTimeout):
        await laptop.rpc.call(phone.home.device_id, "work", "slow", timeout=0.5)
    assert time.monotonic() - t0 < 3
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_cancelling_the_caller_cancels_the_callee(
    pair_of_nodes: tuple[Mesh, Node, Node],
) -> None:
    _, laptop, phone = pair_of_nodes
    started, cancelled = serve_slow(phone)
    call: asyncio.Future[Any] = asyncio.ensure_future(
        laptop.rpc.call(phone.home.device_id, "work", "slow", timeout=30)
    )
    await asyncio.wait_for(started.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_restricted_service_denies_others(pair_of_nodes: tuple[Mesh, Node, Node]) -> None:
    mesh, laptop, phone = pair_of_nodes
    tv = await mesh.start("tv", "tv")
    await pair(laptop, tv)
    await wait_until(lambda: circle_of(phone).is_member(tv.home.device_id), 5, "phone learns tv")
    await wait_until(detailed(tv, phone), 5, "tv sees phone")

    async def shoot(_params: None, caller: str) -> str:
        return f"photo for {caller[:6]}"

    phone.services.register("camera", "capture", shoot, allowed={laptop.home.device_id})
    assert (await laptop.rpc.call(phone.home.device_id, "camera", "capture", None, str)).startswith(
        "photo"
    )
    with pytest.raises(PermissionDenied, match="restricted"):
        await tv.rpc.call(phone.home.device_id, "camera", "capture")


async def test_gone_callee_is_unavailable_quickly(
    pair_of_nodes: tuple[Mesh, Node, Node],
) -> None:
    _, laptop, phone = pair_of_nodes
    target = phone.home.device_id
    await phone.stop()
    t0 = time.monotonic()
    with pytest.raises(DeviceUnavailable):
        # within moments the directory knows; before that the empty reply set tells us
        await laptop.rpc.call(target, "device", "info", timeout=5)
    assert time.monotonic() - t0 < 2


async def test_strangers_cannot_call(short_tmp: Path) -> None:
    async with AsyncExitStack() as stack:
        mesh = Mesh(short_tmp, stack)
        a = await mesh.start("a", "laptop")
        b = await mesh.start("b", "tv")
        await wait_until(lambda: (r := _rec(a, b)) is not None and r.online, 5, "presence")
        with pytest.raises(TrustError, match="not a member"):
            await a.rpc.call(b.home.device_id, "device", "info")


def _rec(a: Node, b: Node) -> Any:
    assert a.directory is not None
    return a.directory.get(b.home.device_id)
