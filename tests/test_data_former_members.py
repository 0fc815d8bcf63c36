"""Writes outlive their writer's membership (issue 13 item 4).

A write a member made while it belonged stays valid for every current and future
member, proven by its origin's signature; writes dated after it left are refused by
everyone that had not taken them yet. Pure replicas first, then real nodes: the
scenario of the issue (the tablet pairs after the fridge was revoked and never got
what the fridge had written).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import Replica, StaticPeers
from accord.data.loopback import deliver_all, pull
from accord.device.identity import Identity
from accord.errors import PeerNotAllowed
from accord.node import Node
from tests.nodes import Mesh, household, pair, wait_until

PHONE, FRIDGE, TABLET = Identity.generate(), Identity.generate(), Identity.generate()
P, F, T = PHONE.device_id, FRIDGE.device_id, TABLET.device_id


class House:
    def __init__(self) -> None:
        self.clock = ManualClock()
        keys = {i.device_id: i.public_bytes for i in (PHONE, FRIDGE, TABLET)}
        self.peers = StaticPeers([P, F], keys=keys)
        self.r = {
            i.device_id: Replica.open(
                None,
                name="notes",
                device_id=i.device_id,
                hlc=HybridClock(self.clock),
                peers=self.peers,
                signer=i.sign,
            )
            for i in (PHONE, FRIDGE, TABLET)
        }

    def push(self, src: str, dst: str) -> None:
        for p in self.r[src].take_pushes():
            deliver_all(self.r, [(src, dst, p)])

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def house() -> Iterator[House]:
    h = House()
    yield h
    h.close()


def test_a_former_members_earlier_writes_reach_a_later_joiner(house: House) -> None:
    house.r[F].put("door", b"closed")
    house.push(F, P)
    house.clock.advance(5.0)
    house.r[F].put("late", b"after")  # made after the revocation below is dated
    late_push = house.r[F].take_pushes()
    revoked_at = house.clock.wall() - 1.0
    house.peers.revoke(F, at=revoked_at)
    # A member that had not heard of the revocation took the late write anyway...
    house.peers.add(F)
    for p in late_push:
        deliver_all(house.r, [(F, P, p)])
    house.peers.revoke(F, at=revoked_at)
    assert house.r[P].get("late") == b"after"
    # ...but a device that joins later takes only what the fridge wrote as a member.
    house.peers.add(T)
    pull(house.r, T, P)
    assert house.r[T].get("door") == b"closed"
    assert house.r[T].get("late") is None


def test_a_former_member_cannot_push_any_more(house: House) -> None:
    house.peers.revoke(F, at=house.clock.wall())
    house.clock.advance(1.0)
    house.r[F].put("door", b"open")
    [push] = house.r[F].take_pushes()
    with pytest.raises(PeerNotAllowed, match="not a member"):
        house.r[P].receive(F, push)
    assert house.r[P].get("door") is None


async def test_a_tablet_that_pairs_after_the_fridge_was_revoked_gets_its_writes(
    mesh: Mesh,
) -> None:
    phone, fridge = await household(mesh, ("phone", "nokia-x60"), ("fridge", "midea-fridge"))
    await fridge.data.open("notes").put("door", b"closed")

    def phone_has(key: str, value: bytes) -> bool:
        stores = phone.data.stores
        return "notes" in stores.names() and stores.get("notes").get(key) == value

    await wait_until(lambda: phone_has("door", b"closed"), 5, "the fridge's write")
    await phone.trust.trust_revoke({"device": "fridge"})
    tablet = await mesh.start("tablet", "tablet")
    await pair(phone, tablet)

    def tablet_has() -> bool:
        stores = tablet.data.stores
        return "notes" in stores.names() and stores.get("notes").get("door") == b"closed"

    await wait_until(tablet_has, 10, "the revoked fridge's earlier write to reach the tablet")
    assert _members(tablet) == _members(phone)


def _members(node: Node) -> set[str]:
    assert node.circle is not None
    return {m.device_id for m in node.circle.members.active()}
