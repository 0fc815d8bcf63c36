"""RPC streams between paired in-process nodes: order, backpressure, cancellation,
errors and size limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
import pytest

from accord.errors import CallTimeout, PayloadTooLarge, RemoteError
from accord.node import Node
from accord.rpc import MAX_ITEM, MAX_RESULT
from tests.nodes import Mesh, household, wait_until

T = TypeVar("T")


class Count(msgspec.Struct):
    upto: int


async def drain(stream: AsyncIterator[T], into: list[T] | None = None) -> list[T]:
    into = [] if into is None else into
    async for item in stream:
        into.append(item)
    return into


@pytest.fixture
async def two(mesh: Mesh) -> tuple[Node, Node]:
    laptop, phone = await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"))
    return laptop, phone


async def test_items_arrive_typed_and_in_order(two: tuple[Node, Node]) -> None:
    laptop, phone = two

    async def count(params: Count, caller: str) -> AsyncIterator[int]:
        for i in range(params.upto):
            yield i

    phone.services.register_stream("counter", "count", count, Count)
    got = [
        i
        async for i in laptop.rpc.stream(phone.home.device_id, "counter", "count", Count(100), int)
    ]
    assert got == list(range(100))
    empty = laptop.rpc.stream(phone.home.device_id, "counter", "count", Count(0), int)
    assert [i async for i in empty] == []


async def test_the_callee_runs_at_most_a_window_ahead(two: tuple[Node, Node]) -> None:
    laptop, phone = two
    produced = 0

    async def endless(_: None, caller: str) -> AsyncIterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield produced

    phone.services.register_stream("feed", "endless", endless)
    stream = laptop.rpc.stream(phone.home.device_id, "feed", "endless", item=int, window=4)
    async with stream:
        assert await anext(stream) == 1
        # the consumer stops reading: the producer must stall at its credit
        await wait_until(lambda: produced >= 4, 5, "the producer to fill its window")
        await asyncio.sleep(0.3)  # give an unbounded producer the chance to run away
        assert produced <= 4 + 4 + 1  # window, plus the one credit granted, plus one pending
        for _ in range(20):
            await anext(stream)
        assert produced <= 21 + 4 + 4 + 1


async def test_closing_early_cancels_the_generator(two: tuple[Node, Node]) -> None:
    laptop, phone = two
    closed = asyncio.Event()

    async def ticks(_: None, caller: str) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                i += 1
                yield i
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    phone.services.register_stream("feed", "ticks", ticks)
    async with laptop.rpc.stream(phone.home.device_id, "feed", "ticks", item=int) as stream:
        async for i in stream:
            if i == 3:
                break
    await asyncio.wait_for(closed.wait(), 5)


async def test_errors_end_the_stream_typed(two: tuple[Node, Node]) -> None:
    laptop, phone = two

    async def fails(_: None, caller: str) -> AsyncIterator[int]:
        yield 1
        raise ValueError("sensor unplugged")

    async def huge(_: None, caller: str) -> AsyncIterator[bytes]:
        yield b"x" * (MAX_ITEM + 1)

    phone.services.register_stream("feed", "fails", fails)
    phone.services.register_stream("feed", "huge", huge)
    got: list[int] = []
    with pytest.raises(RemoteError, match="sensor unplugged") as info:
        await drain(laptop.rpc.stream(phone.home.device_id, "feed", "fails", item=int), got)
    assert got == [1]
    assert info.value.remote_type == "ValueError"
    with pytest.raises(PayloadTooLarge, match="smaller pieces"):
        await drain(laptop.rpc.stream(phone.home.device_id, "feed", "huge", item=bytes))
    with pytest.raises(RemoteError, match="is a stream"):
        await laptop.rpc.call(phone.home.device_id, "feed", "fails")
    with pytest.raises(RemoteError, match="not a stream"):
        await drain(laptop.rpc.stream(phone.home.device_id, "device", "info"))
    with pytest.raises(RemoteError, match="not served here") as unknown:
        await drain(laptop.rpc.stream(phone.home.device_id, "nope", "nope"))
    assert unknown.value.remote_type == "UnknownMethod"


async def test_a_silent_stream_times_out(two: tuple[Node, Node]) -> None:
    laptop, phone = two
    stopped = asyncio.Event()

    async def silent(_: None, caller: str) -> AsyncIterator[int]:
        try:
            await asyncio.sleep(3600)
            yield 0
        finally:
            stopped.set()

    phone.services.register_stream("feed", "silent", silent)
    with pytest.raises(CallTimeout, match="no stream item"):
        await drain(laptop.rpc.stream(phone.home.device_id, "feed", "silent", timeout=0.3))
    await asyncio.wait_for(stopped.wait(), 5)  # the timeout cancelled the callee's work


async def test_size_limits_are_typed_and_the_node_keeps_serving(two: tuple[Node, Node]) -> None:
    laptop, phone = two

    async def big(_: None, caller: str) -> bytes:
        return b"x" * (MAX_RESULT + 1)

    phone.services.register("blob", "big", big)
    with pytest.raises(PayloadTooLarge, match="serve it as a stream"):
        await laptop.rpc.call(phone.home.device_id, "blob", "big")
    with pytest.raises(PayloadTooLarge, match="parameters"):
        await laptop.rpc.call(phone.home.device_id, "device", "info", b"x" * (2 * 1024 * 1024))
    info = await laptop.rpc.call(phone.home.device_id, "device", "info", None, dict)
    assert info["name"] == "phone"


async def test_malformed_requests_from_a_member_change_nothing(two: tuple[Node, Node]) -> None:
    """Garbage a member seals on its channel gets a typed InvalidRequest; under the
    circle key (which proves no sender) only the "no channel" hint; unsealed bytes
    nothing. The callee keeps serving."""
    from accord.bus import keys
    from accord.rpc.messages import NO_CHANNEL, result_decoder

    laptop, phone = two
    me, callee = laptop.home.device_id, phone.home.device_id
    key = keys.rpc_key(callee, "device", "info")
    bus = laptop._bus  # the raw transport, to speak outside the client's rules
    channels = laptop._channels
    assert bus is not None
    assert channels is not None
    assert laptop.circle is not None
    assert await channels.ensure(callee)
    junks = (b"", b"\xc1", msgspec.msgpack.encode({"call_id": "x"}), b"\x92" * 10000)
    for junk in junks:
        replies = await bus.get(key, 1.0, payload=laptop.circle.seal(key, junk))
        assert replies == [(key, NO_CHANNEL)]
        frame = channels.seal(callee, key, junk)
        assert frame is not None
        [(_, answer)] = await bus.get(key, 1.0, payload=frame)
        sender, plain = channels.open(key, answer)
        result = result_decoder.decode(plain)
        assert (sender, result.ok, result.error_type) == (callee, False, "InvalidRequest")
    assert me != callee
    assert await bus.get(key, 1.0, payload=b"not even sealed") == []
    info = await laptop.rpc.call(phone.home.device_id, "device", "info", None, dict)
    assert info["name"] == "phone"


async def test_broken_handlers_answer_with_typed_errors(two: tuple[Node, Node]) -> None:
    """A handler that is not async, or fails before its first await, still answers:
    the caller never mistakes it for a vanished device."""
    laptop, phone = two

    def not_async(_: None, caller: str) -> str:
        return "oops"

    def raises_at_once(_: None, caller: str) -> AsyncIterator[int]:
        raise LookupError("no such sensor")

    phone.services.register("bad", "sync", not_async)  # type: ignore[arg-type]
    phone.services.register_stream("bad", "stream", not_async)  # type: ignore[arg-type]
    phone.services.register_stream("bad", "early", raises_at_once)
    with pytest.raises(RemoteError, match="not an async function") as sync:
        await laptop.rpc.call(phone.home.device_id, "bad", "sync")
    assert sync.value.remote_type == "BadHandler"
    with pytest.raises(RemoteError, match="not an async generator"):
        await drain(laptop.rpc.stream(phone.home.device_id, "bad", "stream"))
    with pytest.raises(RemoteError, match="no such sensor") as early:
        await drain(laptop.rpc.stream(phone.home.device_id, "bad", "early"))
    assert early.value.remote_type == "LookupError"


async def test_a_stream_request_the_callee_cannot_read_ends_with_its_typed_refusal(
    two: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callee that cannot read a request answers with a refused RpcResult (it cannot
    tell a stream from a call): the stream ends with that typed error at once, not with
    a protocol error or a timeout."""
    laptop, phone = two

    async def count(params: Count, caller: str) -> AsyncIterator[int]:
        for i in range(params.upto):
            yield i

    phone.services.register_stream("counter", "count", count, Count)
    real = laptop.rpc._request

    def out_of_bounds(params: object, timeout: float, window: int) -> object:
        return msgspec.structs.replace(real(params, timeout, window), timeout_ms=-1)

    monkeypatch.setattr(laptop.rpc, "_request", out_of_bounds)
    stream = laptop.rpc.stream(
        phone.home.device_id, "counter", "count", Count(3), int, timeout=20.0
    )
    with pytest.raises(RemoteError) as refused:
        async with asyncio.timeout(10):
            await drain(stream)
    assert refused.value.remote_type == "InvalidRequest"
