"""Pairwise channels on a running node: the one way members prove who sent a message.

Every member holds the circle key, so a frame sealed under it proves only that *a*
member sent it. Everything whose sender matters (RPC requests, replies, stream
frames, cancels and credit; data sync) travels on a pairwise channel instead
(:mod:`accord.trust.channels`): a signed ephemeral X25519 handshake per pair of
members and boot, answered on ``accord/v1/channel/<id>``, then ChaCha20-Poly1305
frames whose sender field is bound to that handshake.

Threat model of this module's one handler (``_serve_channel``): an offer may come
from anyone. Only a current member's signed offer gets an answer; a replayed offer
gets one too, but the session it makes stays *pending* (never used to send) until
the peer proves it holds it by sealing a frame on it, so replays cannot break a
working channel. Handshakes we start are single-flight per peer; the ones strangers
make us answer cost one X25519 and two signature operations each.

Revocation notices: a revoked device can open no channel with us, so when its offer
(or a frame naming it) reaches us, we answer with the signed proof of its revocation
instead, in plaintext (:class:`RevocationNotice`): the proof is signed by its revoker,
whose key the revoked device holds, and says only that it was revoked. At most
:data:`NOTICE_BURST` notices per revoked device go out every :data:`NOTICE_EVERY_S`,
since the sender of an offer or frame is only claimed. A member also sends the notice
to the revoked device's channel key. A device believes a notice only if the proof
verifies against a member of its own list with the authority to revoke it
(:meth:`Circle.learn_revocation`), and checks at most :data:`NOTICE_CHECKS_PER_S` a
second while it is still a member, so forged notices change nothing and cost little.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Final

import msgspec

from accord.bus import keys
from accord.bus.session import Bus, Undo
from accord.clock import Clock
from accord.device.identity import Identity, id_from_raw, verify
from accord.errors import TrustError
from accord.trust import session
from accord.trust.channels import NO_CHANNEL, Channels, Plaintext
from accord.trust.circle import Circle
from accord.trust.members import Revocation
from accord.wire.messages import DECODE_ERRORS
from accord.wire.quiet import QuietLog
from accord.wire.seal import HEADER

log = logging.getLogger(__name__)

__all__ = ["NOTICE_PREFIX", "NO_CHANNEL", "ChannelService", "RevocationNotice"]

RESHAKE_AFTER_S: Final = 1.0  # at most one unprompted handshake per peer this often
NOTICE_PREFIX: Final = b"accord/v1/revoked\x00"  # never the start of an offer or frame
NOTICE_EVERY_S: Final = 1.0
NOTICE_BURST: Final = 3  # notices to one revoked device per NOTICE_EVERY_S, at most
NOTICE_CHECKS_PER_S: Final = 20.0  # notices about this device verified a second, at most
MAX_NOTICE: Final = 512


class RevocationNotice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Tells a revoked device it was revoked: ``NOTICE_PREFIX`` || MessagePack of this."""

    circle_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    proof: Revocation


_notice = msgspec.msgpack.Decoder(RevocationNotice)


def decode_notice(payload: bytes) -> RevocationNotice | None:
    """The notice in ``payload``, or None if it is none or is malformed."""
    if not payload.startswith(NOTICE_PREFIX) or len(payload) > MAX_NOTICE:
        return None
    try:
        return _notice.decode(payload[len(NOTICE_PREFIX) :])
    except DECODE_ERRORS:
        return None


class ChannelService:
    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        identity: Identity,
        clock: Clock,
        *,
        name: str,
        query_timeout: float,
    ) -> None:
        self._bus = bus
        self._circle = circle
        self._me = identity.device_id
        self._clock = clock
        self._name = name
        self._timeout = query_timeout
        self.channels = Channels(identity, circle.boot, self._public_key_of)
        self._handshakes: dict[str, asyncio.Future[bool]] = {}
        self._last_shake: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Undo] = []
        self._quiet = QuietLog(log)
        self._noticed: dict[str, list[float]] = {}  # revoked id -> when we told it
        self._checks = (NOTICE_CHECKS_PER_S, clock.monotonic())  # token bucket

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.channel_key(self._me), self._serve_channel))
        self._undo.append(self._circle.on_change(self._membership_changed))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _public_key_of(self, device_id: str) -> bytes | None:
        if device_id == self._me:
            return None
        member = self._circle.member(device_id)
        if member is None or not self._circle.is_member(device_id):
            return None
        return member.public_key

    # -- use -----------------------------------------------------------------------

    def has(self, peer: str) -> bool:
        return self.channels.has(peer)

    async def ensure(self, peer: str) -> bool:
        """A channel to ``peer`` exists (opening one if needed); False if it cannot."""
        return self.channels.has(peer) or await self.handshake(peer)

    def seal(self, peer: str, key_expr: str, payload: Plaintext) -> bytes | None:
        return self.channels.seal(peer, key_expr, payload)

    def seal_buffer(self, peer: str, key_expr: str, payload: Plaintext) -> bytearray | None:
        """:meth:`seal` into one new buffer: for large payloads (64 KiB or more), whose
        frame then goes to ``Bus.put``/a replier as it is, without another copy."""
        return self.channels.seal_buffer(peer, key_expr, payload)

    def open(self, key_expr: str, frame: bytes) -> tuple[str, bytes]:
        """(sender, plaintext) of a frame a member sealed for us; SealError otherwise."""
        return self.channels.open(key_expr, frame)

    def forget(self, peer: str) -> None:
        self.channels.forget(peer)

    def stale_member(self, frame: bytes) -> bool:
        """Does ``frame`` (which did not open: no channel) name a current member as its
        sender? Only then is the "no channel" hint worth sending; strangers get
        nothing. The sender field is not authenticated, so the hint says nothing a
        stranger could not know. A revoked device gets it too (when we hold the proof
        of its revocation): it opens a new channel, and is told it was revoked."""
        if len(frame) < HEADER.size:
            return False
        sender = id_from_raw(HEADER.unpack_from(frame)[2])
        if self._circle.standing(sender) == "revoked":
            return self.notice(sender) is not None
        return self._public_key_of(sender) is not None

    # -- handshakes ----------------------------------------------------------------

    async def handshake(self, peer: str) -> bool:
        """Open a channel to ``peer`` (one attempt in flight per peer)."""
        running = self._handshakes.get(peer)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handshakes[peer] = fut
        self._last_shake[peer] = self._clock.monotonic()
        ok = False
        try:
            initiator, offer = self.channels.initiate(peer)
            replies = await self._bus.get(keys.channel_key(peer), self._timeout, offer)
            for _, answer in replies:  # anyone may answer a query; only the peer can sign
                if self.heard_notice(answer):
                    continue
                try:
                    self.channels.complete(peer, initiator, offer, answer)
                except TrustError as exc:
                    self._quiet.warn("shake:" + peer, "%s: bad channel answer for %s: %s",
                                    self._name, peer[:10], exc)  # fmt: skip
                    continue
                ok = True
                break
        except TrustError as exc:
            self._quiet.warn(
                "shake:" + peer, "%s: no channel to %s: %s", self._name, peer[:10], exc
            )
        finally:
            del self._handshakes[peer]
            fut.set_result(ok)
        return ok

    async def _serve_channel(self, _key: str, offer: bytes) -> bytes | None:
        if offer.startswith(NOTICE_PREFIX):  # a member tells us we were revoked
            self.heard_notice(offer)
            return b"ok" if self._circle.membership() == "revoked" else None
        try:
            _peer, answer = self.channels.respond(offer)
        except TrustError as exc:
            log.debug("%s: refused channel offer: %s", self._name, exc)
            return self.notice_for_offer(offer)
        return answer

    def reshake_for(self, frame: bytes) -> None:
        """A member sealed on a channel we lack (we restarted): open a new one, which
        it will then use too. Rate-limited per peer: the sender field of a frame we
        cannot open is not authenticated."""
        if len(frame) < HEADER.size:
            return
        peer = id_from_raw(HEADER.unpack_from(frame)[2])
        if self._public_key_of(peer) is None or peer in self._handshakes:
            return
        last = self._last_shake.get(peer)
        if last is not None and self._clock.monotonic() - last < RESHAKE_AFTER_S:
            return
        task = asyncio.get_running_loop().create_task(self.handshake(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- revocation notices --------------------------------------------------------

    def notice(self, device_id: str) -> bytes | None:
        """The notice that ``device_id`` was revoked, if we hold its proof (not rate
        limited: for a member that sends it once)."""
        members = self._circle.members
        if device_id not in members.revoked or device_id == self._me:
            return None  # a member (perhaps admitted again since its last proof)
        proofs = [r for r in members.revocations if r.device_id == device_id]
        proof = max(proofs, key=lambda r: r.at) if proofs else None  # the latest revokes it
        if proof is None:
            return None
        return NOTICE_PREFIX + msgspec.msgpack.encode(RevocationNotice(members.circle_id, proof))

    def _notice_to(self, device_id: str) -> bytes | None:
        """The notice for a revoked device that reached us, within its rate limit."""
        if self._circle.standing(device_id) != "revoked":
            return None
        now = self._clock.monotonic()
        sent = [t for t in self._noticed.get(device_id, ()) if now - t < NOTICE_EVERY_S]
        if len(sent) >= NOTICE_BURST:
            return None
        notice = self.notice(device_id)
        if notice is not None:
            self._noticed[device_id] = [*sent, now]
            log.info("%s: told %s it was revoked", self._name, device_id[:10])
        return notice

    def notice_for_offer(self, offer: bytes) -> bytes | None:
        """Answer to a session offer refused because its sender was revoked: the
        notice, if the offer is signed by that device (replays pass: rate-limited)."""
        if len(offer) != session.OFFER_LEN:
            return None
        claimed = offer[: session.ID_LEN].decode("ascii", "replace")
        to = offer[session.ID_LEN : 2 * session.ID_LEN].decode("ascii", "replace")
        if to != self._me or self._circle.standing(claimed) != "revoked":
            return None
        record = next((m for m in self._circle.members.members if m.device_id == claimed), None)
        ids_and_eph = offer[: 2 * session.ID_LEN + session.KEY_LEN]
        signature = offer[2 * session.ID_LEN + session.KEY_LEN :]
        if record is None or not verify(
            record.public_key, signature, session.CONTEXT + ids_and_eph
        ):
            return None
        return self._notice_to(claimed)

    def notice_for_frame(self, frame: bytes) -> bytes | None:
        """Answer to a sealed frame we could not open whose claimed sender was revoked:
        the notice (rate-limited; the sender field is not authenticated)."""
        if len(frame) < HEADER.size:
            return None
        return self._notice_to(id_from_raw(HEADER.unpack_from(frame)[2]))

    def heard_notice(self, payload: bytes) -> bool:
        """Is ``payload`` a revocation notice? One about this device is taken if its
        proof verifies (see :meth:`Circle.learn_revocation`); a check costs a
        signature verification, so only so many a second are made."""
        if not payload.startswith(NOTICE_PREFIX):
            return False
        notice = decode_notice(payload)
        members = self._circle.members
        if (
            notice is None
            or notice.proof.device_id != self._me
            or notice.circle_id != members.circle_id
            or self._circle.membership() == "revoked"
            or not self._take_check()
        ):
            return True
        if not self._circle.learn_revocation(notice.circle_id, notice.proof):
            by = notice.proof.by[:10]
            self._quiet.warn("notice:" + by, "%s: ignored a revocation notice that does not "
                            "verify (by %s)", self._name, by)  # fmt: skip
        return True

    def _take_check(self) -> bool:
        tokens, at = self._checks
        now = self._clock.monotonic()
        tokens = min(NOTICE_CHECKS_PER_S, tokens + (now - at) * NOTICE_CHECKS_PER_S)
        if tokens < 1.0:
            self._checks = (tokens, now)
            return False
        self._checks = (tokens - 1.0, now)
        return True

    def _membership_changed(self) -> None:
        for peer in self.channels.peers():
            if self._public_key_of(peer) is None:
                self.channels.forget(peer)
