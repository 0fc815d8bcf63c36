"""The circle's member list: a signed two-phase set that converges in any order."""

from __future__ import annotations

import contextlib
import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.device.identity import Identity
from accord.errors import TrustError
from accord.trust.members import (
    RECORD_CONTEXT,
    REVOCATION_CONTEXT,
    Member,
    MemberList,
    Revocation,
    SignedList,
    accept,
    add,
    adopt,
    level_rank,
    merge,
    new_circle,
    raise_level,
    revoke,
    sign,
    vouch,
)

IDS = [Identity.generate() for _ in range(6)]


def member(i: int, added_by: int = 0, at: float = 1.0, level: str = "SL3") -> Member:
    """Device i's record, vouched for (signed) by device ``added_by`` at SL3; the
    founder's own record (i == added_by) is self-made and unsigned."""
    ident = IDS[i]
    if i == added_by:
        return Member(
            device_id=ident.device_id,
            public_key=ident.public_bytes,
            name=f"device {i}",
            type="phone",
            security_level=level,
            added_by=ident.device_id,
            added_at=at,
        )
    return vouch(
        IDS[added_by],
        device_id=ident.device_id,
        public_key=ident.public_bytes,
        name=f"device {i}",
        type_="phone",
        declared_level=level,
        voucher_level="SL3",
        at=at,
    )


def circle(*indices: int) -> MemberList:
    ml = new_circle(member(0), "circle-1")
    for i in indices:
        ml = add(ml, member(i))
    return ml


def test_add_and_revoke() -> None:
    ml = circle(1, 2)
    assert [m.device_id for m in ml.active()] == sorted(IDS[i].device_id for i in range(3))
    ml = revoke(ml, IDS[1].device_id)
    assert not ml.is_member(IDS[1].device_id)
    assert ml.is_member(IDS[2].device_id)
    with pytest.raises(TrustError, match="new identity"):
        add(ml, member(1))
    with pytest.raises(TrustError, match="not a member"):
        revoke(ml, IDS[5].device_id)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "revoke"]), st.integers(1, 5), st.floats(0, 10)),
    max_size=12,
)


def _apply(ml: MemberList, script: list[tuple[str, int, float]]) -> MemberList:
    for op, i, at in script:
        with contextlib.suppress(TrustError):
            ml = add(ml, member(i, at=at)) if op == "add" else revoke(ml, IDS[i].device_id)
    return ml


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(ops, ops, ops)
def test_merge_is_commutative_associative_idempotent(
    a: list[tuple[str, int, float]],
    b: list[tuple[str, int, float]],
    c: list[tuple[str, int, float]],
) -> None:
    x, y, z = (_apply(circle(), s) for s in (a, b, c))
    assert merge(x, y) == merge(y, x)
    assert merge(merge(x, y), z) == merge(x, merge(y, z))
    assert merge(x, x) == x
    for p in itertools.permutations([x, y, z]):
        assert merge(merge(p[0], p[1]), p[2]) == merge(merge(x, y), z)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(ops, ops)
def test_a_revocation_survives_every_merge(
    a: list[tuple[str, int, float]], b: list[tuple[str, int, float]]
) -> None:
    target = IDS[3].device_id
    x = _apply(circle(3), a)
    if x.is_member(target):
        x = revoke(x, target)
    y = _apply(circle(3), b)  # a copy that never heard of the revocation
    assert target in x.revoked
    assert not merge(x, y).is_member(target)
    assert not merge(y, x).is_member(target)


def test_accept_merges_a_copy_signed_by_a_member() -> None:
    mine = circle(1)
    theirs = add(circle(1), member(2, added_by=1))
    merged = accept(sign(theirs, IDS[1]), mine)
    assert merged.is_member(IDS[2].device_id)


def test_stranger_cannot_add_anyone() -> None:
    mine = circle(1)
    evil = add(circle(1), member(4))
    with pytest.raises(TrustError, match="not a member"):
        accept(sign(evil, IDS[5]), mine)


def test_revoked_device_cannot_add_anyone() -> None:
    mine = revoke(circle(1, 2), IDS[2].device_id)
    evil = add(circle(1, 2), member(4, added_by=2))
    with pytest.raises(TrustError, match="not a member"):
        accept(sign(evil, IDS[2]), mine)


def test_tampered_or_forged_lists_are_refused() -> None:
    mine = circle(1)
    signed = sign(add(circle(1), member(3)), IDS[1])
    tampered = SignedList(
        signed.body[:-1] + bytes([signed.body[-1] ^ 1]), signed.signer, signed.signature
    )
    with pytest.raises(TrustError, match="does not verify"):
        accept(tampered, mine)
    forged_member = Member(
        device_id=IDS[4].device_id,
        public_key=IDS[5].public_bytes,
        name="x",
        type="tv",
        security_level="SL1",
        added_by=IDS[1].device_id,
        added_at=1.0,
    )
    merged = accept(sign(add(circle(1), forged_member), IDS[1]), mine)
    assert not merged.is_member(IDS[4].device_id)  # left out: its id is not its key's


def test_adopt_checks_the_host_key() -> None:
    ml = circle(1)
    signed = sign(ml, IDS[0])
    assert adopt(signed, IDS[0].public_bytes) == ml
    with pytest.raises(TrustError):
        adopt(signed, IDS[1].public_bytes)
    outsider = sign(ml, IDS[5])  # signs a list it is not in
    with pytest.raises(TrustError, match="not a member"):
        adopt(outsider, IDS[5].public_bytes)


def test_concurrent_adds_of_one_device_keep_the_earliest_record() -> None:
    a = add(circle(), member(2, added_by=0, at=5.0))
    b = add(circle(1), member(2, added_by=1, at=3.0))
    merged = merge(a, b)
    rec = merged.member(IDS[2].device_id)
    assert rec is not None
    assert rec.added_at == 3.0


def _resigned(m: Member, signer: int, **changes: object) -> Member:
    """``m`` changed and signed again by device ``signer`` (what a hostile member can do
    with its own key)."""
    changed = msgspec.structs.replace(m, added_by=IDS[signer].device_id, **changes)
    return msgspec.structs.replace(
        changed, signature=IDS[signer].sign(RECORD_CONTEXT + changed.signed_bytes())
    )


def test_a_member_cannot_raise_its_own_level() -> None:
    """The attack: a member re-signed its own record as SL5 and then received S3 data."""
    mine = circle(1)
    own = mine.member(IDS[1].device_id)
    assert own is not None
    evil = _resigned(own, 1, security_level="SL5")
    theirs = MemberList(mine.circle_id, (*circle().members, evil), ())
    merged = accept(sign(theirs, IDS[1]), mine)
    rec = merged.member(IDS[1].device_id)
    assert rec is not None
    assert rec.security_level == "SL3"


def test_no_member_vouches_above_its_own_level_or_renames_another() -> None:
    mine = circle(1, 2)
    two = mine.member(IDS[2].device_id)
    assert two is not None
    renamed = _resigned(two, 1, name="Fridge")
    raised = _resigned(two, 1, security_level="SL4")  # device 1 is SL3
    theirs = MemberList(mine.circle_id, (*circle(1).members, renamed, raised), ())
    merged = accept(sign(theirs, IDS[1]), mine)
    rec = merged.member(IDS[2].device_id)
    assert rec is not None
    assert (rec.name, rec.security_level) == ("device 2", "SL3")


def test_a_host_admits_no_higher_than_itself_and_a_higher_member_confirms() -> None:
    low = vouch(
        IDS[1], device_id=IDS[3].device_id, public_key=IDS[3].public_bytes, name="phone",
        type_="phone", declared_level="SL4", voucher_level="SL1", at=2.0,
    )  # fmt: skip
    assert (low.security_level, low.declared_level) == ("SL1", "SL4")
    with pytest.raises(TrustError, match="only a member at SL4"):
        raise_level(low, IDS[1], "SL1", "SL4", at=3.0)
    with pytest.raises(TrustError, match="its own level"):
        raise_level(low, IDS[3], "SL4", "SL4", at=3.0)
    high = raise_level(low, IDS[0], "SL4", "SL4", at=3.0)
    founder = member(0, level="SL4")
    one = vouch(
        IDS[0], device_id=IDS[1].device_id, public_key=IDS[1].public_bytes, name="fridge",
        type_="fridge", declared_level="SL1", voucher_level="SL4", at=1.0,
    )  # fmt: skip
    mine = MemberList("c", (founder, one, low), ())
    merged = accept(sign(MemberList("c", (founder, one, high), ()), IDS[0]), mine)
    rec = merged.member(IDS[3].device_id)
    assert rec is not None
    assert rec.security_level == "SL4"


def _levels(*pairs: tuple[int, str]) -> MemberList:
    """A circle founded by device 0 (SL4) with the given (device, level) members,
    each vouched for by the founder."""
    founder = member(0, level="SL4")
    records = [founder]
    for i, level in pairs:
        records.append(
            vouch(
                IDS[0],
                device_id=IDS[i].device_id,
                public_key=IDS[i].public_bytes,
                name=f"device {i}",
                type_="phone",
                declared_level=level,
                voucher_level="SL4",
                at=1.0,
            )
        )
    return MemberList("c", tuple(sorted(records, key=lambda m: m.device_id)))


def test_a_lower_member_cannot_revoke_a_higher_one() -> None:
    """The attack: a compromised fridge (SL1) revokes the phone (SL4)."""
    mine = _levels((1, "SL1"), (2, "SL4"))
    with pytest.raises(TrustError, match="only a member at SL4"):
        revoke(mine, IDS[2].device_id, IDS[1], at=5.0)
    # Forging the revocation by hand: the fridge's own proof, or none at all.
    for proofs in ((), (_proof(2, by=1),)):
        evil = MemberList(mine.circle_id, mine.members, (IDS[2].device_id,), proofs)
        merged = accept(sign(evil, IDS[1]), mine)
        assert merged.is_member(IDS[2].device_id)


def _proof(target: int, by: int) -> Revocation:
    unsigned = Revocation(IDS[target].device_id, IDS[by].device_id, 5.0, b"\0" * 64)
    return msgspec.structs.replace(
        unsigned, signature=IDS[by].sign(REVOCATION_CONTEXT + unsigned.signed_bytes())
    )


def test_a_revocation_by_a_member_of_the_level_travels_through_lower_members() -> None:
    """The phone (SL4) revokes the TV; the fridge (SL1) relays the list; the tablet
    takes it, because the proof is the phone's, not the relay's."""
    base = _levels((1, "SL1"), (2, "SL4"), (3, "SL2"), (4, "SL3"))
    by_phone = revoke(base, IDS[3].device_id, IDS[2], at=5.0)
    relayed = accept(sign(by_phone, IDS[2]), base)  # the fridge's copy
    assert not relayed.is_member(IDS[3].device_id)
    tablet = accept(sign(relayed, IDS[1]), base)
    assert not tablet.is_member(IDS[3].device_id)
    assert tablet.revocations[0].by == IDS[2].device_id


def test_a_device_may_always_leave_and_a_bad_proof_is_never_kept() -> None:
    base = _levels((1, "SL1"), (2, "SL4"))
    left = revoke(base, IDS[1].device_id, IDS[1], at=5.0)
    assert not accept(sign(left, IDS[1]), base).is_member(IDS[1].device_id)
    tampered = msgspec.structs.replace(_proof(1, by=2), at=6.0)  # signature no longer fits
    evil = MemberList(base.circle_id, base.members, (IDS[1].device_id,), (tampered,))
    merged = accept(sign(evil, IDS[2]), base)
    assert merged.is_member(IDS[1].device_id)
    assert merged.revocations == ()


def _member_by_definition(ml: MemberList, device_id: str) -> Member | None:
    """A device's current record as the module docstring defines it (O(records))."""
    if ml.revoked_for_good(device_id):
        return None
    since = ml.revoked_at(device_id)
    alive = [
        m for m in ml.members if m.device_id == device_id and (since is None or m.added_at > since)
    ]
    return min(alive, key=lambda m: (-level_rank(m.security_level), m.added_at, m.added_by,
                                     m.signature)) if alive else None  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(ops, ops)
def test_who_is_a_member_is_derived_once_per_list_and_matches_the_definition(
    a: list[tuple[str, int, float]], b: list[tuple[str, int, float]]
) -> None:
    for ml in (_apply(circle(), a), merge(_apply(circle(), a), _apply(circle(), b))):
        ids = sorted({m.device_id for m in ml.members} | {IDS[5].device_id})
        expected = {d: _member_by_definition(ml, d) for d in ids}
        assert {d: ml.member(d) for d in ids} == expected
        assert {d: ml.is_member(d) for d in ids} == {d: r is not None for d, r in expected.items()}
        assert ml.active() == tuple(r for d, r in expected.items() if r is not None)
        assert ml.active() is ml.active()  # derived once, not per call
