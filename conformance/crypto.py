"""Identity, key derivation and sealed frames, from docs/protocol.md ("Device id",
"Sealed frames", "Pairwise sessions")."""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER_LEN = 34
TAG_LEN = 16
KIND_PAIRWISE = 1
KIND_BROADCAST = 2
SEAL_INFO = b"accord/v1/seal"


def device_id(public_key: bytes) -> str:
    """lowercase(base32(sha256(pk)[0:16])) without padding: 26 chars of a-z2-7."""
    raw = hashlib.sha256(public_key).digest()[:16]
    return base64.b32encode(raw).decode().rstrip("=").lower()


def raw_id(dev_id: str) -> bytes:
    """The 16 raw bytes a device id spells (the sealed header's `sender`)."""
    padded = dev_id.upper() + "=" * (-len(dev_id) % 8)
    return base64.b32decode(padded)


def fingerprint(public_key: bytes) -> str:
    digits = hashlib.sha256(public_key).hexdigest()[:16]
    return ":".join(digits[i : i + 4] for i in range(0, 16, 4))


def hkdf(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """An Ed25519 key pair and the device id it names."""

    def __init__(self, key: Ed25519PrivateKey | None = None) -> None:
        self.key = key or Ed25519PrivateKey.generate()
        self.public_key = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.device_id = device_id(self.public_key)
        self.raw_id = raw_id(self.device_id)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def header(kind: int, sender: bytes, epoch: int, stream: int, counter: int) -> bytes:
    return struct.pack(">BB16sIIQ", 1, kind, sender, epoch, stream, counter)


def frame_key(root: bytes, head: bytes) -> bytes:
    """One key per (sender, kind, epoch, stream): HKDF over the header with counter 0."""
    return hkdf(root, SEAL_INFO + head[:26] + bytes(8))


def seal(
    root: bytes,
    key_expr: str,
    payload: bytes,
    *,
    kind: int,
    sender: bytes,
    epoch: int,
    stream: int,
    counter: int,
) -> bytes:
    head = header(kind, sender, epoch, stream, counter)
    nonce = bytes(4) + struct.pack(">Q", counter)
    body = ChaCha20Poly1305(frame_key(root, head)).encrypt(nonce, payload, head + key_expr.encode())
    return head + body


@dataclass(frozen=True)
class Header:
    version: int
    kind: int
    sender: bytes
    epoch: int
    stream: int
    counter: int


def parse_header(frame: bytes) -> Header | None:
    if len(frame) < HEADER_LEN + TAG_LEN:
        return None
    return Header(*struct.unpack(">BB16sIIQ", frame[:HEADER_LEN]))


def open_frame(root: bytes, key_expr: str, frame: bytes) -> bytes | None:
    """The plaintext, or None if the frame is too short or its tag fails."""
    if len(frame) < HEADER_LEN + TAG_LEN:
        return None
    head = frame[:HEADER_LEN]
    counter = struct.unpack(">Q", head[26:34])[0]
    nonce = bytes(4) + struct.pack(">Q", counter)
    try:
        return ChaCha20Poly1305(frame_key(root, head)).decrypt(
            nonce, frame[HEADER_LEN:], head + key_expr.encode()
        )
    except InvalidTag:
        return None


@dataclass
class Channel:
    """One pairwise channel with a peer: its secret, number, and our send counter."""

    peer: str
    secret: bytes
    number: int
    stream: int = 1
    counter: int = 0
    sender: bytes = field(default=b"")

    def seal(self, key_expr: str, payload: bytes) -> bytes:
        self.counter += 1
        return seal(
            self.secret,
            key_expr,
            payload,
            kind=KIND_PAIRWISE,
            sender=self.sender,
            epoch=self.number,
            stream=self.stream,
            counter=self.counter,
        )

    def open_from_peer(self, key_expr: str, frame: bytes) -> bytes | None:
        """Open a frame only if it is sealed by the peer on this channel."""
        head = parse_header(frame)
        if head is None or head.kind != KIND_PAIRWISE or head.epoch != self.number:
            return None
        if head.sender != raw_id(self.peer) or head.version != 1 or head.counter == 0:
            return None
        return open_frame(self.secret, key_expr, frame)


def hkdf_salted(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
