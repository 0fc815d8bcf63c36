"""The circle's member list: a signed two-phase set that converges in any order."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.device.identity import Identity
from accord.errors import TrustError
from accord.trust.members import (
    Member,
    MemberList,
    SignedList,
    accept,
    add,
    adopt,
    merge,
    new_circle,
    revoke,
    sign,
)

IDS = [Identity.generate() for _ in range(6)]


def member(i: int, added_by: int = 0, at: float = 1.0) -> Member:
    ident = IDS[i]
    return Member(
        device_id=ident.device_id,
        public_key=ident.public_bytes,
        name=f"device {i}",
        type="phone",
        security_level="SL3",
        added_by=IDS[added_by].device_id,
        added_at=at,
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
    with pytest.raises(TrustError, match="does not match its public key"):
        accept(sign(add(circle(1), forged_member), IDS[1]), mine)


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
