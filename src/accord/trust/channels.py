"""Long-lived pairwise channels: one sealed, authenticated lane per pair of members.

Frames sealed under the circle key prove only that *a* member sent them, and any
member can open them. What must reach one member and no other (data a lower
security level may not see) travels on a pairwise session instead: the signed
ephemeral X25519 handshake of :mod:`accord.trust.session`, kept for as long as both
sides run rather than redone per message.

Either side may start a session; both then seal with it (their own sender id keeps
the directions' keys apart) and the newest session with a peer is the one used to
send. A restarted peer has forgotten its sessions, so frames it cannot open make
it start a new one, and its first frame on it replaces the old session on our side.
Sans-IO: the caller carries offers and answers.

A session we *answered* is pending until the peer seals a frame on it: an offer is
signed but carries nothing fresh from us, so anyone can replay a captured one. Until
the peer proves it holds the session, we never send on it and it cannot push a
working session out (pending ones are kept apart, MAX_PENDING per peer). A session
we *started* is confirmed by the peer's signed answer over our fresh ephemeral key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from accord.device.identity import Identity, id_from_raw, raw_id
from accord.errors import TrustError
from accord.trust import session
from accord.trust.sessions import session_number
from accord.wire.seal import Kind, Opener, Sealer, StreamId

Plaintext = bytes | bytearray | memoryview  # what seal() takes: any contiguous buffer

# The reply to a query sealed on a channel the answerer does not hold (it restarted,
# or the asker is no member): open a new channel and ask again. Unauthenticated, so
# an asker acts on it only when no authentic reply came; whatever it asked did not run.
NO_CHANNEL = b""
MAX_PER_PEER = 4  # confirmed sessions kept per peer: the newest sends, older ones open
MAX_PENDING = 2  # answered sessions per peer not yet used by the peer
ANSWERED_MEMORY = 64  # offer numbers remembered per peer, to refuse their replays cheaply


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
        self._sessions: dict[str, list[_Session]] = {}  # confirmed, oldest first
        self._pending: dict[str, list[_Session]] = {}
        self._answered: dict[str, OrderedDict[int, None]] = {}  # per member: bounded
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
        self._confirm(peer, self._session(session_number(offer), secret))

    def respond(self, offer: bytes) -> tuple[str, bytes]:
        """Answer a member's offer; returns (its device id, answer). Raises
        :class:`TrustError` for anything else. The session stays pending until the
        peer seals a frame on it. An offer answered before (one of the last
        :data:`ANSWERED_MEMORY` per peer) is refused before any crypto, so replaying
        captured offers costs us a hash and a lookup, and never replaces a session."""
        number = session_number(offer)
        claimed = offer[: session.ID_LEN].decode("ascii", "replace")
        if number in self._answered.get(claimed, ()):
            raise TrustError("session offer replayed")
        peer, answer, secret = session.respond(self._identity, offer, self._key_of)
        answered = self._answered.setdefault(peer, OrderedDict())
        answered[number] = None
        while len(answered) > ANSWERED_MEMORY:
            answered.popitem(last=False)
        if any(s.number == number for s in self._sessions.get(peer, ())):
            raise TrustError("session offer replayed")  # never replace a working session
        kept = [s for s in self._pending.get(peer, []) if s.number != number]
        kept.append(self._session(number, secret))
        self._pending[peer] = kept[-MAX_PENDING:]
        return peer, answer

    def _session(self, number: int, secret: bytes) -> _Session:
        sid = StreamId(Kind.PAIRWISE, self._raw_me, number, self._boot)
        return _Session(number, secret, Sealer(secret, sid))

    def _confirm(self, peer: str, confirmed: _Session) -> None:
        kept = [s for s in self._sessions.get(peer, []) if s.number != confirmed.number]
        kept.append(confirmed)
        self._sessions[peer] = kept[-MAX_PER_PEER:]
        pending = self._pending.get(peer)
        if pending is not None:
            self._pending[peer] = [s for s in pending if s.number != confirmed.number]

    @property
    def device_id(self) -> str:
        return self._me

    # -- use ---------------------------------------------------------------------

    def has(self, peer: str) -> bool:
        return bool(self._sessions.get(peer)) and self._key_of(peer) is not None

    def seal(self, peer: str, key_expr: str, payload: Plaintext) -> bytes | None:
        """Seal for ``peer`` on the newest session, or None if there is none yet."""
        sessions = self._sessions.get(peer)
        if not sessions or self._key_of(peer) is None:
            return None
        # The AEAD reads any buffer: a caller may seal from a reused bytearray.
        return sessions[-1].sealer.seal(key_expr, cast(bytes, payload))

    def seal_buffer(self, peer: str, key_expr: str, payload: Plaintext) -> bytearray | None:
        """:meth:`seal`, written into one new buffer (no copy of a large payload to
        join header and ciphertext): the same frame, for payloads of 64 KiB or more."""
        sessions = self._sessions.get(peer)
        if not sessions or self._key_of(peer) is None:
            return None
        return sessions[-1].sealer.seal_buffer(key_expr, payload)

    def open(self, key_expr: str, frame: bytes) -> tuple[str, bytes]:
        """(sender, plaintext) of a frame a member sealed for us; :class:`SealError`
        otherwise (:class:`UnknownSender` also for a session we do not hold)."""
        sid, plain = self._opener.open(key_expr, frame)
        peer = id_from_raw(sid.sender)
        sessions = self._sessions.get(peer)
        if not sessions or sessions[-1].number != sid.epoch:
            # The peer used a session: it holds it, and it is now the one we send on.
            for s in [*self._pending.get(peer, []), *(sessions or [])]:
                if s.number == sid.epoch:
                    self._confirm(peer, s)
                    break
        return peer, plain

    def forget(self, peer: str) -> None:
        """Drop every session with ``peer`` (it left, restarted, or was revoked)."""
        self._sessions.pop(peer, None)
        self._pending.pop(peer, None)  # (answered numbers are kept: replays stay refused)
        self._opener.forget(raw_id(peer))

    def peers(self) -> list[str]:
        """Every peer we hold a session with, confirmed or pending."""
        return sorted(set(self._sessions) | set(self._pending))

    def _root_for(self, sid: StreamId) -> bytes | None:
        if sid.kind != Kind.PAIRWISE:
            return None
        peer = id_from_raw(sid.sender)
        if self._key_of(peer) is None:
            return None
        for s in [*self._sessions.get(peer, []), *self._pending.get(peer, [])]:
            if s.number == sid.epoch:
                secret: bytes = s.secret
                return secret
        return None
