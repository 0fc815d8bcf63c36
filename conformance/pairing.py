"""PIN pairing as a new device (docs/protocol.md, "PIN pairing handshake" and
"Pairing on the wire")."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from conformance.crypto import Identity, device_id, hkdf
from conformance.link import Link
from conformance.messages import ProtocolViolation, check_signed_list, pack, unpack
from conformance.spake2_ed25519 import Side

PAIR_DOMAIN = b"accord/v1/pair"
CREDENTIALS_AAD = b"accord/v1/pair-credentials"
MAX_REPLIES = 8


class PairingFailed(Exception):
    pass


def transcript(joiner: str, host: str, hello: bytes, b_msg: bytes) -> bytes:
    j, h = joiner.encode(), host.encode()
    return hashlib.sha256(
        PAIR_DOMAIN + struct.pack(">H", len(j)) + j + struct.pack(">H", len(h)) + h + hello + b_msg
    ).digest()


@dataclass(frozen=True)
class Keys:
    confirm_host: bytes
    confirm_joiner: bytes
    session: bytes
    code: str


def derive(spake_key: bytes, script: bytes) -> Keys:
    def k(label: bytes, n: int = 32) -> bytes:
        return hkdf(spake_key, label + script, n)

    code = int.from_bytes(k(b"code", 8), "big") % 10**6
    return Keys(
        confirm_host=hmac.new(k(b"confirm-host"), b"host", hashlib.sha256).digest(),
        confirm_joiner=hmac.new(k(b"confirm-joiner"), b"joiner", hashlib.sha256).digest(),
        session=k(b"session"),
        code=f"{code:06d}",
    )


def refusal(reply: dict[str, Any]) -> str:
    """A PairReply{ok: false} in words: its error_type (an unknown or absent one
    counts as Refused) and its error."""
    kind = reply.get("error_type") or "Refused"
    return f"{kind}: {reply.get('error') or 'refused'}"


def _nonce(n: int) -> bytes:
    return bytes(11) + bytes([n])


@dataclass
class Joined:
    host_public_key: bytes
    members: dict[str, Any]  # the decoded list body
    signed_list: Any
    epoch: int
    circle_key: bytes
    code: str


def request(step: str, joiner: str, data: bytes, handshake: bytes = b"") -> bytes:
    return pack({"v": 1, "step": step, "joiner_id": joiner, "data": data, "handshake": handshake})


def _replies(link: Link, host: str, payload: bytes, timeout: float) -> list[dict[str, Any]]:
    out = []
    for r in link.get(f"accord/v1/pair/{host}", payload, timeout=timeout).replies[:MAX_REPLIES]:
        try:
            value = unpack(r.payload)
        except ProtocolViolation:
            continue  # undecodable replies are skipped
        if isinstance(value, dict):
            out.append(value)
    return out


def pair(
    link: Link,
    me: Identity,
    host: str,
    pin: str,
    info: dict[str, Any],
    timeout: float = 5.0,
) -> Joined:
    """Run hello → confirm with ``pin``; raise PairingFailed with the host's words."""
    side = Side(b"A", pin.encode(), me.device_id.encode(), host.encode())
    hello = side.message
    errors = []
    for reply in _replies(link, host, request("hello", me.device_id, hello), timeout):
        if not reply.get("ok"):
            errors.append(refusal(reply))
            continue
        data, handshake = reply.get("data"), reply.get("handshake", b"")
        if not isinstance(data, bytes) or len(data) != 65 or not isinstance(handshake, bytes):
            errors.append("a CHALLENGE that is not 33 + 32 bytes")
            continue
        try:
            key = side.finish(data[:33])
        except ValueError as exc:
            errors.append(f"bad SPAKE2 message: {exc}")
            continue
        keys = derive(key, transcript(me.device_id, host, hello, data[:33]))
        if not hmac.compare_digest(keys.confirm_host, data[33:]):
            link.get(f"accord/v1/pair/{host}", request("abort", me.device_id, b"", handshake))
            raise PairingFailed("confirm_B does not verify: wrong PIN (sent abort)")
        return _confirm(link, me, host, keys, handshake, info, timeout)
    raise PairingFailed("; ".join(errors) or "no reply to hello")


def _confirm(
    link: Link,
    me: Identity,
    host: str,
    keys: Keys,
    handshake: bytes,
    info: dict[str, Any],
    timeout: float,
) -> Joined:
    aead = ChaCha20Poly1305(keys.session)
    sealed_info = aead.encrypt(_nonce(1), pack(info), CREDENTIALS_AAD)
    payload = request("confirm", me.device_id, keys.confirm_joiner + sealed_info, handshake)
    errors = []
    for reply in _replies(link, host, payload, timeout):
        if not reply.get("ok"):
            errors.append(refusal(reply))
            continue
        data = reply.get("data")
        if not isinstance(data, bytes):
            continue
        try:
            creds = unpack(aead.decrypt(_nonce(2), data, CREDENTIALS_AAD))
        except (InvalidTag, ProtocolViolation):
            continue  # not sealed under our session: someone else's answer
        return _adopt(creds, host, keys.code, me.device_id)
    raise PairingFailed("; ".join(errors) or "no Credentials that open under the session")


def _adopt(creds: Any, host: str, code: str, joiner: str | None = None) -> Joined:
    if not isinstance(creds, dict):
        raise PairingFailed("Credentials is not a map")
    host_key = creds.get("host_public_key")
    if not isinstance(host_key, bytes) or device_id(host_key) != host:
        raise PairingFailed("host_public_key does not hash to the host's id")
    try:
        body = check_signed_list(creds.get("members"), host_key)
    except ProtocolViolation as exc:
        raise PairingFailed(f"member list: {exc}") from exc
    listed = {m.get("device_id") for m in body.get("members", []) if isinstance(m, dict)}
    if host not in listed:
        raise PairingFailed("the member list does not list the host")
    if joiner is not None and joiner not in listed:
        raise PairingFailed("the member list does not list the joiner")
    epoch, circle_key = creds.get("epoch"), creds.get("circle_key")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= 2**32 - 2:
        raise PairingFailed(f"epoch {epoch!r} is not in 1 .. 2^32 - 2")
    if not isinstance(circle_key, bytes) or len(circle_key) != 32:
        raise PairingFailed("circle_key is not 32 bytes")
    return Joined(host_key, body, creds.get("members"), epoch, circle_key, code)
