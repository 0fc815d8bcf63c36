"""Provenance of writes (issue 12 §2): a member relaying rows in a catch-up cannot
write, or advance a version, in another member's name.

The attack: a member answered a catch-up pull with rows credited to the phone and
claimed the phone's version was 10^9; the phone's rows were overwritten and its
later real writes ignored. Pure: replicas in memory with real identities.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.clock import Hlc, HybridClock, ManualClock
from accord.data import Page, Replica, StaticPeers
from accord.data import provenance as pv
from accord.data.loopback import deliver_all, pull
from accord.data.model import DATA_VERSION, Group, Op, Pull, Push
from accord.device.identity import Identity
from accord.errors import ForgedOrigin

PHONE, TABLET, FRIDGE = Identity.generate(), Identity.generate(), Identity.generate()
IDS = {i.device_id: i for i in (PHONE, TABLET, FRIDGE)}


class House:
    """Replicas of store "bank" in memory, one per identity, on one manual clock."""

    def __init__(self, ids: Mapping[str, Identity] = IDS) -> None:
        self.clock = ManualClock()
        self.peers = StaticPeers(ids, keys={d: i.public_bytes for d, i in ids.items()})
        self.r = {
            d: Replica.open(
                None,
                name="bank",
                device_id=d,
                hlc=HybridClock(self.clock),
                peers=self.peers,
                signer=ident.sign,
            )
            for d, ident in ids.items()
        }

    def push(self, src: str, *dsts: str) -> None:
        for p in self.r[src].take_pushes():
            for dst in dsts:
                deliver_all(self.r, [(src, dst, p)])

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def house() -> Iterator[House]:
    h = House()
    yield h
    h.close()


P, T, F = PHONE.device_id, TABLET.device_id, FRIDGE.device_id


def test_rows_relayed_with_their_origins_proof_are_taken(house: House) -> None:
    """The phone writes while the tablet is away; the fridge relays it later."""
    house.r[P].put("balance", b"62")
    with house.r[P].batch() as b:
        for i in range(5):
            b.put(f"k{i}", str(i).encode())
    house.push(P, F)
    pull(house.r, T, F)  # the phone is offline: the fridge relays its rows
    assert house.r[T].get("balance") == b"62"
    assert house.r[T].get("k3") == b"3"
    assert house.r[T].version_vector()[P] == 2


def _forged_page(house: House, groups: tuple[Group, ...], vv: dict[str, int]) -> Page:
    pull_msg = house.r[T].pull_from(F)
    return Page(
        DATA_VERSION, "bank", pull_msg.session, house.r[F].epoch, 0, 1, True, vv, (P,), groups
    )


def test_a_member_cannot_rewrite_the_phones_rows_or_version(house: House) -> None:
    house.r[P].put("balance", b"62")
    house.push(P, T, F)
    # What the fridge relays honestly: the phone's row with the phone's proof.
    honest = house.r[F].receive(T, Pull(DATA_VERSION, "bank", {}, 99))[0]
    assert isinstance(honest, Page)
    (real,) = honest.groups
    assert real.proof is not None
    later = Hlc(real.hlc.wall_ms + 10_000, 0)
    ops = (Op("balance", b"0"),)
    root = pv.root([pv.leaf("", "balance", b"0")])
    by_fridge = FRIDGE.sign(pv.message("bank", P, 10**9, later, 1, root))
    forged = [
        Group(0, 10**9, later, ops),  # no proof at all
        Group(0, 10**9, later, ops, real.proof),  # the phone's proof, on other rows
        Group(0, 10**9, later, ops, pv.GroupProof(by_fridge, 1)),  # signed by the fridge
    ]
    for group in forged:
        page = _forged_page(house, (group,), {P: 10**9, F: 0})
        deliver_all(house.r, [(F, T, page)])
        assert house.r[T].get("balance") == b"62"
        assert house.r[T].version_vector()[P] == 1  # the claim went no further than proof
    house.r[P].put("balance", b"63")  # the phone's next real write is not ignored
    house.push(P, T)
    assert house.r[T].get("balance") == b"63"


def test_a_push_is_its_senders_own_and_its_signature_counts_only_when_relayed(
    house: House,
) -> None:
    """A push carries only its sender's own batches, which the sender's channel
    authenticates (as it does the sender's own rows in a catch-up page): a batch in
    another member's name is refused; the sender's own batch is taken even with a
    signature that does not verify, and that signature only makes the members its
    rows are relayed to refuse them (and not believe the relay's claim for it)."""
    house.r[P].put("balance", b"62")
    [push] = house.r[P].take_pushes()
    batch = push.batches[0]
    with pytest.raises(ForgedOrigin):  # the fridge passing the phone's batch off as a push
        house.r[T].receive(F, Push(DATA_VERSION, "bank", (batch,)))
    assert house.r[T].get("balance") is None
    bad = msgspec.structs.replace(batch, sig=FRIDGE.sign(b"anything"))
    house.r[T].receive(P, Push(DATA_VERSION, "bank", (bad,)))  # from the phone itself
    assert house.r[T].get("balance") == b"62"
    pull(house.r, F, T)  # relayed by the tablet: refused, the phone's version not claimed
    assert house.r[F].get("balance") is None
    assert house.r[F].version_vector().get(P, 0) == 0


def test_the_senders_own_rows_need_no_relay_proof(house: House) -> None:
    """A member's own writes come on its own channel: its catch-up answer is believed,
    its version claim for itself too, even with a proof that does not fit; that proof
    only makes the members we relay them to refuse them."""
    for i in range(3):
        house.r[F].put(f"door{i}", b"open")
    pull(house.r, T, F)
    assert house.r[T].version_vector()[F] == 3
    house.r[F].put("door9", b"ajar")
    page = house.r[F].receive(P, Pull(DATA_VERSION, "bank", {F: 3}, 99))[0]
    assert isinstance(page, Page)
    (group,) = page.groups
    assert group.proof is not None
    bogus = msgspec.structs.replace(group.proof, sig=bytes(64), hashes=(bytes(32),))
    page = msgspec.structs.replace(
        page,
        session=house.r[T].pull_from(F).session,
        groups=(msgspec.structs.replace(group, proof=bogus),),
    )
    deliver_all(house.r, [(F, T, page)])
    assert house.r[T].get("door9") == b"ajar"  # from its origin: taken
    pull(house.r, P, T)  # relayed by the tablet: refused, the fridge's version not claimed
    assert house.r[P].get("door0") == b"open"
    assert house.r[P].get("door9") is None


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 40), st.data())
def test_every_leaf_proves_into_its_root_and_nothing_else_does(n: int, data: st.DataObject) -> None:
    leaves = [pv.leaf("", f"k{i}", bytes([i])) for i in range(n)]
    root, paths = pv.tree(leaves)
    for i in range(n):
        assert pv.root_from(leaves[i], n, i, paths[i]) == root
    i = data.draw(st.integers(0, n - 1))
    if n > 1:
        assert pv.root_from(leaves[i], n, (i + 1) % n, paths[i]) != root
    assert pv.root_from(pv.leaf("", "other", b""), n, i, paths[i]) != root
    assert pv.root_from(leaves[i], n, i, paths[i] + b"\0" * 32) is None


@settings(deadline=None, max_examples=200)
@given(st.integers(-5, 70), st.integers(-5, 70), st.binary(max_size=200))
def test_any_proof_fields_fold_or_give_none(n: int, index: int, path: bytes) -> None:
    result = pv.root_from(b"\0" * 32, n, index, path)
    assert result is None or len(result) == 32


def test_part_of_a_batch_is_relayed_with_a_multiproof_and_checked(house: House) -> None:
    """Two of a batch's five rows are overwritten later: the fridge relays the three
    that still win with a multiproof; the tablet checks it, and a doctored hash or a
    missing one makes it refuse the group."""
    with house.r[P].batch() as b:
        for i in range(5):
            b.put(f"k{i}", b"first")
    with house.r[P].batch() as b:
        b.put("k1", b"second")
        b.put("k3", b"second")
    house.push(P, F)
    honest = house.r[F].receive(T, Pull(DATA_VERSION, "bank", {}, 99))[0]
    assert isinstance(honest, Page)
    partial = next(g for g in honest.groups if g.seq == 1)
    assert partial.proof is not None
    assert sorted(partial.proof.index) == [0, 2, 4]
    assert partial.proof.hashes  # the overwritten rows' places, as hashes
    bad_hash = msgspec.structs.replace(partial.proof, hashes=(bytes(32), *partial.proof.hashes[1:]))
    short = msgspec.structs.replace(partial.proof, hashes=partial.proof.hashes[1:])
    for proof in (bad_hash, short):
        forged = msgspec.structs.replace(partial, proof=proof)
        deliver_all(house.r, [(F, T, _forged_page(house, (forged,), {P: 1, F: 0}))])
        assert house.r[T].get("k0") is None
    pull(house.r, T, F)
    assert [house.r[T].get(f"k{i}") for i in range(5)] == [
        b"first",
        b"second",
        b"first",
        b"second",
        b"first",
    ]
    assert house.r[T].version_vector()[P] == 2


def test_relayed_rows_can_be_relayed_again(house: House) -> None:
    """The tablet got the phone's rows from the fridge; a fourth device gets them from
    the tablet: what the tablet kept of the proof is enough to prove them again."""
    tv = Identity.generate()
    ids = dict(IDS)
    ids[tv.device_id] = tv
    house.peers = StaticPeers(ids, keys={d: i.public_bytes for d, i in ids.items()})
    for replica in house.r.values():
        replica._peers = house.peers  # the circle grew
    house.r[tv.device_id] = Replica.open(
        None,
        name="bank",
        device_id=tv.device_id,
        hlc=HybridClock(house.clock),
        peers=house.peers,
        signer=tv.sign,
    )
    with house.r[P].batch() as b:
        for i in range(6):
            b.put(f"k{i}", b"v")
    house.r[P].put("k2", b"newer")
    house.push(P, F)
    pull(house.r, T, F)
    pull(house.r, tv.device_id, T)
    assert house.r[tv.device_id].scan() == house.r[P].scan()
    assert house.r[tv.device_id].version_vector()[P] == 2
