"""The circle's member list: a signed two-phase set (sans-IO).

Members are added by pairing and removed by revocation. Each member holds a copy;
copies merge by union of members and union of revocations, and a revoked device
id never comes back (a re-paired device needs a new identity). The merge is
commutative, associative and idempotent, so copies that were edited concurrently
converge whatever order updates arrive in.

A copy travels signed by one of its members. A receiver accepts it only if the
signer is a member, and not revoked, in the receiver's own current view: a
stranger or a revoked device cannot add anyone.

Each member *record* is signed too, by the member who vouched for it (``added_by``:
the pairing host at admission, or a member that later confirmed a higher level), so
the list's signer cannot rewrite it. A receiver takes a record it does not hold
only if its voucher is an active member in the receiver's view whose level is at
least the record's (no one vouches above their own level; a member cannot vouch for
itself), and a record never changes a member's name, type or key. For one device,
the record with the highest level wins, then the earliest: a total order, so the
merge stays commutative, associative and idempotent.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from accord.device.identity import Identity, device_id_for, verify
from accord.errors import TrustError
from accord.wire.messages import DECODE_ERRORS, DeviceId

Level = Annotated[str, msgspec.Meta(pattern=r"^SL[1-5]$")]
RECORD_CONTEXT: Final = b"accord/v1/member-record"


def level_rank(level: str) -> int:
    """SL1 -> 1 ... SL5 -> 5; anything else 0 (fails every comparison closed)."""
    if len(level) == 3 and level.startswith("SL") and level[2] in "12345":
        return int(level[2])
    return 0


class Member(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    device_id: DeviceId
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    security_level: Level
    added_by: DeviceId
    added_at: float
    declared_level: Level | None = None  # what the device claims, if above security_level
    signature: bytes = b""  # by added_by over RECORD_CONTEXT || signed_bytes()

    def signed_bytes(self) -> bytes:
        """The canonical bytes a voucher signs: every field but the signature."""
        return msgspec.msgpack.encode(
            [self.device_id, self.public_key, self.name, self.type, self.security_level,
             self.added_by, self.added_at, self.declared_level]
        )  # fmt: skip


def vouch(
    identity: Identity,
    *,
    device_id: str,
    public_key: bytes,
    name: str,
    type_: str,
    declared_level: str,
    voucher_level: str,
    at: float,
) -> Member:
    """A record of a device, signed by ``identity`` (a member of ``voucher_level``).
    A device that declares a level above the voucher's is admitted at the voucher's
    level, its declaration kept so a member of that level can confirm it later."""
    granted = declared_level
    if level_rank(declared_level) > level_rank(voucher_level):
        granted = voucher_level
    unsigned = Member(
        device_id=device_id,
        public_key=public_key,
        name=name,
        type=type_,
        security_level=granted,
        added_by=identity.device_id,
        added_at=at,
        declared_level=declared_level if granted != declared_level else None,
    )
    return msgspec.structs.replace(
        unsigned, signature=identity.sign(RECORD_CONTEXT + unsigned.signed_bytes())
    )


def raise_level(member: Member, identity: Identity, voucher_level: str, level: str,
                at: float) -> Member:  # fmt: skip
    """A new record of ``member`` at ``level``, vouched for by ``identity``: only a
    member at that level or higher may, and never for itself."""
    if identity.device_id == member.device_id:
        raise TrustError("a device cannot raise its own level; run this on another member")
    if level_rank(level) == 0:
        raise TrustError(f"{level!r} is not a security level (SL1..SL5)")
    if level_rank(level) > level_rank(voucher_level):
        raise TrustError(
            f"this device is {voucher_level}; only a member at {level} or higher can confirm "
            f"{member.name} at {level}"
        )
    if level_rank(level) <= level_rank(member.security_level):
        raise TrustError(f"{member.name} is already {member.security_level}")
    return vouch(
        identity,
        device_id=member.device_id,
        public_key=member.public_key,
        name=member.name,
        type_=member.type,
        declared_level=level,
        voucher_level=voucher_level,
        at=at,
    )


REVOCATION_CONTEXT: Final = b"accord/v1/revocation"


class Revocation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Proof that ``by`` revoked ``device_id``: the device itself (it left), or a member
    whose level is at least the device's."""

    device_id: DeviceId
    by: DeviceId
    at: float
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]

    def signed_bytes(self) -> bytes:
        return msgspec.msgpack.encode([self.device_id, self.by, self.at])


class MemberList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One copy of the circle's membership. Sorted fields keep encoding canonical."""

    circle_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    members: tuple[Member, ...] = ()
    revoked: tuple[DeviceId, ...] = ()
    revocations: tuple[Revocation, ...] = ()  # a proof for each revoked id we can show

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


def _order(m: Member) -> tuple[int, float, str, bytes]:
    """Smaller wins: the highest level, then the earliest record (concurrent pairings
    of one device), then a byte order so that any two records compare."""
    return (-level_rank(m.security_level), m.added_at, m.added_by, m.signature)


def _canonical(ml: MemberList) -> MemberList:
    by_id: dict[str, Member] = {}
    for m in ml.members:
        old = by_id.get(m.device_id)
        if old is None or _order(m) < _order(old):
            by_id[m.device_id] = m
    members = tuple(by_id[k] for k in sorted(by_id))
    revoked = tuple(sorted(set(ml.revoked)))
    proofs: dict[str, Revocation] = {}
    for r in ml.revocations:  # one proof per revoked device: the earliest
        prev = proofs.get(r.device_id)
        if r.device_id in revoked and (
            prev is None or (r.at, r.by, r.signature) < (prev.at, prev.by, prev.signature)
        ):
            proofs[r.device_id] = r
    return MemberList(ml.circle_id, members, revoked, tuple(proofs[k] for k in sorted(proofs)))


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


def revoke(
    ml: MemberList, device_id: str, by: Identity | None = None, at: float = 0.0
) -> MemberList:
    """Revoke ``device_id``. With ``by``, the revocation carries that device's signed
    proof, which is what lets other members take it (see :func:`accept`); ``by``
    must be the device itself or a member whose level is at least the device's."""
    target = ml.member(device_id)
    if target is None:
        raise TrustError(f"{device_id} is not a member of this circle")
    proofs = ml.revocations
    if by is not None:
        revoker = ml.member(by.device_id)
        if by.device_id != device_id and (
            revoker is None
            or level_rank(revoker.security_level) < level_rank(target.security_level)
        ):
            have = revoker.security_level if revoker else "not a member"
            raise TrustError(
                f"this device is {have}; only a member at {target.security_level} or higher "
                f"may revoke {target.name} (or {target.name} itself may leave)"
            )
        unsigned = Revocation(device_id, by.device_id, at, b"\0" * 64)
        proof = msgspec.structs.replace(
            unsigned, signature=by.sign(REVOCATION_CONTEXT + unsigned.signed_bytes())
        )
        proofs = (*proofs, proof)
    return _canonical(MemberList(ml.circle_id, ml.members, (*ml.revoked, device_id), proofs))


def merge(a: MemberList, b: MemberList) -> MemberList:
    """Union of members and of revocations. Commutative, associative, idempotent."""
    if a.circle_id != b.circle_id:
        raise TrustError("member lists of different circles do not merge")
    return _canonical(
        MemberList(
            a.circle_id,
            (*a.members, *b.members),
            (*a.revoked, *b.revoked),
            (*a.revocations, *b.revocations),
        )
    )


def sign(ml: MemberList, identity: Identity) -> SignedList:
    body = msgspec.msgpack.encode(_canonical(ml))
    return SignedList(body, identity.device_id, identity.sign(b"accord/v1/members" + body))


def accept(signed: SignedList, current: MemberList) -> MemberList:
    """Verify a received copy against our view and merge in what it may change.
    Raises TrustError if the copy itself is not authentic; records in it that no
    member may vouch for are left out (see the module docstring)."""
    signer = current.member(signed.signer)
    if signer is None:
        raise TrustError(f"member list signed by {signed.signer[:10]}, who is not a member here")
    if not verify(signer.public_key, signed.signature, b"accord/v1/members" + signed.body):
        raise TrustError("member list signature does not verify")
    try:
        theirs = _decoder.decode(signed.body)
    except DECODE_ERRORS as exc:
        raise TrustError(f"malformed member list: {exc}") from exc
    if theirs.circle_id != current.circle_id:
        raise TrustError("member list of another circle")
    if len(theirs.members) > MAX_MEMBERS:
        raise TrustError(f"member list of {len(theirs.members)} exceeds {MAX_MEMBERS}")
    members = vouched(theirs.members, current)
    proofs = proven(theirs, current, members)
    revoked = tuple(p.device_id for p in proofs)
    return merge(current, MemberList(current.circle_id, members, revoked, proofs))


def proven(
    theirs: MemberList, current: MemberList, taken: tuple[Member, ...]
) -> tuple[Revocation, ...]:
    """The proofs of the new revocations of ``theirs`` we may take: those with a
    valid proof by the device itself or by a member (in our view, or vouched
    in the same copy) whose level is at least the revoked device's. Without this,
    any member could cut any other out of the circle."""
    view = {m.device_id: m for m in current.members}
    for m in taken:
        old = view.get(m.device_id)
        if old is None or _order(m) < _order(old):
            view[m.device_id] = m
    held = set(current.revoked)
    out: list[Revocation] = []
    for device_id in theirs.revoked:
        if device_id in held:
            continue  # ours stands, with the proof we hold
        target = view.get(device_id)
        if target is None:
            continue  # a device we never knew: nothing to revoke here
        for proof in theirs.revocations:
            if proof.device_id != device_id:
                continue
            signer = view.get(proof.by)
            if signer is None or proof.by in held:
                continue
            if proof.by != device_id and (
                level_rank(signer.security_level) < level_rank(target.security_level)
            ):
                continue
            if verify(signer.public_key, proof.signature,
                      REVOCATION_CONTEXT + proof.signed_bytes()):  # fmt: skip
                out.append(proof)  # only a proof that verified is kept and passed on
                break
    return tuple(out)


def vouched(records: tuple[Member, ...], current: MemberList) -> tuple[Member, ...]:
    """The records of ``records`` we may take, given our view ``current``: those we
    hold already, and new ones whose voucher we trust for their level (vouchers
    introduced in the same copy count once their own record is taken)."""
    held = set(current.members)
    view = {m.device_id: m for m in current.active()}
    taken = [m for m in records if m in held]
    pending = [m for m in records if m not in held]
    progress = True
    while pending and progress:
        progress = False
        for m in list(pending):
            if _may_take(m, view):
                pending.remove(m)
                taken.append(m)
                if m.device_id not in current.revoked:
                    old = view.get(m.device_id)
                    if old is None or _order(m) < _order(old):
                        view[m.device_id] = m
                progress = True
    return tuple(taken)


def _may_take(m: Member, view: dict[str, Member]) -> bool:
    if device_id_for(m.public_key) != m.device_id:
        return False
    voucher = view.get(m.added_by)
    if voucher is None or m.added_by == m.device_id:
        return False  # only the founder's own record is self-made, and we hold it
    if level_rank(m.security_level) > level_rank(voucher.security_level):
        return False
    known = view.get(m.device_id)
    if known is not None and (known.name, known.type, known.public_key) != (
        m.name, m.type, m.public_key
    ):  # fmt: skip
        return False
    return verify(voucher.public_key, m.signature, RECORD_CONTEXT + m.signed_bytes())


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
