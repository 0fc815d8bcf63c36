"""The circle's member list: a signed two-phase set (sans-IO).

Members are added by pairing and removed by revocation. Each member holds a copy;
copies merge by union of member records and union of revocations. Membership has
incarnations: a record is one admission of a device (``added_at``, ``added_by``), a
signed revocation proof revokes every admission of its device made at or before its
``at``, and a device is active iff it holds a record admitted after its latest
proven revocation. So a device that left or was revoked can be admitted again (a new
PIN pairing, same identity: a new record with a later ``added_at``), while its old
records stay revoked however often they are replayed. "Active" is derived, never
stored as a fact a copy could undo; the merge is commutative, associative and
idempotent, so copies that were edited concurrently converge whatever order updates
arrive in. (A revocation without a proof, made only locally, is permanent.)

``added_at`` and ``at`` come from different devices' wall clocks. A re-admission
follows a person seeing the revocation, so it counts only if its ``added_at`` is
later than the revocation's ``at``: the pairing host dates it just past the latest
proof it holds when its own clock is behind (a Lamport-style step), and :func:`add`
refuses a record that is not later. Likewise a revocation is dated no earlier than
the admission it revokes (see :func:`revoke`).

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

import threading
from collections import OrderedDict
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
    """One copy of the circle's membership. Sorted fields keep encoding canonical.

    ``revoked`` lists the devices revoked *now*: those revoked without a proof (for
    good), and, in a canonical copy, those whose latest proof in ``revocations`` is
    later than every record of theirs. The proven part is derived from ``members``
    and ``revocations`` (see :func:`_canonical`), so it can shrink on a re-admission."""

    circle_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    members: tuple[Member, ...] = ()  # records: more than one per device over its incarnations
    revoked: tuple[DeviceId, ...] = ()
    revocations: tuple[Revocation, ...] = ()  # every proof we hold, of every incarnation

    def revoked_at(self, device_id: str) -> float | None:
        """When ``device_id`` was last revoked, by a proof we hold (None: never)."""
        ats = [r.at for r in self.revocations if r.device_id == device_id]
        return max(ats) if ats else None

    def revoked_for_good(self, device_id: str) -> bool:
        """Revoked without a proof: no re-admission can undo it."""
        return device_id in self.revoked and self.revoked_at(device_id) is None

    def records(self, device_id: str) -> tuple[Member, ...]:
        """Every record we hold of ``device_id``, of any incarnation."""
        return tuple(m for m in self.members if m.device_id == device_id)

    def member(self, device_id: str) -> Member | None:
        """The device's current record (of its latest incarnation: the highest level,
        then the earliest), or None if it is not an active member."""
        return _view(self)[0].get(device_id)

    def active(self) -> tuple[Member, ...]:
        """Every active member's current record, by device id."""
        return _view(self)[1]

    def is_member(self, device_id: str) -> bool:
        return device_id in _view(self)[0]


_View = tuple[dict[str, Member], tuple[Member, ...]]
_VIEWS: OrderedDict[int, tuple[MemberList, _View]] = OrderedDict()
_VIEWS_KEPT = 16
_views_lock = threading.Lock()


def _view(ml: MemberList) -> _View:
    """(current record by device id, active records by id) of ``ml``, derived once per
    list: every sealed frame and every data message asks who is a member, and deriving
    it from records and revocations costs O(records) per device, O(N^2) for a list.
    Lists are immutable, so the few most recent ones are kept, looked up by identity."""
    with _views_lock:
        hit = _VIEWS.get(id(ml))
        if hit is not None and hit[0] is ml:
            _VIEWS.move_to_end(id(ml))
            return hit[1]
    revoked_at: dict[str, float] = {}
    for proof in ml.revocations:
        revoked_at[proof.device_id] = max(proof.at, revoked_at.get(proof.device_id, proof.at))
    for_good = {d for d in ml.revoked if d not in revoked_at}
    current: dict[str, Member] = {}
    for m in ml.members:
        if m.device_id in for_good or not _after(m, revoked_at.get(m.device_id)):
            continue
        held = current.get(m.device_id)
        if held is None or _order(m) < _order(held):
            current[m.device_id] = m
    view = (current, tuple(current[d] for d in sorted(current)))
    with _views_lock:
        _VIEWS[id(ml)] = (ml, view)
        while len(_VIEWS) > _VIEWS_KEPT:
            _VIEWS.popitem(last=False)
    return view


def _after(m: Member, since: float | None) -> bool:
    """Is record ``m`` an admission later than a revocation at ``since``?"""
    return since is None or m.added_at > since


class SignedList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body: bytes  # canonical MessagePack of a MemberList
    signer: DeviceId
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


_decoder = msgspec.msgpack.Decoder(MemberList)
MAX_MEMBERS = 256
MAX_RECORDS = 8 * MAX_MEMBERS  # records in one copy, over every device's incarnations


def _order(m: Member) -> tuple[int, float, str, bytes]:
    """Smaller wins: the highest level, then the earliest record (concurrent pairings
    of one device), then a byte order so that any two records compare."""
    return (-level_rank(m.security_level), m.added_at, m.added_by, m.signature)


def _sort_key(m: Member) -> tuple[str, float, str, bytes, bytes]:
    return (m.device_id, m.added_at, m.added_by, m.signature, m.signed_bytes())


def _canonical(ml: MemberList) -> MemberList:
    """The canonical form: every proof; every record admitted after its device's
    latest proof, and of a device with none such, its latest record only; ``revoked``
    derived (see :class:`MemberList`). Dropping records only ever revoked for good
    keeps this a closure, so the merge built on it stays a semilattice."""
    proofs = sorted(set(ml.revocations), key=lambda r: (r.device_id, r.at, r.by, r.signature))
    since: dict[str, float] = {}
    for r in proofs:
        since[r.device_id] = max(r.at, since.get(r.device_id, r.at))
    by_id: dict[str, set[Member]] = {}
    for m in ml.members:
        by_id.setdefault(m.device_id, set()).add(m)
    members: list[Member] = []
    revoked = {d for d in ml.revoked if d not in since}  # revoked for good
    for device_id, records in by_id.items():
        alive = [m for m in records if _after(m, since.get(device_id))]
        if alive:
            members.extend(alive)
        else:  # its latest record: the name and key it had
            members.append(max(records, key=_sort_key))
            revoked.add(device_id)
    members.sort(key=_sort_key)
    return MemberList(ml.circle_id, tuple(members), tuple(sorted(revoked)), tuple(proofs))


def new_circle(founder: Member, circle_id: str) -> MemberList:
    """A circle of one: the founding device."""
    return _canonical(MemberList(circle_id, (founder,)))


def add(ml: MemberList, member: Member) -> MemberList:
    """Add a record: an admission (a pairing, also of a device revoked before: its
    new incarnation) or a confirmed level."""
    if ml.revoked_for_good(member.device_id):
        raise TrustError(
            f"{member.name} ({member.device_id[:10]}) was revoked from this circle without "
            "a proof that could be undone; it can rejoin only with a new identity"
        )
    since = ml.revoked_at(member.device_id)
    if not _after(member, since):
        assert since is not None
        raise TrustError(
            f"{member.name} ({member.device_id[:10]}) was revoked at {since:.0f} (device "
            f"clock), not before this admission at {member.added_at:.0f}; check the clocks "
            "of this device and of the one that revoked it"
        )
    ids = {m.device_id for m in ml.members}
    if member.device_id not in ids and len(ids) >= MAX_MEMBERS:
        raise TrustError(f"a circle holds at most {MAX_MEMBERS} devices")
    return _canonical(MemberList(ml.circle_id, (*ml.members, member), ml.revoked, ml.revocations))


def revoke(
    ml: MemberList, device_id: str, by: Identity | None = None, at: float = 0.0
) -> MemberList:
    """Revoke ``device_id``. With ``by``, the revocation carries that device's signed
    proof, which is what lets other members take it (see :func:`accept`); ``by``
    must be the device itself or a member whose level is at least the device's.
    The proof is dated ``at``, or later if the device's current admission is dated
    later (another device's clock ahead of ours): a revocation always revokes the
    incarnation it was made against. Without ``by`` it is for good."""
    target = ml.member(device_id)
    if target is None:
        raise TrustError(f"{device_id} is not a member of this circle")
    proofs = ml.revocations
    since = ml.revoked_at(device_id)
    revoked = ml.revoked
    if by is None:
        revoked = (*revoked, device_id)
    else:
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
        at = max([at, *(m.added_at for m in ml.records(device_id) if _after(m, since))])
        unsigned = Revocation(device_id, by.device_id, at, b"\0" * 64)
        proof = msgspec.structs.replace(
            unsigned, signature=by.sign(REVOCATION_CONTEXT + unsigned.signed_bytes())
        )
        proofs = (*proofs, proof)
    return _canonical(MemberList(ml.circle_id, ml.members, revoked, proofs))


def merge(a: MemberList, b: MemberList) -> MemberList:
    """Union of records and of revocations (who is active is derived from both).
    Commutative, associative, idempotent."""
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
    devices = len({m.device_id for m in theirs.members})
    if devices > MAX_MEMBERS or len(theirs.members) > MAX_RECORDS:
        raise TrustError(
            f"member list of {devices} devices ({len(theirs.members)} records) exceeds "
            f"{MAX_MEMBERS} ({MAX_RECORDS})"
        )
    members = vouched(theirs.members, current)
    proofs = proven(theirs, current, members)
    merged = merge(current, MemberList(current.circle_id, members, (), proofs))
    if proofs:  # a revocation ends an incarnation: its next may have a new name
        again = vouched(theirs.members, merged)
        merged = merge(merged, MemberList(current.circle_id, again))
    return merged


def proven(
    theirs: MemberList, current: MemberList, taken: tuple[Member, ...]
) -> tuple[Revocation, ...]:
    """The proofs of ``theirs`` we may take: those with a valid proof by the device
    itself or by an active member (in our view, or vouched in the same copy) whose
    level is at least that of the admission it revokes (the device's records dated
    no later than the proof). Without this, any member could cut any other out of
    the circle."""
    view = _canonical(
        MemberList(current.circle_id, (*current.members, *taken), current.revoked,
                   current.revocations)
    )  # fmt: skip
    held = set(current.revocations)
    out: list[Revocation] = []
    for proof in theirs.revocations:
        if proof in held or proof in out:
            continue  # ours stands
        revokes = [m for m in view.records(proof.device_id) if m.added_at <= proof.at]
        if not revokes:
            continue  # no admission we know of: nothing to revoke here
        target = min(revokes, key=_order)
        if proof.by == proof.device_id:
            key = target.public_key  # the device itself left
        else:
            signer = view.member(proof.by)
            if signer is None or (
                level_rank(signer.security_level) < level_rank(target.security_level)
            ):
                continue
            key = signer.public_key
        if verify(key, proof.signature, REVOCATION_CONTEXT + proof.signed_bytes()):
            out.append(proof)  # only a proof that verified is kept and passed on
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
                if not current.revoked_for_good(m.device_id) and _after(
                    m, current.revoked_at(m.device_id)
                ):
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
