"""This device's view of its circle: members, keys, and sealing under the circle key.

The one object the node asks "is this device a member?", "seal this", "open that".
Every change is saved to the home before it takes effect on the wire.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from accord.clock import Clock
from accord.device.home import Home
from accord.device.identity import id_from_raw, raw_id
from accord.errors import TrustError
from accord.trust import members as ml
from accord.trust.store import MAX_EPOCH, CircleState, CircleStore, founding_state
from accord.wire.seal import Kind, Opener, Sealer, StreamId

log = logging.getLogger(__name__)

Standing = Literal["self", "member", "revoked", "stranger"]
Membership = Literal["member", "alone", "revoked"]
PAIRING_MAX_FAILURES = 5


class Circle:
    def __init__(self, home: Home, clock: Clock) -> None:
        self._home = home
        self._clock = clock
        self._store = CircleStore(home.data_dir)
        state = self._store.load()
        if state is None:
            p = home.profile
            state = founding_state(home.identity, home.name, p.type, p.security_level, clock.wall())
            self._store.save(state)
        self.state = state
        self._me = home.device_id
        self._raw_me = raw_id(self._me)
        self.boot = self._store.next_boot(state)
        self._opener = Opener(self._root_for, replay=False)
        self._sealer = self._new_sealer()
        self._listeners: list[Callable[[], None]] = []
        self._view_of: ml.MemberList | None = None
        self._view_cache: tuple[frozenset[str], dict[str, ml.Member]] = (frozenset(), {})
        self._signed: tuple[ml.MemberList, ml.SignedList] | None = None

    # -- membership ------------------------------------------------------

    @property
    def members(self) -> ml.MemberList:
        return self.state.members

    def _view(self) -> tuple[frozenset[str], dict[str, ml.Member]]:
        """(revoked ids, active records by id) of the current list, computed once per
        list: every sealed frame asks who is a member, and deriving it from records
        and revocations costs O(members) each time."""
        members = self.state.members
        if self._view_of is not members:
            self._view_cache = (
                frozenset(members.revoked),
                {m.device_id: m for m in members.active()},
            )
            self._view_of = members
        return self._view_cache

    def standing(self, device_id: str) -> Standing:
        if device_id == self._me:
            return "self"
        revoked, active = self._view()
        if device_id in revoked:
            return "revoked"
        if self._me in revoked:
            return "stranger"  # this device was removed: nobody is a member with it
        if device_id in active:
            return "member"
        return "stranger"

    def membership(self) -> Membership:
        """Whether this device belongs to a circle with others, to none but its own,
        or was removed from its circle (see :meth:`removal`)."""
        if self._me in self.state.members.revoked:
            return "revoked"
        return "member" if len(self.state.members.active()) > 1 else "alone"

    def removal(self) -> ml.Revocation | None:
        """The signed proof that removed this device from its circle, if it was."""
        if self.membership() != "revoked":
            return None  # a proof of an earlier incarnation (this device was admitted again)
        mine = [r for r in self.state.members.revocations if r.device_id == self._me]
        return max(mine, key=lambda r: r.at) if mine else None

    def learn_revocation(self, circle_id: str, proof: ml.Revocation) -> bool:
        """A notice that this device was revoked from its circle. Taken only if the
        proof is for this device in this circle, revokes its current admission (is dated
        no earlier than it: the rule of :class:`accord.trust.members.MemberList`), and verifies
        against a member of our own list with the authority to revoke it (the rule of
        :func:`accord.trust.members.proven`); True if it was taken now. Nothing else
        about a notice is trusted: anyone can send one."""
        current = self.state.members
        mine = current.member(self._me)
        if (
            mine is None  # revoked already (or not in our own list): nothing to learn
            or proof.device_id != self._me
            or circle_id != current.circle_id
        ):
            return False
        notice = ml.MemberList(current.circle_id, (), (), (proof,))
        taken = ml.MemberList(current.circle_id, (), (), ml.proven(notice, current, ()))
        merged = ml.merge(current, taken)
        if not taken.revocations or merged.is_member(self._me):
            return False  # a bad proof, or one of an earlier incarnation: we were readmitted
        self._commit(msgspec.structs.replace(self.state, members=merged))
        log.warning("%s: %s", self._home.name, self.removed_message())
        self._changed()
        return True

    def removed_message(self) -> str:
        """What to tell a person about this device's removal ("" if it was not)."""
        if self.membership() != "revoked":
            return ""
        circle = self.state.members.circle_id[:4] + "…"
        proof = self.removal()
        if proof is None:
            return f"this device was removed from circle {circle}; pair again to rejoin"
        if proof.by == self._me:
            return f"this device left circle {circle} at {_when(proof.at)}; pair again to rejoin"
        by = next((m for m in self.state.members.members if m.device_id == proof.by), None)
        who = by.name if by is not None else proof.by[:10]
        return (
            f"this device was removed from circle {circle} by {who} at {_when(proof.at)}; "
            "pair again to rejoin"
        )

    def is_member(self, device_id: str) -> bool:
        return device_id != self._me and self.standing(device_id) == "member"

    def member(self, device_id: str) -> ml.Member | None:
        return self._view()[1].get(device_id)

    def member_key(self, device_id: str) -> bytes | None:
        """The identity key of an active member (None for anyone else)."""
        member = self._view()[1].get(device_id)
        return None if member is None else member.public_key

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("circle listener failed")

    def signed_list(self) -> ml.SignedList:
        """Our member list, signed; made once per list (every details reply carries
        it, and Ed25519 signatures are deterministic, so a cached one is the same)."""
        members = self.state.members
        if self._signed is None or self._signed[0] is not members:
            self._signed = (members, ml.sign(members, self._home.identity))
        return self._signed[1]

    def key_id(self) -> bytes:
        """A short digest of the current circle key: members compare theirs to see
        whether one of them missed a rotation (it says nothing about the key)."""
        return hashlib.blake2b(self.state.circle_key, digest_size=8,
                               person=b"accord/v1/key-id").digest()  # fmt: skip

    def accept_list(self, signed: ml.SignedList) -> bool:
        """Merge a copy received from a member; True if anything changed."""
        if signed.body == self.signed_list().body:
            return False  # the very list we hold (the common case): nothing to verify
        merged = ml.accept(signed, self.state.members)
        if merged == self.state.members:
            return False
        newly_revoked = set(merged.revoked) - set(self.state.members.revoked)
        new = msgspec.structs.replace(self.state, members=merged)
        if self._me not in newly_revoked and signed.signer in newly_revoked:
            # A device that left cannot hand out a new key, so each member that hears
            # of it rotates; concurrent rotations converge (see install_key). A revoker
            # rotates and hands out the key itself, so other revocations need nothing.
            new = new.rotated(self._me)
        self._commit(new)
        for device_id in newly_revoked:
            self._opener.forget(raw_id(device_id))
        if self._me in newly_revoked:
            log.warning("%s: %s", self._home.name, self.removed_message())
        self._changed()
        return True

    def revoke(self, device_id: str) -> None:
        """Revoke a member and rotate the circle key (the caller sends the new key to
        the remaining members). All or nothing: the new list, key and sealer are built
        before the one save, and nothing changes if any step fails."""
        members = ml.revoke(self.state.members, device_id, self._home.identity, self._clock.wall())
        self._commit(msgspec.structs.replace(self.state, members=members).rotated(self._me))
        self._opener.forget(raw_id(device_id))
        self._changed()

    def _commit(self, new: CircleState) -> None:
        """Make ``new`` the state: its sealer is built first, then it is saved, then
        it takes effect; a failure at any step leaves the old state in force."""
        same_key = (new.epoch, new.circle_key) == (self.state.epoch, self.state.circle_key)
        sealer = self._sealer if same_key else self._sealer_for(new)
        self._store.save(new)
        self.state = new
        self._sealer = sealer

    def leave(self) -> None:
        """Forget this circle and start a new circle of one (identity kept)."""
        p = self._home.profile
        self.state = founding_state(
            self._home.identity, self._home.name, p.type, p.security_level, self._clock.wall()
        )
        self.state.boot = self.boot
        self._store.save(self.state)
        self._opener = Opener(self._root_for, replay=False)
        self._sealer = self._new_sealer()
        self._changed()

    def key_acceptable(self, epoch: int, key: bytes, issuer: str) -> bool:
        """Would :meth:`install_key` take this key? A newer epoch is taken only within
        what the member list justifies: each rotation follows a revocation, so an epoch
        above one more than the revocations we know of (or beyond one step ahead) is a
        member's lie. Each proof counts (a device revoked, admitted again and revoked
        again was revoked twice), and each revocation held without one."""
        s = self.state
        if len(key) != 32 or not 1 <= epoch <= MAX_EPOCH:
            return False
        if epoch == s.epoch:  # two members rotated at once: the smallest issuer wins
            return issuer < s.key_issuer and key != s.circle_key
        proven = {r.device_id for r in s.members.revocations}
        for_good = [d for d in s.members.revoked if d not in proven]
        bound = max(s.epoch + 1, 1 + len(s.members.revocations) + len(for_good))
        return s.epoch < epoch <= bound

    def install_key(self, epoch: int, key: bytes, issuer: str) -> bool:
        """Take a circle key sent by a member (see :meth:`key_acceptable`)."""
        if not self.key_acceptable(epoch, key, issuer):
            return False
        self._commit(
            msgspec.structs.replace(self.state, epoch=epoch, keys={epoch: key}, key_issuer=issuer)
        )
        return True

    def add_member(self, member: ml.Member) -> None:
        self.state.members = ml.add(self.state.members, member)
        self._store.save(self.state)
        self._changed()

    def join(self, members: ml.MemberList, epoch: int, key: bytes) -> None:
        """Replace our circle of one by the circle we just paired into."""
        if not members.is_member(self._me):
            raise TrustError("the circle we paired into does not list this device")
        if not 1 <= epoch <= MAX_EPOCH or len(key) != 32:
            raise TrustError(f"the circle's key epoch {epoch} or key is invalid")
        new = msgspec.structs.replace(self.state, members=members, epoch=epoch, keys={epoch: key})
        self._sealer = self._sealer_for(new)
        self._store.save(new)
        self.state = new
        self._changed()

    # -- pairing window bookkeeping (persisted so it survives restarts) --

    def pairing_open(self) -> bool:
        s = self.state
        return (
            bool(s.pairing_pin)
            and s.pairing_failures < PAIRING_MAX_FAILURES
            and self._clock.wall() < s.pairing_expires
        )

    def open_pairing(self, pin: str, seconds: float) -> None:
        """A person opens a window with a fresh PIN: the count starts again, since
        guesses at an earlier PIN say nothing about this one (so strangers who used
        up a window cannot keep the owner from opening the next)."""
        self.state.pairing_failures = 0
        self.state.pairing_pin = pin
        self.state.pairing_expires = self._clock.wall() + seconds
        self._store.save(self.state)

    def close_pairing(self) -> None:
        self.state.pairing_pin = ""
        self.state.pairing_expires = 0.0
        self._store.save(self.state)

    def count_pairing_attempt(self) -> int:
        """Count an attempt *before* answering it (a silent guesser is counted too);
        the fifth closes the window."""
        self.state.pairing_failures += 1
        if self.state.pairing_failures >= PAIRING_MAX_FAILURES:
            self.state.pairing_pin = ""
            self.state.pairing_expires = 0.0
        self._store.save(self.state)
        return self.state.pairing_failures

    def pairing_succeeded(self) -> None:
        """The PIN admitted one device: the window closes."""
        self.state.pairing_failures = 0
        self.state.pairing_pin = ""
        self.state.pairing_expires = 0.0
        self._store.save(self.state)

    # -- sealing -----------------------------------------------------------

    def _new_sealer(self) -> Sealer:
        return self._sealer_for(self.state)

    def _sealer_for(self, state: CircleState) -> Sealer:
        sid = StreamId(Kind.BROADCAST, self._raw_me, state.epoch, self.boot)
        return Sealer(state.circle_key, sid)

    def _root_for(self, sid: StreamId) -> bytes | None:
        if sid.kind != Kind.BROADCAST:
            return None
        sender = id_from_raw(sid.sender)
        if sender != self._me and not self.state.members.is_member(sender):
            return None
        return self.state.keys.get(sid.epoch)

    def seal(self, key_expr: str, payload: bytes) -> bytes:
        return self._sealer.seal(key_expr, payload)

    def open(self, key_expr: str, frame: bytes) -> tuple[str, bytes]:
        """Open a frame from a member: (sender device id, plaintext). Raises SealError."""
        sid, plaintext = self._opener.open(key_expr, frame)
        return id_from_raw(sid.sender), plaintext


def _when(at: float) -> str:
    """21:40 today, else 2025-01-31 21:40 (local time)."""
    day = "%H:%M" if time.localtime(at)[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M"
    return time.strftime(day, time.localtime(at))


def encode(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)
