"""PIN pairing over the bus: the host's window and the joiner's side.

On the wire (``accord/v1/pair/<host id>``, see docs/protocol.md) each step is a
query whose payload is a :class:`PairRequest` and whose reply is a
:class:`PairReply`. After the SPAKE2 handshake (``accord.trust.pake``), the joiner
sends its identity and the host sends the circle's credentials, both encrypted
under the handshake's session key.

Anyone may send these requests, so the host's rules are:

- an attempt is counted when the host answers a well-formed hello, since that
  answer is what lets the joiner test one PIN guess; a hello that tests nothing
  (malformed, refused) is not counted, and neither confirm nor abort counts;
- the answer carries a fresh random handshake id, and only a request naming it
  (which only the joiner that received the answer knows) may confirm or abort
  that handshake;
- a handshake confirms only while its window is still open with the same PIN,
  and success closes the window: one PIN admits one device.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from accord.device.identity import Identity, device_id_for
from accord.errors import PairingError, TrustError
from accord.trust import members as ml
from accord.trust.circle import PAIRING_MAX_FAILURES, Circle
from accord.trust.pake import SIDE_A, SPAKE_MSG, Host, Joiner
from accord.wire.messages import DECODE_ERRORS, DeviceId
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

Step = Literal["hello", "confirm", "abort"]
_AAD = b"accord/v1/pair-credentials"
_NONCE_JOINER = (1).to_bytes(12, "big")
_NONCE_HOST = (2).to_bytes(12, "big")
MAX_PENDING = PAIRING_MAX_FAILURES  # at most this many hellos are answered per window
PENDING_TTL_S = 30.0
HELLO_RATE = 10.0  # hellos a second that may cost the host SPAKE2 work (burst 10)
HELLO_BURST = 10
HANDSHAKE_ID_BYTES = 16
PAIR_VERSION = 1  # PairRequest.v: a host refuses any other, saying so
REFUSALS: Final = (
    "Malformed",  # not a pairing request, or a hello/confirm of the wrong shape
    "Unsupported",  # another PairRequest.v
    "WindowClosed",  # not accepting pairing, the window closed, or the handshake is old
    "AlreadyMember",
    "RevokedForGood",  # revoked without a proof: it can rejoin only with a new identity
    "Busy",  # too many handshakes at once, or hellos faster than the host does them
    "NoHandshake",  # no handshake of that id for that joiner
    "WrongPin",
    "BadJoiner",  # its key, level or sealed details do not hold
    "Refused",  # anything else (e.g. the circle is full)
)


class Refusal(PairingError):
    """A host's refusal of one pairing request, and its ``kind`` (one of REFUSALS)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PairRequest(msgspec.Struct, frozen=True):
    v: int
    step: Step
    joiner_id: DeviceId
    data: Annotated[bytes, msgspec.Meta(max_length=4096)]
    handshake: Annotated[bytes, msgspec.Meta(max_length=HANDSHAKE_ID_BYTES)] = b""


class PairReply(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    error: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    # Why a request was refused, for programs (``error`` is for people): one of
    # REFUSALS. Empty on success (and from hosts older than this field).
    error_type: Annotated[str, msgspec.Meta(max_length=32)] = ""
    data: Annotated[bytes, msgspec.Meta(max_length=1 << 20)] = b""
    handshake: Annotated[bytes, msgspec.Meta(max_length=HANDSHAKE_ID_BYTES)] = b""


class JoinerInfo(msgspec.Struct, frozen=True):
    public_key: bytes
    name: str
    type: str
    security_level: str


class Credentials(msgspec.Struct, frozen=True):
    host_public_key: bytes
    members: ml.SignedList
    epoch: int
    circle_key: bytes


_request = msgspec.msgpack.Decoder(PairRequest)
_reply = msgspec.msgpack.Decoder(PairReply)


def decode_request(data: bytes) -> PairRequest:
    """A pairing request from anyone; any failure is a PairingError."""
    try:
        return _request.decode(data)
    except DECODE_ERRORS:
        raise PairingError("malformed pairing request") from None


def decode_reply(data: bytes) -> PairReply:
    """A pairing reply from whoever answered; any failure is a PairingError."""
    try:
        return _reply.decode(data)
    except DECODE_ERRORS:
        raise PairingError("the device sent a malformed pairing reply") from None


def _seal(key: bytes, nonce: bytes, obj: object) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce, msgspec.msgpack.encode(obj), _AAD)


def _open(key: bytes, nonce: bytes, data: bytes, kind: type[msgspec.Struct]) -> object:
    try:
        return msgspec.msgpack.decode(ChaCha20Poly1305(key).decrypt(nonce, data, _AAD), type=kind)
    except (InvalidTag, msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise PairingError(f"pairing credentials do not open: {type(exc).__name__}") from None


@dataclass
class Paired:
    """What a finished pairing reports on either side."""

    device_id: str
    name: str
    code: str


@dataclass
class _Pending:
    """A handshake the host answered, waiting for its joiner's confirm or abort."""

    host: Host
    joiner_id: str
    pin: str
    expires: float  # the window's expiry when the hello was answered: names the window
    started: float


class HostWindow:
    """The host side. ``handle`` takes a request's bytes and returns the reply's."""

    def __init__(
        self,
        circle: Circle,
        identity: Identity,
        on_paired: Callable[[Paired], None],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._circle = circle
        self._identity = identity
        self._on_paired = on_paired
        self._now = now
        self._pending: dict[bytes, _Pending] = {}
        self._budget = float(HELLO_BURST)
        self._budget_at = now()
        self._quiet = QuietLog(log)

    def pending(self) -> int:
        """How many answered handshakes wait for their joiner."""
        self._expire()
        return len(self._pending)

    def handle(self, payload: bytes) -> bytes:
        try:
            try:
                req = decode_request(payload)
            except PairingError as exc:
                raise Refusal("Malformed", str(exc)) from None
            reply = self._step(req)
        except (PairingError, TrustError) as exc:
            kind = exc.kind if isinstance(exc, Refusal) else "Refused"
            # Anyone may send these: an operator sees a stranger probing, once per kind.
            self._quiet.warn("pair:" + kind, "refused a pairing request (%s): %s", kind, exc)
            reply = PairReply(False, error=str(exc)[:500], error_type=kind)
        return msgspec.msgpack.encode(reply)

    def _step(self, req: PairRequest) -> PairReply:
        if req.v != PAIR_VERSION:
            raise Refusal(
                "Unsupported",
                f"unsupported pairing protocol version {req.v} (this device speaks "
                f"{PAIR_VERSION}); update the older of the two devices",
            )
        if req.step == "hello":
            self._expire()
            return self._hello(req)
        # Only the joiner that received the answer to its hello knows the handshake id:
        # nobody else can abort, confirm or otherwise use up its handshake.
        entry = self._pending.get(req.handshake)
        if entry is None or entry.joiner_id != req.joiner_id:
            raise Refusal("NoHandshake", "no pairing handshake in progress for this device")
        del self._pending[req.handshake]
        if req.step == "abort":
            log.warning("pairing attempt by %s failed: wrong PIN", req.joiner_id[:10])
            return PairReply(True)
        return self._confirm(req, entry)

    def _hello(self, req: PairRequest) -> PairReply:
        if not self._circle.pairing_open():
            raise Refusal(
                "WindowClosed", "this device is not accepting pairing (run: accord pair open)"
            )
        if self._circle.is_member(req.joiner_id) or req.joiner_id == self._identity.device_id:
            raise Refusal(
                "AlreadyMember",
                "that device is already a member of this circle (if it just left, this "
                "device has not heard yet: try again in a moment)",
            )
        if self._circle.members.revoked_for_good(req.joiner_id):
            raise Refusal(
                "RevokedForGood",
                "that device was revoked here without a revocation proof, which cannot be "
                "undone; it can rejoin only with a new identity (accord init --force on it)",
            )
        if len(self._pending) >= MAX_PENDING:
            raise Refusal("Busy", "too many pairing attempts at once; try again shortly")
        if len(req.data) != SPAKE_MSG or req.data[:1] != SIDE_A:
            raise Refusal("Malformed", "malformed pairing hello")
        if not self._take_budget():  # each costs the host curve arithmetic: bound them
            raise Refusal("Busy", "too many pairing attempts at once; try again shortly")
        state = self._circle.state
        host = Host(state.pairing_pin, self._identity.device_id)
        try:  # malformed: refused, not counted
            challenge = host.on_hello(req.joiner_id, req.data)
        except PairingError as exc:
            raise Refusal("Malformed", str(exc)) from None
        # The challenge lets the joiner test one PIN guess, so it is counted (and saved)
        # before it is sent, whether or not the joiner ever confirms or aborts. The
        # fifth closes the window.
        self._circle.count_pairing_attempt()
        handshake = secrets.token_bytes(HANDSHAKE_ID_BYTES)
        self._pending[handshake] = _Pending(
            host, req.joiner_id, state.pairing_pin, state.pairing_expires, self._now()
        )
        return PairReply(True, data=challenge, handshake=handshake)

    def _take_budget(self) -> bool:
        """A token bucket: at most HELLO_RATE hellos a second reach SPAKE2 work."""
        now = self._now()
        self._budget = min(HELLO_BURST, self._budget + (now - self._budget_at) * HELLO_RATE)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True

    def _confirm(self, req: PairRequest, entry: _Pending) -> PairReply:
        if self._now() - entry.started > PENDING_TTL_S:
            raise Refusal("WindowClosed", "the pairing handshake timed out; try again")
        if not self._same_window(entry):
            raise Refusal("WindowClosed", "the pairing window closed before this device confirmed")
        host = entry.host
        if len(req.data) < 32:
            raise Refusal("Malformed", "malformed pairing confirmation")
        try:
            host.on_confirm(req.data[:32])
        except PairingError as exc:
            log.warning("pairing attempt by %s failed: wrong PIN", req.joiner_id[:10])
            raise Refusal("WrongPin", str(exc)) from None
        assert host.keys is not None
        try:
            info = _open(host.keys.session, _NONCE_JOINER, req.data[32:], JoinerInfo)
        except PairingError as exc:
            raise Refusal("BadJoiner", str(exc)) from None
        assert isinstance(info, JoinerInfo)
        if device_id_for(info.public_key) != req.joiner_id:
            raise Refusal("BadJoiner", "the joining device's key does not match its id")
        if ml.level_rank(info.security_level) == 0:
            raise Refusal(
                "BadJoiner",
                f"the joining device declares no valid level: {info.security_level!r}",
            )
        me = self._circle.member(self._identity.device_id)
        assert me is not None, "a pairing host is a member of its own circle"
        # A device that left or was revoked comes back as a new incarnation: its record
        # must postdate the revocation, which this host holds, so a clock behind the
        # revoker's is stepped just past it (the admission does follow it).
        since = self._circle.members.revoked_at(req.joiner_id)
        now = time.time()
        if since is not None and now <= since:
            now = since + 0.001
        # The host signs the record; it vouches for no level above its own.
        member = ml.vouch(
            self._identity,
            device_id=req.joiner_id,
            public_key=info.public_key,
            name=info.name[:200] or "device",
            type_=info.type[:64] or "device",
            declared_level=info.security_level,
            voucher_level=me.security_level,
            at=now,
        )
        try:
            self._circle.add_member(member)
        except msgspec.ValidationError as exc:
            raise Refusal("BadJoiner", f"invalid joining device: {exc}") from None
        self._circle.pairing_succeeded()  # the PIN is single use: the window closes
        creds = Credentials(
            host_public_key=self._identity.public_bytes,
            members=self._circle.signed_list(),
            epoch=self._circle.state.epoch,
            circle_key=self._circle.state.circle_key,
        )
        self._on_paired(Paired(member.device_id, member.name, host.keys.code))
        return PairReply(True, data=_seal(host.keys.session, _NONCE_HOST, creds))

    def _same_window(self, entry: _Pending) -> bool:
        """Is the window the handshake was answered in still open (not expired, not
        closed by success, lockout or its owner, not replaced by a new window)?"""
        state = self._circle.state
        return (
            self._circle.pairing_open()
            and state.pairing_pin == entry.pin
            and state.pairing_expires == entry.expires
        )

    def _expire(self) -> None:
        """Drop handshakes that timed out or whose window is gone (so a window the
        owner reopens is not blocked by handshakes strangers left pending)."""
        now = self._now()
        for handshake, entry in list(self._pending.items()):
            if now - entry.started > PENDING_TTL_S or not self._same_window(entry):
                del self._pending[handshake]


Ask = Callable[[bytes], Awaitable[list[bytes]]]
MAX_ANSWERS = 8  # replies looked at per step: anyone may answer on the host's key


async def join(
    ask: Ask,
    circle: Circle,
    identity: Identity,
    host_id: str,
    pin: str,
    name: str,
    device_type: str,
    level: str,
) -> Paired:
    """Pair this device into the host's circle. ``ask(payload)`` sends one request to
    the host's key and returns every reply (none: no answer). Anyone can answer
    there, so each step takes the reply that proves itself: the challenge whose
    confirmation is keyed by the PIN, the credentials that open under the session key."""
    me = identity.device_id
    joiner = Joiner(pin, me, host_id)

    async def step(kind: Step, data: bytes, handshake: bytes = b"") -> list[PairReply]:
        request = PairRequest(PAIR_VERSION, kind, me, data, handshake)
        raws = await ask(msgspec.msgpack.encode(request))
        if not raws:
            raise PairingError("the device did not answer; is it online and in range?")
        replies: list[PairReply] = []
        for raw in raws[:MAX_ANSWERS]:
            with contextlib.suppress(PairingError):
                replies.append(decode_reply(raw))
        if not replies:
            raise PairingError("the device sent a malformed pairing reply")
        ok = [r for r in replies if r.ok]
        if not ok:
            raise PairingError(replies[0].error or "pairing refused")
        return ok

    answers = await step("hello", joiner.hello())
    try:
        index, confirm = joiner.on_challenges([a.data for a in answers])
    except PairingError:
        for answer in answers:  # lets the host log the failure at once
            with contextlib.suppress(PairingError):
                await step("abort", b"", answer.handshake)
        raise
    handshake = answers[index].handshake
    assert joiner.keys is not None
    info = JoinerInfo(identity.public_bytes, name, device_type, level)
    sealed = await step(
        "confirm", confirm + _seal(joiner.keys.session, _NONCE_JOINER, info), handshake
    )
    creds = _first_credentials(joiner.keys.session, [r.data for r in sealed])
    if device_id_for(creds.host_public_key) != host_id:
        raise PairingError("the host's key does not match the device id we paired with")
    members = ml.adopt(creds.members, creds.host_public_key)
    if len(creds.circle_key) != 32:
        raise PairingError("malformed circle key")
    circle.join(members, creds.epoch, creds.circle_key)
    host = members.member(host_id)
    return Paired(host_id, host.name if host else host_id, joiner.keys.code)


def _first_credentials(session: bytes, candidates: list[bytes]) -> Credentials:
    """The credentials that open under the handshake's session key (only the host
    that knows the PIN can seal them)."""
    error = PairingError("no pairing credentials")
    for data in candidates:
        try:
            creds = _open(session, _NONCE_HOST, data, Credentials)
        except PairingError as exc:
            error = exc
            continue
        assert isinstance(creds, Credentials)
        return creds
    raise error
