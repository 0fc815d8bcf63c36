"""Long-lived pairwise channels: one sealed, authenticated lane per pair of members.

Frames sealed under the circle key prove only that *a* member sent them, and any
member can open them. What must reach one member and no other (data a lower
security level may not see) travels on a pairwise session instead: the signed
ephemeral X25519 handshake of :mod:`accord.trust.session`, kept for as long as both
sides run rather than redone per message.

Either side may start a session; both then seal with it (their own sender id keeps
the directions' keys apart) and the newest session with a peer is the one used to
send. A restarted peer has forgotten its sessions, so frames it cannot open make
it start a new one (see :meth:`Channels.stale`), and its first handshake replaces
the old session on our side too. Sans-IO: the caller carries offers and answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from accord.device.identity import Identity, id_from_raw, raw_id
from accord.errors import TrustError
from accord.trust import session
from accord.trust.sessions import session_number
from accord.wire.seal import Kind, Opener, Sealer, StreamId

MAX_PER_PEER = 4  # sessions kept per peer: the newest sends, older ones still open


@dataclass
class _Session:
    number: int
    secret: bytes
    sealer: Sealer


class Channels:
    """This device's pairwise sessions with other members.

    ``public_key_of(device_id)`` answers with a current member's identity key and
    None for anyone else; it is asked at every use, so a revocation takes effect at
    once (call :meth:`forget` too, to drop the state)."""

    def __init__(
        self,
        identity: Identity,
        boot: int,
        public_key_of: Callable[[str], bytes | None],
    ) -> None:
        self._identity = identity
        self._me = identity.device_id
        self._raw_me = raw_id(self._me)
        self._boot = boot
        self._key_of = public_key_of
        self._sessions: dict[str, list[_Session]] = {}
        self._opener = Opener(self._root_for)

    # -- handshakes --------------------------------------------------------------

    def initiate(self, peer: str) -> tuple[session.Initiator, bytes]:
        """Start a session with ``peer``: send the offer, then pass the answer to
        :meth:`complete`."""
        initiator = session.Initiator(self._identity, peer)
        return initiator, initiator.offer()

    def complete(
        self, peer: str, initiator: session.Initiator, offer: bytes, answer: bytes
    ) -> None:
        """Finish a session we started. Raises :class:`TrustError` if the answer is
        not signed by ``peer`` or ``peer`` is no longer a member."""
        key = self._key_of(peer)
        if key is None:
            raise TrustError(f"{peer[:10]} is not a member")
        secret = initiator.on_answer(answer, key)
        self._add(peer, session_number(offer), secret)

    def respond(self, offer: bytes) -> tuple[str, bytes]:
        """Answer a member's offer; returns (its device id, answer). Raises
        :class:`TrustError` for anything else."""
        peer, answer, secret = session.respond(self._identity, offer, self._key_of)
        self._add(peer, session_number(offer), secret)
        return peer, answer

    def _add(self, peer: str, number: int, secret: bytes) -> None:
        sid = StreamId(Kind.PAIRWISE, self._raw_me, number, self._boot)
        kept = [s for s in self._sessions.get(peer, []) if s.number != number]
        kept.append(_Session(number, secret, Sealer(secret, sid)))
        self._sessions[peer] = kept[-MAX_PER_PEER:]

    # -- use ---------------------------------------------------------------------

    def has(self, peer: str) -> bool:
        return bool(self._sessions.get(peer)) and self._key_of(peer) is not None

    def seal(self, peer: str, key_expr: str, payload: bytes) -> bytes | None:
        """Seal for ``peer`` on the newest session, or None if there is none yet."""
        sessions = self._sessions.get(peer)
        if not sessions or self._key_of(peer) is None:
            return None
        return sessions[-1].sealer.seal(key_expr, payload)

    def open(self, key_expr: str, frame: bytes) -> tuple[str, bytes]:
        """(sender, plaintext) of a frame a member sealed for us; :class:`SealError`
        otherwise (:class:`UnknownSender` also for a session we do not hold)."""
        sid, plain = self._opener.open(key_expr, frame)
        return id_from_raw(sid.sender), plain

    def forget(self, peer: str) -> None:
        """Drop every session with ``peer`` (it left, restarted, or was revoked)."""
        self._sessions.pop(peer, None)
        self._opener.forget(raw_id(peer))

    def _root_for(self, sid: StreamId) -> bytes | None:
        if sid.kind != Kind.PAIRWISE:
            return None
        peer = id_from_raw(sid.sender)
        if self._key_of(peer) is None:
            return None
        for s in self._sessions.get(peer, ()):
            if s.number == sid.epoch:
                return s.secret
        return None
