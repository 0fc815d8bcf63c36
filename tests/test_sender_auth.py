"""A member can never call, cancel or silence as another member (issue 12 §1).

The attacker here is a real member node (the tablet): it holds its own identity key
and the circle key, and the test drives its raw transport to send what Accord's own
client never would. The victim is the phone; the target the fridge's thermostat,
which the fridge's owner restricted to the phone.
"""

from __future__ import annotations

import msgspec
import pytest

from accord.bus import keys
from accord.device.identity import raw_id
from accord.errors import PermissionDenied
from accord.hardware.messages import SetpointParams
from accord.node import Node
from accord.rpc.messages import NO_CHANNEL, RpcRequest
from accord.wire.seal import HEADER, MAX_COUNTER, Kind, Sealer, StreamId
from tests.nodes import Mesh, household, sees, wait_until


@pytest.fixture
async def house(mesh: Mesh) -> tuple[Node, Node, Node]:
    phone, tablet, fridge = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("fridge", "midea-fridge")
    )
    fridge.services.restrict("thermostat", {phone.home.device_id})
    return phone, tablet, fridge


def _freezer(fridge: Node) -> float:
    sensors = fridge.hardware._sensors
    assert sensors is not None
    for sp in sensors.setpoints():
        if sp.cabinet == "freezer":
            return float(sp.setpoint_c)
    raise AssertionError("no freezer")


def _set_request(celsius: float, counter_hint: int = 1) -> bytes:
    params = msgspec.msgpack.encode(SetpointParams("freezer", celsius))
    return msgspec.msgpack.encode(RpcRequest(counter_hint, msgspec.Raw(params), 2000))


async def test_the_allow_list_holds_against_a_member(house: tuple[Node, Node, Node]) -> None:
    phone, tablet, fridge = house
    with pytest.raises(PermissionDenied):
        await tablet.rpc.call(fridge.home.device_id, "thermostat", "set",
                              SetpointParams("freezer", -22.0))  # fmt: skip
    await phone.rpc.call(fridge.home.device_id, "thermostat", "set",
                         SetpointParams("freezer", -19.0))  # fmt: skip
    assert _freezer(fridge) == -19.0


async def test_a_member_cannot_call_in_another_members_name(
    house: tuple[Node, Node, Node],
) -> None:
    """The tablet seals a request with the phone's id in the sender field, under the
    circle key it holds (what worked before channels) and as a pairwise frame on a
    session it made up: neither runs."""
    phone, tablet, fridge = house
    before = _freezer(fridge)
    key = keys.rpc_key(fridge.home.device_id, "thermostat", "set")
    bus, circle = tablet._bus, tablet.circle
    assert bus is not None
    assert circle is not None
    as_phone = raw_id(phone.home.device_id)
    forgeries = [
        Sealer(circle.state.circle_key, StreamId(Kind.BROADCAST, as_phone, circle.state.epoch, 7)),
        Sealer(circle.state.circle_key, StreamId(Kind.PAIRWISE, as_phone, 1234, 7)),
        Sealer(b"\x00" * 32, StreamId(Kind.PAIRWISE, as_phone, 1234, 7)),
    ]
    for sealer in forgeries:
        replies = await bus.get(key, 1.0, payload=sealer.seal(key, _set_request(-22.0)))
        assert all(payload == NO_CHANNEL for _, payload in replies)
    assert _freezer(fridge) == before


async def test_a_forged_huge_counter_does_not_silence_the_victim(
    house: tuple[Node, Node, Node],
) -> None:
    """One frame with counter 2^64-1 in the phone's name used to make receivers drop
    the phone's real frames until restart. Only authentic frames move replay state."""
    phone, tablet, fridge = house
    fridge_id = fridge.home.device_id
    await phone.rpc.call(fridge_id, "device", "info")  # the phone's channel is open
    channels = phone._channels
    assert channels is not None
    real = channels.seal(fridge_id, "probe", b"x")
    assert real is not None
    _, _, _, epoch, stream, _ = HEADER.unpack_from(real)
    bus = tablet._bus
    assert bus is not None
    key = keys.rpc_key(fridge_id, "device", "info")
    forged_header = HEADER.pack(1, Kind.PAIRWISE, raw_id(phone.home.device_id), epoch, stream,
                                MAX_COUNTER)  # fmt: skip
    forged = forged_header + b"\x00" * 64
    await bus.get(key, 1.0, payload=forged)
    bus.put(keys.rpc_cancel_key(fridge_id), forged)
    info = await phone.rpc.call(fridge_id, "device", "info", None, dict)
    assert info["name"] == "fridge"
    await phone.rpc.call(fridge_id, "thermostat", "set", SetpointParams("freezer", -21.0))
    assert _freezer(fridge) == -21.0


async def test_an_empty_allow_list_admits_nobody_but_the_device_itself(
    house: tuple[Node, Node, Node],
) -> None:
    phone, _tablet, fridge = house
    fridge.services.restrict("thermostat", set())
    with pytest.raises(PermissionDenied):
        await phone.rpc.call(fridge.home.device_id, "thermostat", "set",
                             SetpointParams("freezer", -22.0))  # fmt: skip
    await fridge.rpc.call(fridge.home.device_id, "thermostat", "set",
                          SetpointParams("freezer", -18.5))  # fmt: skip
    assert _freezer(fridge) == -18.5


async def test_a_member_cannot_cancel_another_members_call(
    house: tuple[Node, Node, Node],
) -> None:
    """Cancels travel on the caller's channel: the tablet, knowing the call id, cannot
    cancel the phone's call by sealing a cancel in the phone's name."""
    import asyncio

    from accord.rpc.messages import RpcCancel

    phone, tablet, fridge = house
    started = asyncio.Event()

    async def slow(_: None, caller: str) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "done"

    fridge.services.register("slow", "work", slow)
    call: asyncio.Future[str] = asyncio.ensure_future(
        phone.rpc.call(fridge.home.device_id, "slow", "work", None, str)
    )
    await started.wait()
    bus, circle = tablet._bus, tablet.circle
    assert bus is not None
    assert circle is not None
    cancel_key = keys.rpc_cancel_key(fridge.home.device_id)
    running = list(fridge.services._running)
    assert running, "the call should be running"
    for _, call_id in running:
        plain = msgspec.msgpack.encode(RpcCancel(call_id))
        sid = StreamId(Kind.BROADCAST, raw_id(phone.home.device_id), circle.state.epoch, 9)
        bus.put(cancel_key, Sealer(circle.state.circle_key, sid).seal(cancel_key, plain))
    assert await call == "done"


async def test_a_captured_request_is_useless_after_the_callee_restarts(
    mesh: Mesh, house: tuple[Node, Node, Node]
) -> None:
    """The attack: an unpaired device captured a sealed thermostat.set and replayed it
    after the fridge restarted, and it ran (replay state lived only in memory). Now
    requests travel on channels that die with the callee's boot."""
    phone, tablet, fridge = house
    fridge_id = fridge.home.device_id
    key = keys.rpc_key(fridge_id, "thermostat", "set")
    channels, bus = phone._channels, phone._bus
    assert channels is not None
    assert bus is not None
    assert await channels.ensure(fridge_id)
    captured = channels.seal(fridge_id, key, _set_request(-23.5))
    assert captured is not None
    assert len(await bus.get(key, 2.0, payload=captured)) == 1
    assert _freezer(fridge) == -23.5
    await fridge.stop()
    fridge = await mesh.start("fridge", "midea-fridge", home=fridge.home)
    await wait_until(lambda: sees(phone, fridge) and sees(tablet, fridge), 5, "fridge back")
    fridge.services.restrict("thermostat", {phone.home.device_id})
    before = _freezer(fridge)
    assert before != -23.5
    for replayer in (tablet, phone):
        assert replayer._bus is not None
        replies = await replayer._bus.get(key, 2.0, payload=captured)
        assert all(payload == NO_CHANNEL for _, payload in replies)
    assert _freezer(fridge) == before
    # The phone's stale channel heals by itself: one "no channel" answer, a new
    # handshake, and the call runs once.
    await phone.rpc.call(fridge_id, "thermostat", "set", SetpointParams("freezer", -20.5))
    assert _freezer(fridge) == -20.5


async def test_replayed_channel_offers_do_not_break_sync_or_calls(
    house: tuple[Node, Node, Node],
) -> None:
    """The attack: an unpaired device replayed captured data-channel offers and kv
    sync between members broke silently until restart. Here the replays go on all
    through the calls and writes, in both directions."""
    import asyncio
    import contextlib

    phone, tablet, fridge = house
    fridge_id = fridge.home.device_id
    assert phone._channels is not None
    await phone.rpc.call(fridge_id, "device", "info")
    offers = [phone._channels.channels.initiate(fridge_id)[1] for _ in range(6)]
    bus = tablet._bus
    assert bus is not None

    async def replay_forever() -> None:
        while True:
            for offer in offers:
                await bus.get(keys.channel_key(fridge_id), 1.0, payload=offer)
            await asyncio.sleep(0.01)

    replayer = asyncio.ensure_future(replay_forever())
    try:
        await asyncio.sleep(0.3)
        for i in range(5):
            info = await phone.rpc.call(fridge_id, "device", "info", None, dict, timeout=2.0)
            assert info["name"] == "fridge", i
        for writer, reader, value in ((phone, fridge, b"milk"), (fridge, phone, b"eggs")):
            await writer.data.open("notes").put(f"from-{writer.name}", value)

            def arrived(reader: Node = reader, writer: Node = writer, value: bytes = value) -> bool:
                stores = reader.data.stores
                return "notes" in stores.names() and (
                    stores.get("notes").get(f"from-{writer.name}") == value
                )

            await wait_until(arrived, 3, f"{writer.name}'s write to reach {reader.name}")
    finally:
        replayer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replayer
