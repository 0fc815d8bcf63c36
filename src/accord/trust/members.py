"""The circle's member list: a signed two-phase set (sans-IO).

Members are added by pairing and removed by revocation. Each member holds a copy;
copies merge by union of members and union of revocations, and a revoked device
id never comes back (a re-paired device needs a new identity). The merge is
commutative, associative and idempotent, so copies that were edited concurrently
converge whatever order updates arrive in.

A copy travels signed by one of its members. A receiver accepts it only if the
signer is a member, and not revoked, in the receiver's own current view: a
stranger or a revoked device cannot add anyone.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from accord.device.identity import Identity, device_id_for, verify
from accord.errors import TrustError
from accord.wire.messages import DECODE_ERRORS, DeviceId

Level = Annotated[str, msgspec.Meta(pattern=r"^SL[1-5]$")]


class Member(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    device_id: DeviceId
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    security_level: Level
    added_by: DeviceId
    added_at: float


class MemberList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One copy of the circle's membership. Sorted fields keep encoding canonical."""

    circle_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    members: tuple[Member, ...] = ()
    revoked: tuple[DeviceId, ...] = ()

    def member(self, device_id: str) -> Member | None:
        if device_id in self.revoked:
            return None
        return next((m for m in self.members if m.device_id == device_id), None)

    def active(self) -> tuple[Member, ...]:
        revoked = set(self.revoked)
        return tuple(m for m in self.members if m.device_id not in revoked)

    def is_member(self, device_id: str) -> bool:
        return self.member(device_id) is not None


class SignedList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body: bytes  # canonical MessagePack of a MemberList
    signer: DeviceId
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


_decoder = msgspec.msgpack.Decoder(MemberList)
MAX_MEMBERS = 256


def _canonical(ml: MemberList) -> MemberList:
    by_id: dict[str, Member] = {}
    for m in ml.members:
        # The same device added twice (concurrent pairings): keep the earliest record.
        old = by_id.get(m.device_id)
        if old is None or (m.added_at, m.added_by) < (old.added_at, old.added_by):
            by_id[m.device_id] = m
    members = tuple(by_id[k] for k in sorted(by_id))
    return MemberList(ml.circle_id, members, tuple(sorted(set(ml.revoked))))


def new_circle(founder: Member, circle_id: str) -> MemberList:
    """A circle of one: the founding device."""
    return _canonical(MemberList(circle_id, (founder,)))


def add(ml: MemberList, member: Member) -> MemberList:
    if member.device_id in ml.revoked:
        raise TrustError(
            f"{member.name} ({member.device_id[:10]}) was revoked from this circle; "
            "a revoked device can only rejoin with a new identity (accord init --force)"
        )
    if len(ml.members) >= MAX_MEMBERS:
        raise TrustError(f"a circle holds at most {MAX_MEMBERS} devices")
    return _canonical(MemberList(ml.circle_id, (*ml.members, member), ml.revoked))


def revoke(ml: MemberList, device_id: str) -> MemberList:
    if not ml.is_member(device_id):
        raise TrustError(f"{device_id} is not a member of this circle")
    return _canonical(MemberList(ml.circle_id, ml.members, (*ml.revoked, device_id)))


def merge(a: MemberList, b: MemberList) -> MemberList:
    """Union of members and of revocations. Commutative, associative, idempotent."""
    if a.circle_id != b.circle_id:
        raise TrustError("member lists of different circles do not merge")
    return _canonical(MemberList(a.circle_id, (*a.members, *b.members), (*a.revoked, *b.revoked)))


def sign(ml: MemberList, identity: Identity) -> SignedList:
    body = msgspec.msgpack.encode(_canonical(ml))
    return SignedList(body, identity.device_id, identity.sign(b"accord/v1/members" + body))


def accept(signed: SignedList, current: MemberList) -> MemberList:
    """Verify a received copy against our view and merge it in. Raises TrustError."""
    signer = current.member(signed.signer)
    if signer is None:
        raise TrustError(f"member list signed by {signed.signer[:10]}, who is not a member here")
    if not verify(signer.public_key, signed.signature, b"accord/v1/members" + signed.body):
        raise TrustError("member list signature does not verify")
    try:
        theirs = _decoder.decode(signed.body)
    except DECODE_ERRORS as exc:
        raise TrustError(f"malformed member list: {exc}") from exc
    for m in theirs.members:
        if device_id_for(m.public_key) != m.device_id:
            raise TrustError(f"member {m.device_id[:10]} does not match its public key")
    if len(theirs.members) > MAX_MEMBERS:
        raise TrustError(f"member list of {len(theirs.members)} exceeds {MAX_MEMBERS}")
    return merge(current, theirs)


def adopt(signed: SignedList, host_public_key: bytes) -> MemberList:
    """A joiner's first list, from the host it just paired with (whose key it learned
    under the PAKE key). Raises TrustError."""
    if not verify(host_public_key, signed.signature, b"accord/v1/members" + signed.body):
        raise TrustError("member list from the pairing host does not verify")
    try:
        theirs = _decoder.decode(signed.body)
    except DECODE_ERRORS as exc:
        raise TrustError(f"malformed member list: {exc}") from exc
    host = theirs.member(signed.signer)
    if host is None or host.public_key != host_public_key:
        raise TrustError("the pairing host is not a member of the list it sent")
    return _canonical(theirs)
