"""Pairwise session keys between two members (sans-IO).

An ephemeral X25519 exchange, each half signed by the sender's Ed25519 identity, so
a session key is authenticated by both identities and forgotten when the session
ends (forward secrecy). Two messages::

    A -> B  OFFER  = A_id || B_id || eph_A (32) || sig_A(context || A_id || B_id || eph_A)
    B -> A  ANSWER = eph_B (32) || sig_B(context || A_id || B_id || eph_A || eph_B)

    secret = HKDF-SHA256(X25519(eph_A, eph_B), info = context || A_id || B_id || eph_A || eph_B)

The secret is the root for both directions' sealed streams (kind = pairwise); the
sender field in each frame's header keeps the two directions' keys apart. A replayed
OFFER makes B answer, but without eph_A's private half nobody can use the session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.device.identity import Identity, verify
from accord.errors import TrustError

CONTEXT = b"accord/v1/session"
ID_LEN = 26
KEY_LEN = 32
SIG_LEN = 64
OFFER_LEN = 2 * ID_LEN + KEY_LEN + SIG_LEN
ANSWER_LEN = KEY_LEN + SIG_LEN


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _secret(private: X25519PrivateKey, peer_eph: bytes, transcript: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_eph))
    except ValueError as exc:  # an all-zero (low-order) result
        raise TrustError("invalid ephemeral key in session handshake") from exc
    return HKDF(hashes.SHA256(), 32, salt=None, info=transcript).derive(shared)


class Initiator:
    def __init__(self, identity: Identity, peer_id: str) -> None:
        self._identity = identity
        self._ids = identity.device_id.encode() + peer_id.encode()
        if len(self._ids) != 2 * ID_LEN:
            raise TrustError("device ids are 26 characters")
        self._eph = X25519PrivateKey.generate()
        self._eph_pub = _raw(self._eph.public_key())

    def offer(self) -> bytes:
        signed = CONTEXT + self._ids + self._eph_pub
        return self._ids + self._eph_pub + self._identity.sign(signed)

    def on_answer(self, answer: bytes, peer_public_key: bytes) -> bytes:
        """Verify the answer with the peer's identity key; return the session secret."""
        if len(answer) != ANSWER_LEN:
            raise TrustError("malformed session answer")
        eph_b, sig = answer[:KEY_LEN], answer[KEY_LEN:]
        transcript = CONTEXT + self._ids + self._eph_pub + eph_b
        if not verify(peer_public_key, sig, transcript):
            raise TrustError("session answer is not signed by the expected device")
        return _secret(self._eph, eph_b, transcript)


def respond(
    identity: Identity,
    offer: bytes,
    public_key_of: Mapping[str, bytes] | Callable[[str], bytes | None],
) -> tuple[str, bytes, bytes]:
    """Answer an offer from a known device. Returns (initiator id, answer, secret).

    ``public_key_of`` maps member device ids to identity keys (a mapping, or a lookup
    returning None); anyone else is refused.
    """
    if len(offer) != OFFER_LEN:
        raise TrustError("malformed session offer")
    a_id = offer[:ID_LEN].decode("ascii", "replace")
    b_id = offer[ID_LEN : 2 * ID_LEN].decode("ascii", "replace")
    eph_a = offer[2 * ID_LEN : 2 * ID_LEN + KEY_LEN]
    sig = offer[2 * ID_LEN + KEY_LEN :]
    if b_id != identity.device_id:
        raise TrustError("session offer is addressed to another device")
    key = public_key_of(a_id) if callable(public_key_of) else public_key_of.get(a_id)
    if key is None:
        raise TrustError(f"session offer from {a_id[:10]}, who is not a member")
    ids = offer[: 2 * ID_LEN]
    if not verify(key, sig, CONTEXT + ids + eph_a):
        raise TrustError("session offer signature does not verify")
    eph = X25519PrivateKey.generate()
    eph_b = _raw(eph.public_key())
    transcript = CONTEXT + ids + eph_a + eph_b
    secret = _secret(eph, eph_a, transcript)
    return a_id, eph_b + identity.sign(transcript), secret
