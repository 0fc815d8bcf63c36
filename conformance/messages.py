"""Message bytes from docs/protocol.md: announcements, session offers, notices, and
the MessagePack maps (encoded untyped: the client checks fields itself)."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conformance.crypto import Identity, device_id, hkdf, verify

ANNOUNCE_DOMAIN = b"accord/v1/announce"
SESSION_DOMAIN = b"accord/v1/session"
NOTICE_PREFIX = b"accord/v1/revoked\x00"
REVOCATION_DOMAIN = b"accord/v1/revocation"
MEMBERS_DOMAIN = b"accord/v1/members"
ID_LEN = 26


class ProtocolViolation(Exception):
    """A peer's bytes break a rule of the spec."""


def pack(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def unpack(data: bytes) -> Any:
    try:
        return msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolViolation(f"not MessagePack: {exc}") from exc


def unpack_map(data: bytes, what: str) -> dict[str, Any]:
    value = unpack(data)
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{what} is not a map: {type(value).__name__}")
    return value


def announcement_signed_bytes(
    v: int, dev_id: str, public_key: bytes, name: str, dev_type: str, pairing: bool, seq: int
) -> bytes:
    n, t = name.encode(), dev_type.encode()
    return (
        ANNOUNCE_DOMAIN
        + bytes([v])
        + dev_id.encode("ascii")
        + public_key
        + struct.pack(">H", len(n))
        + n
        + struct.pack(">H", len(t))
        + t
        + bytes([1 if pairing else 0])
        + struct.pack(">Q", seq)
    )


def make_announcement(
    me: Identity, name: str, dev_type: str, seq: int, pairing: bool = False
) -> bytes:
    signed = announcement_signed_bytes(1, me.device_id, me.public_key, name, dev_type, pairing, seq)
    return pack(
        {
            "v": 1,
            "device_id": me.device_id,
            "name": name,
            "type": dev_type,
            "public_key": me.public_key,
            "pairing": pairing,
            "seq": seq,
            "sig": me.sign(signed),
        }
    )


def _field(m: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = m.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolViolation(f"field {key!r} is {value!r}, not {kind.__name__}")
    return value


def check_announcement(data: bytes) -> dict[str, Any]:
    """Validate a PublicAnnouncement by the table's rules and its signature."""
    if len(data) > 65536:
        raise ProtocolViolation("announcement over 65,536 bytes")
    m = unpack_map(data, "announcement")
    if _field(m, "v", int) != 1:
        raise ProtocolViolation(f"announcement v={m['v']}, not 1")
    dev = _field(m, "device_id", str)
    pk = _field(m, "public_key", bytes)
    name = _field(m, "name", str)
    dev_type = _field(m, "type", str)
    pairing = _field(m, "pairing", bool, False)
    seq = _field(m, "seq", int, 0)
    sig = _field(m, "sig", bytes)
    if len(pk) != 32:
        raise ProtocolViolation("public_key is not 32 bytes")
    if dev != device_id(pk):
        raise ProtocolViolation("device_id does not match public_key")
    if not 1 <= len(name) <= 200 or not 1 <= len(dev_type) <= 64 or not 0 <= seq < 2**63:
        raise ProtocolViolation("name, type or seq out of bounds")
    if len(sig) != 64:
        raise ProtocolViolation("sig is not 64 bytes")
    signed = announcement_signed_bytes(1, dev, pk, name, dev_type, pairing, seq)
    if not verify(pk, sig, signed):
        raise ProtocolViolation("announcement signature does not verify")
    return m


@dataclass
class Offer:
    """Our half of a pairwise session: the OFFER bytes and the ephemeral key."""

    me: Identity
    peer: str
    eph: X25519PrivateKey
    data: bytes

    @property
    def number(self) -> int:
        """The channel (session) number: first 4 bytes of SHA-256(OFFER), big-endian."""
        return channel_number(self.data)


def make_offer(
    me: Identity,
    peer: str,
    *,
    claimed_id: str | None = None,
    eph: X25519PrivateKey | None = None,
) -> Offer:
    """OFFER = A_id || B_id || eph_A || sig_A(domain || A_id || B_id || eph_A).
    ``claimed_id`` forges the A_id (the signature stays ours)."""
    eph = eph or X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    head = (claimed_id or me.device_id).encode() + peer.encode() + eph_pub
    return Offer(me, peer, eph, head + me.sign(SESSION_DOMAIN + head))


def finish_offer(offer: Offer, answer: bytes, peer_key: bytes) -> bytes:
    """Check the ANSWER's signature and derive the session secret."""
    if len(answer) != 32 + 64:
        raise ProtocolViolation(f"ANSWER is {len(answer)} bytes, not 96")
    eph_b, sig = answer[:32], answer[32:]
    head = offer.data[: 2 * ID_LEN + 32]
    if not verify(peer_key, sig, SESSION_DOMAIN + head + eph_b):
        raise ProtocolViolation("ANSWER signature does not verify with the peer's key")
    shared = _exchange(offer.eph, eph_b)
    return hkdf(shared, SESSION_DOMAIN + head + eph_b)


def _exchange(eph: X25519PrivateKey, peer: bytes) -> bytes:
    """X25519, refusing the all-zero result of a low-order point (MUST)."""
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError as exc:  # cryptography refuses all-zero results itself
        raise ProtocolViolation("low-order X25519 key") from exc
    if shared == bytes(32):
        raise ProtocolViolation("low-order X25519 key")
    return shared


def new_call_id() -> int:
    return int.from_bytes(os.urandom(8), "big")


def parse_notice(data: bytes) -> dict[str, Any]:
    if not data.startswith(NOTICE_PREFIX):
        raise ProtocolViolation("not a revocation notice")
    return unpack_map(data[len(NOTICE_PREFIX) :], "RevocationNotice")


def check_proof(proof: dict[str, Any], keys: dict[str, bytes]) -> bool:
    """A Revocation's signature by `by` (whose key the caller knows)."""
    try:
        dev, by, at, sig = proof["device_id"], proof["by"], proof["at"], proof["signature"]
    except (KeyError, TypeError):
        return False
    if by not in keys or not isinstance(sig, bytes):
        return False
    return verify(keys[by], sig, REVOCATION_DOMAIN + pack([dev, by, at]))


def check_signed_list(signed: Any, signer_key: bytes) -> dict[str, Any]:
    """A SignedList{body, signer, signature}: verify and decode the body."""
    if isinstance(signed, bytes):
        signed = unpack(signed)
    if not isinstance(signed, dict):
        raise ProtocolViolation("SignedList is not a map")
    body, sig = signed.get("body"), signed.get("signature")
    if not isinstance(body, bytes) or not isinstance(sig, bytes):
        raise ProtocolViolation("SignedList body/signature are not bytes")
    if not verify(signer_key, sig, MEMBERS_DOMAIN + body):
        raise ProtocolViolation("SignedList signature does not verify")
    return unpack_map(body, "member list body")


def answer_offer(
    me: Identity, offer: bytes, keys: dict[str, bytes], eph: X25519PrivateKey | None = None
) -> tuple[str, bytes, bytes] | None:
    """As B: (A's id, ANSWER, session secret) for a valid OFFER addressed to ``me``
    from a device whose key is in ``keys``; None otherwise."""
    if len(offer) != 2 * ID_LEN + 32 + 64:
        return None
    a_id, b_id = offer[:ID_LEN].decode(errors="replace"), offer[ID_LEN : 2 * ID_LEN]
    head, sig = offer[: 2 * ID_LEN + 32], offer[2 * ID_LEN + 32 :]
    key = keys.get(a_id)
    if b_id != me.device_id.encode() or key is None or a_id == me.device_id:
        return None
    if not verify(key, sig, SESSION_DOMAIN + head):
        return None
    eph = eph or X25519PrivateKey.generate()
    eph_b = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = _exchange(eph, offer[2 * ID_LEN : 2 * ID_LEN + 32])
    except ProtocolViolation:
        return None
    secret = hkdf(shared, SESSION_DOMAIN + head + eph_b)
    return a_id, eph_b + me.sign(SESSION_DOMAIN + head + eph_b), secret


def channel_number(offer: bytes) -> int:
    return int.from_bytes(hashlib.sha256(offer).digest()[:4], "big")


def own_announcement(me: Identity) -> bytes:
    """This client's Announcement (members only): a profile of the page's schema."""
    profile = {
        "name": "conformance client",
        "vendor": "Accord",
        "model": "conformance",
        "type": "x-accord-conformance",
        "security_level": "SL1",
        "power": "mains",
    }
    return pack(
        {
            "v": 1,
            "device_id": me.device_id,
            "name": "conformance client",
            "public_key": me.public_key,
            "profile": profile,
            "started_at": time.time(),
            "capabilities": [],
        }
    )
