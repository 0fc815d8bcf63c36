"""Messages on the wire, encoded as MessagePack maps (see docs/protocol.md).

Decoding is the one place peer bytes become structs: any input either decodes
to a valid message or raises :class:`WireError`; nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, TypeVar

import msgspec

from accord.errors import WireError
from accord.profile import Profile, _check

PROTOCOL_VERSION = 1
MAX_ANNOUNCEMENT_BYTES = 64 * 1024

DEVICE_ID = re.compile(r"^[a-z2-7]{26}$")
DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[a-z2-7]{26}$")]


ANNOUNCE_DOMAIN = b"accord/v1/announce"
MAX_SEQ = 2**63 - 1
SIGNATURE_BYTES = 64


class PublicAnnouncement(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """All that a device tells anyone who asks (members or not), signed by its
    identity key (see :func:`signed_bytes`)."""

    v: int
    device_id: DeviceId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    pairing: bool = False
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0
    sig: Annotated[bytes, msgspec.Meta(max_length=SIGNATURE_BYTES)] = b""


class Announcement(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A device's details, sent sealed to circle members only: who it is and what it has."""

    v: int
    device_id: DeviceId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    profile: Profile
    started_at: float
    capabilities: list[str] = []


DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError)
"""Everything decoding peer bytes with msgspec can raise. DecodeError covers
ValidationError; msgspec lets bad UTF-8 and very deep nesting escape as their own
exceptions, and a peer must never reach those. Catch this tuple at every boundary."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Announcement)
_public_decoder = msgspec.msgpack.Decoder(PublicAnnouncement)


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


_A = TypeVar("_A", Announcement, PublicAnnouncement)


def _decode(data: bytes, decoder: msgspec.msgpack.Decoder[_A]) -> _A:
    """The checks every announcement passes: size, shape, version, id owns the key."""
    if len(data) > MAX_ANNOUNCEMENT_BYTES:
        raise WireError(f"announcement of {len(data)} bytes exceeds {MAX_ANNOUNCEMENT_BYTES}")
    try:
        ann = decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"invalid announcement: {exc}") from exc
    if ann.v != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {ann.v} (this node speaks 1)")
    from accord.device.identity import device_id_for

    if device_id_for(ann.public_key) != ann.device_id:
        raise WireError("announcement device_id does not match its public key")
    return ann


def decode_announcement(data: bytes) -> Announcement:
    """Decode and validate a member's details; any failure is a WireError."""
    ann = _decode(data, _decoder)
    try:
        _check(ann.profile)
    except Exception as exc:
        raise WireError(f"invalid announcement profile: {exc}") from exc
    return ann


def _field(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def signed_bytes(ann: PublicAnnouncement) -> bytes:
    """What a public announcement's ``sig`` signs (docs/protocol.md)::

    "accord/v1/announce" || u8 v || device_id (26 ASCII) || public_key (32)
    || u16 len || name (UTF-8) || u16 len || type (UTF-8) || u8 pairing || u64 seq
    """
    return b"".join(
        (
            ANNOUNCE_DOMAIN,
            ann.v.to_bytes(1, "big"),
            ann.device_id.encode(),
            ann.public_key,
            _field(ann.name),
            _field(ann.type),
            b"\x01" if ann.pairing else b"\x00",
            ann.seq.to_bytes(8, "big"),
        )
    )


def sign_public(ann: PublicAnnouncement, sign: Callable[[bytes], bytes]) -> PublicAnnouncement:
    """``ann`` with its signature, made by ``sign`` (the device's identity key)."""
    return msgspec.structs.replace(ann, sig=sign(signed_bytes(ann)))


def decode_public(data: bytes) -> PublicAnnouncement:
    """Decode and validate a public announcement, including its signature by the
    key whose hash is its device id; any failure is a WireError."""
    ann = _decode(data, _public_decoder)
    if len(ann.sig) != SIGNATURE_BYTES:
        raise WireError("announcement is not signed by its device key")
    from accord.device.identity import verify

    if not verify(ann.public_key, ann.sig, signed_bytes(ann)):
        raise WireError("announcement signature does not verify")
    return ann
