"""Handing a member our circle key, on a pairwise session of its own.

After a rotation (a revocation), the rotating member sends the new key to every
other member online; a member that was away then is sent it when it comes back and
its details show it holds an older key (see :mod:`accord.trust.sync`: details carry
the sender's key epoch and a digest of its key). A member admitted since the current
key was made holds it already (its host gave it in the credentials), so a join costs
no key push.

The push is a signed X25519 session (``accord/v1/session/<id>``), then the key and
the member list sealed on it (``accord/v1/rekey/<id>``). The receiver takes the key
only from a current member and only within what its member list justifies
(:meth:`accord.trust.circle.Circle.install_key`), so a forged, replayed or
out-of-bounds push changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Final

import msgspec

from accord.bus import keys
from accord.bus.session import Bus
from accord.device.identity import Identity, id_from_raw, raw_id
from accord.errors import SealError, TrustError
from accord.trust import session
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle, encode
from accord.trust.members import SignedList
from accord.trust.sessions import SessionTable, session_number
from accord.wire.messages import DECODE_ERRORS
from accord.wire.quiet import QuietLog
from accord.wire.seal import Kind, Opener, Sealer, StreamId

log = logging.getLogger(__name__)


class KeyUpdate(msgspec.Struct, frozen=True):
    """A circle key and the member list it goes with, sent on a pairwise session."""

    members: SignedList
    epoch: int
    key: bytes
    issuer: str


_key_update = msgspec.msgpack.Decoder(KeyUpdate)
KEY_HELD: Final = b"ok"  # the answer to a key update: the receiver holds that key now
KEY_REFUSED: Final = b"refused"  # ... it does not (out of bounds, or it holds a newer one)
ANSWERED_MEMORY: Final = 64  # session offers remembered per member, to refuse replays


class KeyPush:
    """Serves ``session`` and ``rekey`` for this device, and pushes keys to others."""

    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        identity: Identity,
        channels: ChannelService,
        *,
        name: str,
        query_timeout: float,
    ) -> None:
        self._bus = bus
        self._circle = circle
        self._identity = identity
        self._channels = channels
        self._me = identity.device_id
        self._name = name
        self._timeout = query_timeout
        self._sessions = SessionTable()
        self._pairwise = Opener(self._sessions.root_for)
        self._answered: dict[str, OrderedDict[int, None]] = {}
        self._quiet = QuietLog(log)

    async def serve_session(self, _key: str, offer: bytes) -> bytes | None:
        """Answer a member's session offer. An offer answered before (one of the last
        ANSWERED_MEMORY per member) is refused before any crypto: a replay could not
        use the session, but would cost us an X25519 and two signature operations."""
        number = session_number(offer)
        claimed = offer[: session.ID_LEN].decode("ascii", "replace")
        if number in self._answered.get(claimed, ()):
            log.debug("%s: refused a replayed session offer", self._name)
            return None
        try:
            initiator, answer, secret = session.respond(
                self._identity, offer, self._circle.member_key
            )
        except TrustError as exc:
            log.debug("%s: refused session offer: %s", self._name, exc)
            return self._channels.notice_for_offer(offer)
        answered = self._answered.setdefault(initiator, OrderedDict())
        answered[number] = None
        while len(answered) > ANSWERED_MEMORY:
            answered.popitem(last=False)
        self._sessions.remember(initiator, number, secret)
        return answer

    def _read(self, key: str, frame: bytes) -> tuple[str, KeyUpdate]:
        sid, plain = self._pairwise.open(key, frame)
        sender = id_from_raw(sid.sender)
        if not self._circle.is_member(sender):
            raise TrustError(f"key update from {sender[:10]}, who is not a member")
        return sender, _key_update.decode(plain)

    async def serve_rekey(self, key: str, frame: bytes) -> bytes | None:
        try:
            sender, update = self._read(key, frame)
            self._circle.accept_list(update.members)
            if self._circle.is_member(sender) and self._circle.install_key(
                update.epoch, update.key, update.issuer
            ):
                log.info("%s: circle key epoch %d from %s", self._name, update.epoch, sender[:10])
        except (SealError, TrustError, *DECODE_ERRORS) as exc:
            self._quiet.warn(
                "rekey:" + type(exc).__name__, "%s: ignored key update: %s", self._name, exc
            )
            return None
        state = self._circle.state
        if (state.epoch, state.circle_key) == (update.epoch, update.key):
            return KEY_HELD  # taken now, or ours already
        return KEY_REFUSED  # out of what our member list justifies, or lost to a newer key

    async def push(self, device_id: str) -> bool:
        """Send our circle key and member list to one member on a fresh pairwise
        session. False if it did not answer."""
        member = self._circle.member(device_id)
        if member is None:
            return False
        initiator = session.Initiator(self._identity, device_id)
        offer = initiator.offer()
        try:
            replies = await self._bus.get(keys.session_key(device_id), self._timeout, offer)
            answers = [a for _, a in replies if not self._channels.heard_notice(a)]
            if not answers:
                return False
            secret = initiator.on_answer(answers[0], member.public_key)
            if not self._circle.is_member(device_id):
                return False  # revoked while we were talking: it gets no key
            state = self._circle.state
            update = KeyUpdate(
                self._circle.signed_list(),
                state.epoch,
                state.circle_key,
                state.key_issuer or self._me,
            )
            number = session_number(offer)
            sid = StreamId(Kind.PAIRWISE, raw_id(self._me), number, self._circle.boot)
            key = keys.rekey_key(device_id)
            frame = Sealer(secret, sid).seal(key, encode(update))
            replies = await self._bus.get(key, self._timeout, frame)
            return any(reply == KEY_HELD for _, reply in replies)
        except TrustError as exc:
            log.warning(
                "%s: could not send the circle key to %s: %s", self._name, device_id[:10], exc
            )
            return False

    async def push_all(self, targets: list[str]) -> dict[str, bool]:
        results = await asyncio.gather(*(self.push(t) for t in targets))
        return dict(zip(targets, results, strict=True))
