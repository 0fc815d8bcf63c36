"""The clipboard against a hostile member (pure board, then in-process nodes): no
member announces in another's name, a flood holds one item per member, expiry is
the receiver's own clock, and a sensitive item is never served to an SL1 device."""

from __future__ import annotations

import pytest

from accord.continuity.clipboard.board import ClipBoard
from accord.continuity.clipboard.messages import Announced, ClipItem, FetchParams
from accord.continuity.errors import ClipboardError
from accord.errors import RemoteError
from accord.node import Node
from tests.nodes import Mesh, household


def _item(origin: str, n: int, created: float = 100.0, ttl: float = 120.0) -> ClipItem:
    return ClipItem(f"{origin}:{n}", origin, "text", 5, created, ttl)


def test_a_member_speaks_only_for_itself() -> None:
    board = ClipBoard("me")
    with pytest.raises(ClipboardError, match="origin must be"):
        board.take(_item("alice", 1), "mallory", now=0)
    with pytest.raises(ClipboardError, match="origin must be"):
        board.take(ClipItem("alice:1", "mallory", "text", 1, 1.0, 1.0), "mallory", now=0)


def test_a_flood_holds_one_item_per_member_and_repeats_change_nothing() -> None:
    board = ClipBoard("me")
    for n in range(1000):
        assert board.take(_item("mallory", n, created=100.0 + n), "mallory", now=0)
    assert not board.take(_item("mallory", 999, created=1099.0), "mallory", now=0)  # repeat
    assert not board.take(_item("mallory", 5, created=1.0), "mallory", now=0)  # older
    assert len(board.items(now=0)) == 1


def test_expiry_runs_on_the_receivers_clock() -> None:
    board = ClipBoard("me")
    board.take(_item("alice", 1, created=1e12, ttl=60), "alice", now=10.0)  # a clock far ahead
    assert board.latest(now=69.0) is not None
    assert board.latest(now=70.5) is None


async def _fetch(caller: Node, origin: Node, item_id: str) -> bytes:
    stream = caller.rpc.stream(origin.home.device_id, "clip", "fetch", FetchParams(item_id), bytes)
    async with stream:
        return b"".join([c async for c in stream])


@pytest.fixture
async def three(mesh: Mesh) -> list[Node]:
    return await household(
        mesh, ("laptop", "laptop"), ("phone", "nokia-x60"), ("fridge", "midea-fridge")
    )


async def test_forged_announcements_and_fetches_are_refused(three: list[Node]) -> None:
    laptop, phone, fridge = three
    forged = _item(phone.home.device_id, 1)  # the fridge claims the phone copied this
    with pytest.raises(RemoteError, match="origin must be"):
        await fridge.rpc.call(laptop.home.device_id, "clip", "announce", forged, Announced)
    secret = await phone.continuity.clip.copy(b"pin 4711", "text", "", sensitive=True)
    assert secret["announced_to"] == ["laptop"]
    with pytest.raises(RemoteError, match="your level may not hold it"):
        await _fetch(fridge, phone, secret["item"]["id"])
    with pytest.raises(RemoteError, match="not on this device's clipboard"):
        await _fetch(laptop, phone, "x:1")
    # A sensitive item pushed at the fridge anyway is not taken.
    pushed = ClipItem(
        f"{laptop.home.device_id}:7", laptop.home.device_id, "text", 3, 1.0, 9.0, "S3"
    )
    res = await laptop.rpc.call(fridge.home.device_id, "clip", "announce", pushed, Announced)
    assert not res.taken
    assert fridge.continuity.clip.items() == []
    # The laptop still pastes the phone's copy.
    item, chunks = await laptop.continuity.clip.paste(None)
    assert item.label == "S3"
    assert b"".join([c async for c in chunks]) == b"pin 4711"
