"""The device identity: an Ed25519 key pair, and the device id derived from it.

The id is a hash of the public key, so no other device can claim it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from accord.errors import HomeError

ID_BYTES = 16


def device_id_for(public_key: bytes) -> str:
    """``base32(sha256(public_key)[:16])``, lower case, no padding: 26 characters."""
    digest = hashlib.sha256(public_key).digest()[:ID_BYTES]
    return base64.b32encode(digest).decode().rstrip("=").lower()


def raw_id(device_id: str) -> bytes:
    """The 16 raw bytes behind a device id (what sealed frame headers carry)."""
    return base64.b32decode(device_id.upper() + "======")


@functools.lru_cache(maxsize=4096)
def id_from_raw(raw: bytes) -> str:
    """The device id for 16 raw bytes (cached: it runs for every sealed frame opened)."""
    return base64.b32encode(raw).decode().rstrip("=").lower()


def fingerprint(public_key: bytes) -> str:
    """A short, human-comparable fingerprint of a public key."""
    digest = hashlib.sha256(public_key).hexdigest()[:16]
    return ":".join(digest[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True, slots=True)
class Identity:
    private_key: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def device_id(self) -> str:
        return device_id_for(self.public_bytes)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_bytes)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    def save(self, path: Path) -> None:
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> Identity:
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise HomeError(
                    f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                    f"run: chmod 600 {path}"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise HomeError(f"cannot read identity key {path}: {exc.strerror}") from exc
        if len(raw) != 32:
            raise HomeError(f"{path} is not an Ed25519 private key (expected 32 bytes)")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except Exception:
        return False
    return True
