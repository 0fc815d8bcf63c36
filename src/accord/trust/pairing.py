"""PIN pairing over the bus: the host's window and the joiner's side.

On the wire (``accord/v1/pair/<host id>``, see docs/protocol.md) each step is a
query whose payload is a :class:`PairRequest` and whose reply is a
:class:`PairReply`. After the SPAKE2 handshake (``accord.trust.pake``), the joiner
sends its identity and the host sends the circle's credentials, both encrypted
under the handshake's session key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from accord.device.identity import Identity, device_id_for
from accord.errors import PairingError, TrustError
from accord.trust import members as ml
from accord.trust.circle import Circle
from accord.trust.pake import Host, Joiner
from accord.wire.messages import DECODE_ERRORS, DeviceId

log = logging.getLogger(__name__)

Step = Literal["hello", "confirm", "abort"]
_AAD = b"accord/v1/pair-credentials"
_NONCE_JOINER = (1).to_bytes(12, "big")
_NONCE_HOST = (2).to_bytes(12, "big")
MAX_PENDING = 4
PENDING_TTL_S = 30.0


class PairRequest(msgspec.Struct, frozen=True):
    v: int
    step: Step
    joiner_id: DeviceId
    data: Annotated[bytes, msgspec.Meta(max_length=4096)]


class PairReply(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    error: str = ""
    data: bytes = b""


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
        self._pending: dict[str, tuple[Host, float]] = {}

    def handle(self, payload: bytes) -> bytes:
        try:
            req = _request.decode(payload)
        except DECODE_ERRORS:
            return _fail("malformed pairing request")
        try:
            data = self._step(req)
        except (PairingError, TrustError) as exc:
            return _fail(str(exc))
        return msgspec.msgpack.encode(PairReply(True, data=data))

    def _step(self, req: PairRequest) -> bytes:
        self._expire()
        if req.step == "abort":
            if self._pending.pop(req.joiner_id, None) is not None:
                log.warning("pairing attempt by %s failed: wrong PIN", req.joiner_id[:10])
            return b""
        if req.step == "hello":
            return self._hello(req)
        return self._confirm(req)

    def _hello(self, req: PairRequest) -> bytes:
        if not self._circle.pairing_open():
            raise PairingError("this device is not accepting pairing (run: accord pair open)")
        if self._circle.is_member(req.joiner_id):
            raise PairingError("that device is already a member of this circle")
        if self._circle.standing(req.joiner_id) == "revoked":
            raise PairingError("that device was revoked; it must rejoin with a new identity")
        if len(self._pending) >= MAX_PENDING and req.joiner_id not in self._pending:
            raise PairingError("too many pairing attempts at once; try again shortly")
        pin = self._circle.state.pairing_pin
        # Counted before answering, so a guesser who never confirms is counted too;
        # the fifth attempt closes the window for any later one.
        self._circle.count_pairing_attempt()
        host = Host(pin, self._identity.device_id)
        challenge = host.on_hello(req.joiner_id, req.data)
        self._pending[req.joiner_id] = (host, self._now())
        return challenge

    def _confirm(self, req: PairRequest) -> bytes:
        entry = self._pending.pop(req.joiner_id, None)
        if entry is None:
            raise PairingError("no pairing handshake in progress for this device")
        host = entry[0]
        if len(req.data) < 32:
            raise PairingError("malformed pairing confirmation")
        host.on_confirm(req.data[:32])  # raises PairingError on a wrong PIN
        assert host.keys is not None
        info = _open(host.keys.session, _NONCE_JOINER, req.data[32:], JoinerInfo)
        assert isinstance(info, JoinerInfo)
        if device_id_for(info.public_key) != req.joiner_id:
            raise PairingError("the joining device's key does not match its id")
        member = ml.Member(
            device_id=req.joiner_id,
            public_key=info.public_key,
            name=info.name[:200] or "device",
            type=info.type[:64] or "device",
            security_level=info.security_level,
            added_by=self._identity.device_id,
            added_at=time.time(),
        )
        try:
            self._circle.add_member(member)
        except msgspec.ValidationError as exc:
            raise PairingError(f"invalid joining device: {exc}") from None
        self._circle.pairing_succeeded()
        creds = Credentials(
            host_public_key=self._identity.public_bytes,
            members=self._circle.signed_list(),
            epoch=self._circle.state.epoch,
            circle_key=self._circle.state.circle_key,
        )
        self._on_paired(Paired(member.device_id, member.name, host.keys.code))
        return _seal(host.keys.session, _NONCE_HOST, creds)

    def _expire(self) -> None:
        now = self._now()
        for joiner, (_, started) in list(self._pending.items()):
            if now - started > PENDING_TTL_S:
                del self._pending[joiner]


def _fail(message: str) -> bytes:
    return msgspec.msgpack.encode(PairReply(False, error=message))


Ask = Callable[[bytes], Awaitable[bytes | None]]


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
    the host and returns its reply (None: no answer)."""
    me = identity.device_id
    joiner = Joiner(pin, me, host_id)

    async def step(kind: Step, data: bytes) -> bytes:
        raw = await ask(msgspec.msgpack.encode(PairRequest(1, kind, me, data)))
        if raw is None:
            raise PairingError("the device did not answer; is it online and in range?")
        try:
            reply = _reply.decode(raw)
        except DECODE_ERRORS:
            raise PairingError("the device sent a malformed pairing reply") from None
        if not reply.ok:
            raise PairingError(reply.error or "pairing refused")
        return reply.data

    challenge = await step("hello", joiner.hello())
    try:
        confirm = joiner.on_challenge(challenge)
    except PairingError:
        with contextlib.suppress(PairingError):
            await step("abort", b"")  # lets the host log the failure at once
        raise
    assert joiner.keys is not None
    info = JoinerInfo(identity.public_bytes, name, device_type, level)
    sealed = await step("confirm", confirm + _seal(joiner.keys.session, _NONCE_JOINER, info))
    creds = _open(joiner.keys.session, _NONCE_HOST, sealed, Credentials)
    assert isinstance(creds, Credentials)
    if device_id_for(creds.host_public_key) != host_id:
        raise PairingError("the host's key does not match the device id we paired with")
    members = ml.adopt(creds.members, creds.host_public_key)
    if len(creds.circle_key) != 32:
        raise PairingError("malformed circle key")
    circle.join(members, creds.epoch, creds.circle_key)
    host = members.member(host_id)
    return Paired(host_id, host.name if host else host_id, joiner.keys.code)
