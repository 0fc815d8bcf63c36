"""Tombstone collection, step by step: a tombstone goes only once every member that
shares the store has acknowledged a version that includes it. Stale acknowledgements
(made before the delete), members whose level is not known yet and members that join
after the delete all hold it back. Sans-IO replicas, messages moved by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import Replica, StaticPeers
from accord.data.loopback import deliver_all, device_id, pull
from accord.trust.levels import DataLabel

A, B, C, D = (device_id(i) for i in range(4))


class House:
    """Replicas of one store in memory, one wall clock, no grace period."""

    def __init__(self, peers: StaticPeers, label: DataLabel = "S1") -> None:
        self.clock = ManualClock()
        self.peers = peers
        self.label: DataLabel = label
        self.r: dict[str, Replica] = {}

    def add(self, device: str) -> Replica:
        self.r[device] = Replica.open(
            None,
            name="s",
            device_id=device,
            hlc=HybridClock(self.clock),
            peers=self.peers,
            label=self.label,
            tombstone_grace_s=0.0,
        )
        return self.r[device]

    def push(self, src: str, *dsts: str) -> None:
        for push in self.r[src].take_pushes():
            for dst in dsts:
                deliver_all(self.r, [(src, dst, push)])

    def ack(self, src: str, dst: str) -> None:
        """``src`` tells ``dst`` what it has (a summary); ``dst`` acts on nothing else."""
        self.r[dst].receive(src, self.r[src].summary())

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def house() -> Iterator[House]:
    h = House(StaticPeers([A, B, C]))
    for d in (A, B, C):
        h.add(d)
    yield h
    h.close()


def _deleted_on_a(h: House, *to: str) -> Replica:
    """A writes k, everyone has it and says so; then A deletes k and pushes to ``to``."""
    a = h.r[A]
    a.put("k", b"v")
    h.push(A, *(d for d in h.r if d != A))
    for d in h.r:
        if d != A:
            h.ack(d, A)  # acknowledgements from before the delete
    a.delete("k")
    h.push(A, *to)
    h.clock.advance(1)
    assert a.tombstones() == 1
    return a


def test_acknowledgements_from_before_the_delete_do_not_count(house: House) -> None:
    a = _deleted_on_a(house, B, C)
    assert a.collect_garbage() == 0  # B and C acknowledged, but only the write
    assert a.tombstones() == 1


def test_every_member_must_acknowledge_the_delete(house: House) -> None:
    a = _deleted_on_a(house, B)
    house.ack(B, A)
    assert a.collect_garbage() == 0  # B has the delete; C has not even seen it
    house.ack(B, A)  # B saying it again changes nothing
    assert a.collect_garbage() == 0
    pull(house.r, C, A)
    assert house.r[C].tombstones() == 1
    house.ack(C, A)
    assert a.collect_garbage() == 1
    assert a.tombstones() == 0
    assert a.get("k") is None


def test_an_acknowledgement_in_a_pull_counts(house: House) -> None:
    a = _deleted_on_a(house, B, C)
    house.ack(B, A)
    assert a.collect_garbage() == 0
    deliver_all(house.r, [(C, A, house.r[C].pull_from(A))])  # C asks for more: its vv acks
    assert a.collect_garbage() == 1


def test_a_member_whose_level_is_not_known_yet_is_waited_for() -> None:
    # C is a member, but its announcement (and so its level) has not arrived yet.
    h = House(StaticPeers([A, B, C], {A: "SL5", B: "SL5"}, default_level=None))
    try:
        for d in (A, B, C):
            h.add(d)
        a = h.r[A]
        a.put("k", b"v")
        a.delete("k")
        h.push(A, B)
        h.ack(B, A)
        h.clock.advance(1)
        assert not a.may_share(C)  # nothing goes to C yet...
        assert a.collect_garbage() == 0  # ...but it may still hold the old value
        h.peers.add(C, "SL5")  # its level arrives
        pull(h.r, C, A)
        assert a.collect_garbage() == 1
    finally:
        h.close()


def test_a_member_that_may_not_hold_the_store_is_not_waited_for() -> None:
    h = House(StaticPeers([A, B, C], {A: "SL5", B: "SL5", C: "SL1"}), label="S3")
    try:
        for d in (A, B, C):
            h.add(d)
        a = h.r[A]
        a.put("k", b"v")
        a.delete("k")
        h.push(A, B)
        h.ack(B, A)
        h.clock.advance(1)
        assert a.participants() == [B]
        assert a.collect_garbage() == 1  # C (SL1) never holds S3 data: nothing to wait for
    finally:
        h.close()


def test_a_member_that_joins_after_the_delete_is_waited_for(house: House) -> None:
    a = _deleted_on_a(house, B, C)
    house.ack(B, A)
    house.ack(C, A)
    house.peers.add(D)  # a new member, before A collected
    house.add(D)
    assert a.collect_garbage() == 0
    pull(house.r, D, A)  # D catches up, tombstone included, and acknowledges
    assert house.r[D].get("k") is None
    assert a.collect_garbage() == 1


def test_a_revoked_member_is_no_longer_waited_for(house: House) -> None:
    a = _deleted_on_a(house, B, C)
    house.ack(B, A)
    house.peers.revoke(C)  # C leaves: only B is left to wait for
    assert a.participants() == [B]
    assert a.collect_garbage() == 1
