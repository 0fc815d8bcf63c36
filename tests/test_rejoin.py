"""Leaving is reversible (issue 13 §2): membership has incarnations.

A device that left or was revoked is admitted again by a new PIN pairing, with its
same identity; its old admissions stay revoked. A revocation proof revokes the
admissions of its device dated no later than it; a device is active iff it holds a
record admitted after its latest proof. Pure member-list tests, then in-process
nodes on real Zenoh.
"""

from __future__ import annotations

import contextlib
import itertools
from functools import partial

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import TrustError
from accord.node import Node
from accord.trust.members import RECORD_CONTEXT, MemberList, accept, add, adopt, merge, revoke, sign
from tests.nodes import Mesh, circle_of, detailed, household, pair, sees, wait_until
from tests.test_members import IDS, circle, member

D1 = IDS[1].device_id
WAIT = 10.0


def _left_and_back() -> tuple[MemberList, MemberList, MemberList]:
    """Device 1 admitted at 1, leaves at 5, admitted again at 10: the three copies."""
    first = circle(1)
    left = revoke(first, D1, IDS[1], at=5.0)
    back = add(left, member(1, at=10.0))
    return first, left, back


def test_a_device_that_left_is_admitted_again_with_its_identity() -> None:
    first, left, back = _left_and_back()
    assert first.is_member(D1)
    assert not left.is_member(D1)
    assert D1 in left.revoked
    assert back.is_member(D1)
    assert D1 not in back.revoked
    record = back.member(D1)
    assert record is not None
    assert record.added_at == 10.0
    assert [m.device_id for m in back.active()].count(D1) == 1
    assert back.revocations == left.revocations  # the proof stays: it revokes the old one
    # ... and is revoked again, by a member this time.
    again = revoke(back, D1, IDS[0], at=20.0)
    assert not again.is_member(D1)
    assert len(again.revocations) == 2


def test_an_old_record_replayed_or_merged_does_not_reactivate() -> None:
    first, _, back = _left_and_back()
    again = revoke(back, D1, IDS[0], at=20.0)
    for stale in (first, back):  # copies holding an earlier incarnation only
        assert not merge(again, stale).is_member(D1)
        assert not merge(stale, again).is_member(D1)
        # Signed and sent by a member: the same.
        assert not accept(sign(stale, IDS[0]), again).is_member(D1)
    # A copy that never heard of the leave takes the host's copy: the new incarnation.
    taken = accept(sign(back, IDS[0]), first)
    assert taken.is_member(D1)
    assert taken.member(D1) == back.member(D1)
    assert taken == back


def test_a_copy_that_missed_the_leave_takes_a_renamed_new_incarnation() -> None:
    """The TV was renamed between its incarnations; a member that never heard it
    left takes the proof and the new record from the same copy."""
    first, left, _ = _left_and_back()
    renamed = msgspec.structs.replace(member(1, at=10.0), name="Living-room TV", signature=b"")
    renamed = msgspec.structs.replace(
        renamed, signature=IDS[0].sign(RECORD_CONTEXT + renamed.signed_bytes())
    )
    back = add(left, renamed)
    taken = accept(sign(back, IDS[0]), first)
    record = taken.member(D1)
    assert record is not None
    assert record.name == "Living-room TV"
    assert taken == back


def test_a_revoked_device_cannot_be_admitted_before_its_revocation() -> None:
    _, left, _ = _left_and_back()
    with pytest.raises(TrustError, match="check the clocks"):
        add(left, member(1, at=5.0))
    with pytest.raises(TrustError, match="check the clocks"):
        add(left, member(1, at=3.0))


def test_a_revocation_dated_before_the_admission_still_revokes_it() -> None:
    """The revoker's clock is behind the host's: the proof is dated at the admission."""
    ml = circle()
    ml = add(ml, member(1, at=100.0))
    out = revoke(ml, D1, IDS[0], at=50.0)
    assert not out.is_member(D1)
    assert out.revocations[0].at == 100.0


def test_a_revocation_only_made_locally_is_for_good() -> None:
    ml = revoke(circle(1), D1)  # no proof: nothing could undo it
    with pytest.raises(TrustError, match="new identity"):
        add(ml, member(1, at=50.0))


def test_a_joiner_adopts_the_list_that_readmits_it() -> None:
    _, _, back = _left_and_back()
    adopted = adopt(sign(back, IDS[0]), IDS[0].public_bytes)
    assert adopted.is_member(D1)


# -- convergence -------------------------------------------------------------------

ops = st.lists(
    st.tuples(st.sampled_from(["add", "revoke"]), st.integers(1, 3), st.integers(0, 8)),
    max_size=10,
)


def _apply(ml: MemberList, script: list[tuple[str, int, int]]) -> MemberList:
    for op, i, at in script:
        with contextlib.suppress(TrustError):
            if op == "add":
                ml = add(ml, member(i, at=float(at)))
            else:
                ml = revoke(ml, IDS[i].device_id, IDS[0], at=float(at))
    return ml


def _rule(ml: MemberList) -> set[str]:
    """The rule, from scratch: a record admitted after the latest proof."""
    out = set()
    for m in ml.members:
        proofs = [r.at for r in ml.revocations if r.device_id == m.device_id]
        if not proofs or m.added_at > max(proofs):
            out.add(m.device_id)
    return out


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(ops, ops, ops)
def test_merge_with_readmissions_is_a_semilattice(
    a: list[tuple[str, int, int]],
    b: list[tuple[str, int, int]],
    c: list[tuple[str, int, int]],
) -> None:
    x, y, z = (_apply(circle(), s) for s in (a, b, c))
    assert merge(x, y) == merge(y, x)
    assert merge(merge(x, y), z) == merge(x, merge(y, z))
    assert merge(x, x) == x
    xyz = merge(merge(x, y), z)
    for p in itertools.permutations([x, y, z]):
        assert merge(merge(p[0], p[1]), p[2]) == xyz
    for ml in (x, y, z, xyz):
        assert {m.device_id for m in ml.active()} == _rule(ml)
        assert set(ml.revoked) == {m.device_id for m in ml.members} - _rule(ml)


# -- in-process nodes ------------------------------------------------------------


def _member_everywhere(nodes: list[Node], device_id: str) -> bool:
    return all(circle_of(n).is_member(device_id) for n in nodes if n.home.device_id != device_id)


async def _kv_and_calls_work(nodes: list[Node], writer: Node, store: str) -> None:
    """A write by ``writer`` reaches every other node; every node calls it and it
    calls every node."""
    await writer.data.open(store).put("k", writer.name.encode())

    def has(node: Node) -> bool:
        try:
            return node.data.stores.get(store).get("k") == writer.name.encode()
        except Exception:
            return False

    for node in nodes:
        await wait_until(partial(has, node), WAIT, f"{node.name} to hold {writer.name}'s write")
    for node in nodes:
        if node is not writer:
            await node.rpc.call(writer.home.device_id, "device", "info", timeout=5.0)
            await writer.rpc.call(node.home.device_id, "device", "info", timeout=5.0)


async def test_the_tv_leaves_and_pairs_again_and_a_revoked_fridge_too(mesh: Mesh) -> None:
    phone, tablet, tv, fridge = nodes = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("tv", "tv"),
        ("fridge", "midea-fridge"),
    )  # fmt: skip
    circle_id = circle_of(phone).members.circle_id
    tv_id, fridge_id = tv.home.device_id, fridge.home.device_id

    # The TV leaves: nobody lists it any more.
    await tv.trust.trust_leave({})
    others = (phone, tablet, fridge)
    await wait_until(lambda: not any(circle_of(n).is_member(tv_id) for n in others), WAIT,
                     "everyone to see the tv gone")  # fmt: skip
    assert circle_of(tv).members.circle_id != circle_id

    # It pairs again, same identity, with a new PIN from the tablet.
    await wait_until(lambda: sees(tv, tablet), WAIT, "tv to see the tablet")
    await pair(tablet, tv)
    assert tv.home.device_id == tv_id
    assert circle_of(tv).members.circle_id == circle_id
    assert circle_of(tv).membership() == "member"
    await wait_until(lambda: _member_everywhere(nodes, tv_id), WAIT, "tv a member everywhere")
    for n in nodes:
        listed = await n.trust.trust_list({})
        assert tv_id in [m["device_id"] for m in listed["members"]], n.name
        assert tv_id not in listed["revoked"]
    for n in nodes:
        if n is not tv:
            await wait_until(detailed(n, tv), WAIT, f"{n.name} to hold the tv's details")
    await _kv_and_calls_work(nodes, tv, "after-rejoin")

    # The phone revokes the fridge; it learns it; the phone pairs it again.
    await phone.trust.trust_revoke({"device": "fridge"})
    assert circle_of(fridge).membership() == "revoked"
    old_proof = circle_of(fridge).removal()
    assert old_proof is not None
    await wait_until(lambda: not any(circle_of(n).is_member(fridge_id) for n in nodes), WAIT,
                     "everyone to see the fridge revoked")  # fmt: skip
    await pair(phone, fridge)
    assert circle_of(fridge).membership() == "member"
    assert circle_of(fridge).removal() is None
    assert (await fridge._status({}))["membership"] == "member"
    # The notice of its earlier removal, replayed, revokes nothing now.
    assert not circle_of(fridge).learn_revocation(circle_id, old_proof)
    assert circle_of(fridge).membership() == "member"
    await wait_until(lambda: _member_everywhere(nodes, fridge_id), WAIT, "fridge back everywhere")
    assert len(circle_of(phone).members.revocations) == 2  # the old admissions stay revoked
    for n in nodes:
        if n is not fridge:
            await wait_until(detailed(n, fridge), WAIT, f"{n.name} to hold the fridge's details")
    await _kv_and_calls_work(nodes, fridge, "fridge-back")
    await _kv_and_calls_work(nodes, phone, "phone-after")
