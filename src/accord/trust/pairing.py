"""PIN pairing over the bus: the messages, and the joiner's side (the host's window
is :mod:`accord.trust.pairing_host`).

On the wire (``accord/v1/pair/<host id>``, see docs/protocol.md) each step is a
query whose payload is a :class:`PairRequest` and whose reply is a
:class:`PairReply`. After the SPAKE2 handshake (``accord.trust.pake``), the joiner
sends its identity and the host sends the circle's credentials, both encrypted
under the handshake's session key. The rules a host keeps, since anyone may send
these requests, are in :mod:`accord.trust.pairing_host`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from accord.device.identity import Identity, device_id_for
from accord.errors import PairingError
from accord.trust import members as ml
from accord.trust.circle import Circle
from accord.trust.pake import Joiner
from accord.wire.messages import DECODE_ERRORS, DeviceId

Step = Literal["hello", "confirm", "abort"]
_AAD = b"accord/v1/pair-credentials"
_NONCE_JOINER = (1).to_bytes(12, "big")
_NONCE_HOST = (2).to_bytes(12, "big")
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
