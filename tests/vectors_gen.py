"""Test vectors for docs/protocol.md, written to docs/vectors/*.json.

Every value here is computed from the spec's formulas with primitives only
(hashlib, hmac, ``cryptography``, msgspec's MessagePack of plain dicts and lists,
and the ``spake2`` package's Ed25519 point arithmetic), never with ``accord``'s own
code: ``tests/test_vectors.py`` checks the implementation against the committed
files, so the spec, the vectors and the code cannot drift apart unnoticed.

    .venv/bin/python -m tests.vectors_gen            # print what would change
    .venv/bin/python -m tests.vectors_gen --write    # rewrite docs/vectors/

Inputs are fixed (keys from hashed labels, SPAKE2 scalars from fixed entropy), and
Ed25519 signatures are deterministic, so every run gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import ed25519_basic as ed

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors"
Vectors = dict[str, Any]


def _label(text: str, size: int = 32) -> bytes:
    """Fixed input bytes named by a label (so a reader can rebuild them too)."""
    digest = hashlib.sha512 if size > 32 else hashlib.sha256
    return digest(b"accord test vector: " + text.encode()).digest()[:size]


def _mp(obj: object) -> bytes:
    """MessagePack as the spec writes it: maps in the order given, ints in their
    smallest form, floats as float 64, str as str, bytes as bin, None as nil."""
    return msgspec.msgpack.encode(obj)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hkdf(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=info).derive(ikm)


def _hex(obj: Any) -> Any:
    """bytes -> hex strings, recursively (JSON has no bytes)."""
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {k: _hex(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_hex(v) for v in obj]
    return obj


# -- identity ------------------------------------------------------------------


class Device:
    def __init__(self, label: str) -> None:
        self.label = label
        self.seed = _label("identity " + label)
        self.key = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.raw_id = hashlib.sha256(self.public).digest()[:16]
        self.id = base64.b32encode(self.raw_id).decode().rstrip("=").lower()
        digest = hashlib.sha256(self.public).hexdigest()[:16]
        self.fingerprint = ":".join(digest[i : i + 4] for i in range(0, 16, 4))

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


A, B, C = Device("A"), Device("B"), Device("C")


def identity() -> Vectors:
    return {
        "description": "Device identity (docs/protocol.md, Device id): an Ed25519 key from "
        "a 32-byte seed (RFC 8032), its id and its fingerprint.",
        "vectors": [
            {
                "name": d.label,
                "seed": d.seed.hex(),
                "public_key": d.public.hex(),
                "raw_id": d.raw_id.hex(),
                "device_id": d.id,
                "fingerprint": d.fingerprint,
            }
            for d in (A, B, C)
        ],
    }


# -- public announcement -------------------------------------------------------


def _field(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def announcement() -> Vectors:
    fields: dict[str, Any] = {
        "v": 1,
        "device_id": A.id,
        "name": "Kitchen fridge",
        "type": "refrigerator",
        "public_key": A.public,
        "pairing": True,
        "seq": 1733000000123,
    }
    signed = b"".join(
        (
            b"accord/v1/announce",
            bytes([1]),
            A.id.encode(),
            A.public,
            _field(fields["name"]),
            _field(fields["type"]),
            b"\x01",
            fields["seq"].to_bytes(8, "big"),
        )
    )
    sig = A.sign(signed)
    return {
        "description": "PublicAnnouncement: the bytes its sig signs, the signature by "
        "device A, and the whole message as MessagePack (keys in table order).",
        "vectors": [
            {
                "name": "announcement",
                "fields": _hex(fields),
                "signed_bytes": signed.hex(),
                "sig": sig.hex(),
                "encoded": _mp({**fields, "sig": sig}).hex(),
            }
        ],
    }


# -- SPAKE2 and the pairing handshake ------------------------------------------

PIN = "123456"


def _pw_scalar(pw: bytes) -> int:
    expanded = HKDF(hashes.SHA256(), 48, salt=b"", info=b"SPAKE2 pw").derive(pw)
    order: int = ed.L
    return int.from_bytes(expanded, "big") % order


def _entropy_scalar(entropy: bytes) -> int:
    order: int = ed.L
    return int.from_bytes(entropy, "big") % order


def spake2_handshake() -> dict[str, Any]:
    """Every value of one PIN pairing handshake: joiner C pairs with host A."""
    pw = PIN.encode()
    w = _pw_scalar(pw)
    m = ed.arbitrary_element(b"M")
    n = ed.arbitrary_element(b"N")
    x_entropy = _label("spake2 joiner entropy", 64)
    y_entropy = _label("spake2 host entropy", 64)
    x, y = _entropy_scalar(x_entropy), _entropy_scalar(y_entropy)
    big_x = ed.Base.scalarmult(x).add(m.scalarmult(w)).to_bytes()
    big_y = ed.Base.scalarmult(y).add(n.scalarmult(w)).to_bytes()
    k_joiner = ed.bytes_to_element(big_y).add(n.scalarmult(-w)).scalarmult(x).to_bytes()
    k_host = ed.bytes_to_element(big_x).add(m.scalarmult(-w)).scalarmult(y).to_bytes()
    assert k_joiner == k_host
    id_a, id_b = C.id.encode(), A.id.encode()
    spake_key = sha(sha(pw) + sha(id_a) + sha(id_b) + big_x + big_y + k_joiner)
    hello = b"A" + big_x
    msg_b = b"B" + big_y
    transcript = sha(b"accord/v1/pair" + _field(C.id) + _field(A.id) + hello + msg_b)
    k = {
        label: _hkdf(spake_key, label.encode() + transcript)
        for label in ("confirm-host", "confirm-joiner", "session")
    }
    code_raw = _hkdf(spake_key, b"code" + transcript, 8)
    confirm_b = hmac.new(k["confirm-host"], b"host", hashlib.sha256).digest()
    confirm_a = hmac.new(k["confirm-joiner"], b"joiner", hashlib.sha256).digest()
    return {
        "pin": PIN,
        "joiner_id": C.id,
        "host_id": A.id,
        "M": m.to_bytes(),
        "N": n.to_bytes(),
        "base": ed.Base.to_bytes(),
        "w": w,
        "joiner_entropy": x_entropy,
        "host_entropy": y_entropy,
        "x": x,
        "y": y,
        "hello": hello,
        "spake2_b_message": msg_b,
        "K": k_joiner,
        "spake2_key": spake_key,
        "transcript": transcript,
        "k_confirm_host": k["confirm-host"],
        "k_confirm_joiner": k["confirm-joiner"],
        "session": k["session"],
        "code_bytes": code_raw,
        "code": f"{int.from_bytes(code_raw, 'big') % 10**6:06d}",
        "confirm_b": confirm_b,
        "challenge": msg_b + confirm_b,
        "confirm": confirm_a,
    }


def spake2() -> Vectors:
    h = spake2_handshake()
    out = dict(h)
    out["w"] = f"{h['w']:064x}"
    out["x"] = f"{h['x']:064x}"
    out["y"] = f"{h['y']:064x}"
    return {
        "description": "PIN pairing (docs/protocol.md, PIN pairing handshake): SPAKE2 on "
        "Ed25519 with python-spake2 0.9's M and N, joiner C (side A) and host A (side B). "
        "Scalars w, x, y are big-endian hex; x and y come from 64 bytes of entropy each "
        "(big-endian integer mod L); points are 32-byte Ed25519 encodings.",
        "vectors": [{"name": "pairing C with host A", **_hex(out)}],
    }


# -- pairing messages and credentials -------------------------------------------

CIRCLE_ID = "0123456789abcdef"
T0 = 1733000000.0


def _member(
    who: Device,
    by: Device,
    name: str,
    type_: str,
    level: str,
    at: float,
    declared: str | None = None,
) -> dict[str, Any]:
    signed = _mp([who.id, who.public, name, type_, level, by.id, at, declared])
    sig = b"" if who is by else by.sign(b"accord/v1/member-record" + signed)
    return {
        "device_id": who.id,
        "public_key": who.public,
        "name": name,
        "type": type_,
        "security_level": level,
        "added_by": by.id,
        "added_at": at,
        "declared_level": declared,
        "signature": sig,
        "_signed": signed,
    }


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def member_list() -> dict[str, Any]:
    """A circle founded by A (SL4) that admitted B (SL1, declared SL2 and lowered) and
    C (SL3), then revoked C."""
    founder = _member(A, A, "Phone", "phone", "SL4", T0)
    b = _member(B, A, "Kitchen fridge", "refrigerator", "SL1", T0 + 100.5)
    b_lowered = _member(B, A, "Kitchen fridge", "refrigerator", "SL1", T0 + 100.5, "SL2")
    c = _member(C, A, "Laptop", "laptop", "SL3", T0 + 200.25)
    revocation_signed = _mp([C.id, A.id, T0 + 300.0])
    revocation = {
        "device_id": C.id,
        "by": A.id,
        "at": T0 + 300.0,
        "signature": A.sign(b"accord/v1/revocation" + revocation_signed),
    }
    records = sorted(
        (founder, b, c),
        key=lambda m: (m["device_id"], m["added_at"], m["added_by"], m["signature"]),
    )
    body_map = {
        "circle_id": CIRCLE_ID,
        "members": [_public(m) for m in records],
        "revoked": [C.id],
        "revocations": [revocation],
    }
    body = _mp(body_map)
    signed_list = {
        "body": body,
        "signer": A.id,
        "signature": A.sign(b"accord/v1/members" + body),
    }
    notice = b"accord/v1/revoked\x00" + _mp({"circle_id": CIRCLE_ID, "proof": revocation})
    return {
        "founder": founder,
        "b": b,
        "b_lowered": b_lowered,
        "c": c,
        "revocation": revocation,
        "revocation_signed": revocation_signed,
        "body": body,
        "signed_list": signed_list,
        "notice": notice,
    }


def members() -> Vectors:
    ml = member_list()
    records = [
        {
            "name": name,
            "record": _hex(_public(ml[key])),
            "signed_bytes": ml[key]["_signed"].hex(),
            "encoded": _mp(_public(ml[key])).hex(),
        }
        for name, key in (
            ("founder A (self-made, unsigned)", "founder"),
            ("B vouched by A", "b"),
            ("B vouched by A, declared SL2, lowered to SL1", "b_lowered"),
            ("C vouched by A", "c"),
        )
    ]
    return {
        "description": "Member records (the signature by added_by over "
        "'accord/v1/member-record' || signed_bytes), a revocation proof, the canonical "
        "member list body of circle " + CIRCLE_ID + " (A founded it, admitted B and C, "
        "revoked C), the SignedList by A and the revocation notice sent to C.",
        "records": records,
        "revocation": {
            "proof": _hex(ml["revocation"]),
            "signed_bytes": ml["revocation_signed"].hex(),
            "encoded": _mp(ml["revocation"]).hex(),
        },
        "member_list": {
            "body": ml["body"].hex(),
            "signed_list": _hex(ml["signed_list"]),
            "signed_list_encoded": _mp(ml["signed_list"]).hex(),
        },
        "notice": ml["notice"].hex(),
    }


def pairing() -> Vectors:
    h = spake2_handshake()
    ml = member_list()
    handshake_id = _label("handshake id", 16)
    aad = b"accord/v1/pair-credentials"
    info = {"public_key": C.public, "name": "Laptop", "type": "laptop", "security_level": "SL3"}
    sealed_info = ChaCha20Poly1305(h["session"]).encrypt((1).to_bytes(12, "big"), _mp(info), aad)
    circle_key = _label("circle key epoch 2")
    creds = {
        "host_public_key": A.public,
        "members": ml["signed_list"],
        "epoch": 2,
        "circle_key": circle_key,
    }
    sealed_creds = ChaCha20Poly1305(h["session"]).encrypt((2).to_bytes(12, "big"), _mp(creds), aad)
    hello = {"v": 1, "step": "hello", "joiner_id": C.id, "data": h["hello"], "handshake": b""}
    challenge = {"ok": True, "data": h["challenge"], "handshake": handshake_id}
    confirm = {
        "v": 1,
        "step": "confirm",
        "joiner_id": C.id,
        "data": h["confirm"] + sealed_info,
        "handshake": handshake_id,
    }
    done = {"ok": True, "data": sealed_creds}
    refused = {
        "ok": False,
        "error": "this device is not accepting pairing (run: accord pair open)",
        "error_type": "WindowClosed",
    }
    abort = {"v": 1, "step": "abort", "joiner_id": C.id, "data": b"", "handshake": handshake_id}
    return {
        "description": "Pairing on the wire: the queries to accord/v1/pair/<host> and their "
        "replies, for the handshake of spake2.json. JoinerInfo and Credentials are "
        "ChaCha20-Poly1305 under the handshake's session key, nonces 11 zero bytes || 0x01 "
        "(joiner) and || 0x02 (host), AAD 'accord/v1/pair-credentials'.",
        "session": h["session"].hex(),
        "joiner_info": _hex(info),
        "joiner_info_encoded": _mp(info).hex(),
        "joiner_info_sealed": sealed_info.hex(),
        "credentials": _hex(creds),
        "credentials_encoded": _mp(creds).hex(),
        "credentials_sealed": sealed_creds.hex(),
        "messages": [
            {"name": name, "fields": _hex(msg), "encoded": _mp(msg).hex()}
            for name, msg in (
                ("hello request", hello),
                ("challenge reply", challenge),
                ("confirm request", confirm),
                ("credentials reply", done),
                ("refusal reply", refused),
                ("abort request", abort),
            )
        ],
    }


# -- sealed frames ---------------------------------------------------------------


def _header(kind: int, sender: bytes, epoch: int, stream: int, counter: int) -> bytes:
    return (
        bytes([1, kind])
        + sender
        + epoch.to_bytes(4, "big")
        + stream.to_bytes(4, "big")
        + counter.to_bytes(8, "big")
    )


def seal_frame(
    root: bytes,
    kind: int,
    sender: bytes,
    epoch: int,
    stream: int,
    counter: int,
    key_expr: str,
    plaintext: bytes,
) -> tuple[bytes, bytes]:
    """(key, frame) as the spec says: HKDF over the header with counter 0, nonce 4
    zero bytes || counter, AAD header || key expression."""
    key = _hkdf(root, b"accord/v1/seal" + _header(kind, sender, epoch, stream, 0))
    header = _header(kind, sender, epoch, stream, counter)
    nonce = b"\0\0\0\0" + counter.to_bytes(8, "big")
    return key, header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header + key_expr.encode())


def seal() -> Vectors:
    root = _label("pairwise session secret")
    circle_key = _label("circle key epoch 2")
    vectors: list[dict[str, Any]] = []
    cases: list[tuple[str, bytes, int, bytes, int, int, int, str, bytes]] = [
        (
            "pairwise, counter 1",
            root,
            1,
            A.raw_id,
            0x0A0B0C0D,
            7,
            1,
            f"accord/v1/data/{B.id}",
            b"hello, B",
        ),
        ("pairwise, counter 2", root, 1, A.raw_id, 0x0A0B0C0D, 7, 2, f"accord/v1/data/{B.id}", b""),
        (
            "broadcast, epoch 2",
            circle_key,
            2,
            B.raw_id,
            2,
            3,
            1,
            "accord/v1/circle/members",
            b"a signed member list",
        ),
    ]
    for name, key_root, kind, sender, epoch, stream, counter, key_expr, plain in cases:
        key, frame = seal_frame(key_root, kind, sender, epoch, stream, counter, key_expr, plain)
        vectors.append(
            {
                "name": name,
                "root": key_root.hex(),
                "kind": kind,
                "sender": sender.hex(),
                "epoch": epoch,
                "stream": stream,
                "counter": counter,
                "key_expr": key_expr,
                "plaintext": plain.hex(),
                "key": key.hex(),
                "frame": frame.hex(),
            }
        )
    good = bytes.fromhex(vectors[0]["frame"])
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    return {
        "description": "Sealed frames (docs/protocol.md, Sealed frames): the per-stream key "
        "and the whole frame. 'refused' frames must not open with the first vector's root "
        "and key expression.",
        "vectors": vectors,
        "refused": [
            {
                "name": "tag flipped",
                "frame": tampered.hex(),
                "key_expr": vectors[0]["key_expr"],
                "error": "TamperedFrame",
            },
            {
                "name": "other key expression",
                "frame": good.hex(),
                "key_expr": f"accord/v1/data/{C.id}",
                "error": "TamperedFrame",
            },
            {
                "name": "version 2",
                "frame": (b"\x02" + good[1:]).hex(),
                "key_expr": vectors[0]["key_expr"],
                "error": "MalformedFrame",
            },
            {
                "name": "counter 0",
                "frame": seal_frame(
                    root, 1, A.raw_id, 0x0A0B0C0D, 7, 0, vectors[0]["key_expr"], b"x"
                )[1].hex(),
                "key_expr": vectors[0]["key_expr"],
                "error": "ReplayedFrame",
            },
            {
                "name": "too short",
                "frame": good[:49].hex(),
                "key_expr": vectors[0]["key_expr"],
                "error": "MalformedFrame",
            },
        ],
    }


# -- pairwise sessions (channels) -----------------------------------------------


def _x25519(label: str) -> tuple[bytes, bytes]:
    private = _label(label)
    public = (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return private, public


def channel() -> Vectors:
    eph_a_priv, eph_a = _x25519("ephemeral A")
    eph_b_priv, eph_b = _x25519("ephemeral B")
    ids = A.id.encode() + B.id.encode()
    offer = ids + eph_a + A.sign(b"accord/v1/session" + ids + eph_a)
    transcript = b"accord/v1/session" + ids + eph_a + eph_b
    answer = eph_b + B.sign(transcript)
    shared = X25519PrivateKey.from_private_bytes(eph_a_priv).exchange(
        X25519PublicKey.from_public_bytes(eph_b)
    )
    secret = _hkdf(shared, transcript)
    number = int.from_bytes(hashlib.sha256(offer).digest()[:4], "big")
    key_expr = f"accord/v1/rpc/{B.id}/device/info"
    request = _mp({"call_id": 42, "params": None, "timeout_ms": 2000})
    key, frame = seal_frame(secret, 1, A.raw_id, number, 5, 1, key_expr, request)
    reply_key_b, reply = seal_frame(
        secret,
        1,
        B.raw_id,
        number,
        9,
        1,
        key_expr,
        _mp({"ok": False, "error_type": "UnknownMethod", "error": "device.info is not served"}),
    )
    return {
        "description": "A pairwise session (channel) A -> B: OFFER, ANSWER, the secret, the "
        "channel number (the epoch of its frames), then A's first frame on it (an RPC "
        "request, boot 5) and B's reply (boot 9).",
        "vectors": [
            {
                "name": "A offers to B",
                "initiator_seed": A.seed.hex(),
                "responder_seed": B.seed.hex(),
                "eph_a_private": eph_a_priv.hex(),
                "eph_a": eph_a.hex(),
                "eph_b_private": eph_b_priv.hex(),
                "eph_b": eph_b.hex(),
                "offer": offer.hex(),
                "answer": answer.hex(),
                "shared": shared.hex(),
                "secret": secret.hex(),
                "number": number,
                "request_key_expr": key_expr,
                "request_plaintext": request.hex(),
                "request_key": key.hex(),
                "request_frame": frame.hex(),
                "reply_key": reply_key_b.hex(),
                "reply_frame": reply.hex(),
            }
        ],
    }


# -- RPC -------------------------------------------------------------------------


def rpc() -> Vectors:
    messages: list[tuple[str, str, dict[str, Any]]] = [
        (
            "unary request, no params (nil)",
            "RpcRequest",
            {"call_id": 42, "params": None, "timeout_ms": 2000},
        ),
        (
            "unary request, map params",
            "RpcRequest",
            {"call_id": 7, "params": {"text": "hi"}, "timeout_ms": 10000},
        ),
        (
            "stream request, window 8",
            "RpcRequest",
            {"call_id": 2**63 - 1, "params": {"interval_s": 1.0}, "timeout_ms": 5000, "window": 8},
        ),
        ("ok result", "RpcResult", {"ok": True, "value": {"level_pct": 80, "charging": False}}),
        ("ok result, nil value", "RpcResult", {"ok": True}),
        (
            "error result",
            "RpcResult",
            {
                "ok": False,
                "error_type": "PermissionDenied",
                "error": "battery is restricted on this device",
            },
        ),
        ("stream item", "StreamFrame", {"seq": 0, "value": b"\xff\xd8"}),
        ("stream end", "StreamFrame", {"seq": 3, "end": True}),
        (
            "stream refused",
            "StreamFrame",
            {
                "seq": 0,
                "end": True,
                "error_type": "WrongCallKind",
                "error": "device.info is not a stream: call it",
            },
        ),
        ("cancel", "RpcCancel", {"call_id": 42}),
        ("credit", "RpcCredit", {"call_id": 42, "granted": 16}),
    ]
    return {
        "description": "RPC messages (plaintexts of sealed frames). Fields at their default "
        "are left out (window 0, value nil, end false, empty error_type and error).",
        "vectors": [
            {"name": name, "type": kind, "fields": _hex(fields), "encoded": _mp(fields).hex()}
            for name, kind, fields in messages
        ],
    }


# -- member traffic: details and key updates ------------------------------------


def details() -> Vectors:
    ml = member_list()
    profile = {
        "name": "Kitchen fridge",
        "vendor": "Midea",
        "model": "MR-1",
        "type": "refrigerator",
        "security_level": "SL1",
        "power": "mains",
        "hardware": {"door_sensor": {"doors": ["main"]}},
    }
    ann = {
        "v": 1,
        "device_id": B.id,
        "name": "Kitchen fridge",
        "public_key": B.public,
        "profile": profile,
        "started_at": T0 + 500.5,
        "capabilities": ["door-sensor"],
    }
    encoded_ann = _mp(ann)
    circle_key = _label("circle key epoch 2")
    key_id = hashlib.blake2b(circle_key, digest_size=8, person=b"accord/v1/key-id").digest()
    det = {"announcement": encoded_ann, "members": ml["signed_list"], "epoch": 2, "key_id": key_id}
    update = {
        "members": ml["signed_list"],
        "epoch": 2,
        "key": _label("circle key epoch 2"),
        "issuer": A.id,
    }
    return {
        "description": "Member traffic plaintexts: an Announcement (device details), the "
        "Details reply that carries it (with the sender's circle key epoch 2 and the "
        "key_id of the key " + circle_key.hex() + "), and a KeyUpdate.",
        "vectors": [
            {
                "name": "announcement",
                "type": "Announcement",
                "fields": _hex(ann),
                "encoded": encoded_ann.hex(),
            },
            {"name": "details", "type": "Details", "fields": _hex(det), "encoded": _mp(det).hex()},
            {
                "name": "key update",
                "type": "KeyUpdate",
                "fields": _hex(update),
                "encoded": _mp(update).hex(),
            },
        ],
    }


# -- data sync -------------------------------------------------------------------


def _merkle(leaves: list[bytes]) -> bytes:
    level = list(leaves)
    while len(level) > 1:
        up = [
            hashlib.sha256(b"\x01" + level[j] + level[j + 1]).digest()
            for j in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def data() -> Vectors:
    store = "notes"
    ops: list[tuple[str, bytes | None]] = [("a", b"1"), ("b", None), ("c", b"3")]
    hlc = [1733000000123, 2]
    leaves = [hashlib.sha256(b"\x00" + _mp(["", key, value])).digest() for key, value in ops]
    root = _merkle(leaves)
    signed = b"accord/v1/batch" + _mp([store, A.id, 5, hlc[0], hlc[1], len(ops), root])
    sig = A.sign(signed)
    push = {"t": "push", "v": 2, "store": store, "batches": [[A.id, 5, hlc, ops, sig]]}
    pull = {
        "t": "pull",
        "v": 2,
        "store": store,
        "vv": {A.id: 4, B.id: 9},
        "session": 77,
        "ahead": 8,
    }
    summary = {"t": "summary", "v": 2, "store": store, "vv": {A.id: 5}, "ask": True}
    page = {
        "t": "page",
        "v": 2,
        "store": store,
        "session": 77,
        "epoch": "00ff",
        "after": 0,
        "next": 12,
        "done": True,
        "vv": {A.id: 5},
        "ids": [A.id],
        "groups": [[0, 5, hlc, [["a", b"1"], ["c", b"3"]], [sig, 3, [0, 2], [leaves[1]]]]],
        "rows": [],
        "more": False,
    }
    envelope = ["shared", "S1", "", _mp(push)]
    return {
        "description": "Data sync (store 'notes', shared, last-writer-wins): a batch of "
        "three ops by A (one a delete) with its Merkle leaves, root and signature; "
        "a push, a pull, a summary and a page (a group proving ops 0 and 2 of the batch "
        "with one multiproof hash); the envelope of the push.",
        "batch": {
            "store": store,
            "origin": A.id,
            "seq": 5,
            "hlc": hlc,
            "ops": _hex(ops),
            "leaves": [leaf.hex() for leaf in leaves],
            "root": root.hex(),
            "signed_bytes": signed.hex(),
            "sig": sig.hex(),
        },
        "messages": [
            {"name": name, "fields": _hex(msg), "encoded": _mp(msg).hex()}
            for name, msg in (("push", push), ("pull", pull), ("summary", summary), ("page", page))
        ],
        "envelope": {"fields": _hex(envelope), "encoded": _mp(envelope).hex()},
    }


def signatures() -> Vectors:
    rule = ["porch light", '[trigger]\nat = "18:00"\n', A.id, T0 + 42.5, True, False]
    rule_signed = b"accord.rules.record.v1\x00" + _mp(rule)
    content_hash = hashlib.sha256(b"an app zip").hexdigest()
    grant = ["notes", content_hash, A.id, T0 + 7.25]
    grant_signed = b"accord/v1/app-grant" + _mp(grant)
    bundle_signed = b"accord/v1/app-bundle"
    for part in (content_hash.encode(), b"notes", b"1.2.0"):
        bundle_signed += len(part).to_bytes(4, "big") + part
    bundle_signed += struct.pack(">d", T0 + 9.5)
    grant_map = {
        "app_id": "notes",
        "content_hash": content_hash,
        "by": A.id,
        "at": T0 + 7.25,
        "signature": A.sign(grant_signed),
    }
    checkpoint = {
        "app_id": "notes",
        "host": A.id,
        "at": T0 + 60.0,
        "content_hash": content_hash,
        "bundle_blob": "blob/notes/" + content_hash + "/0000",
        "bundle_chunks": 1,
        "state_blob": "blob/notes/" + hashlib.sha256(b"state").hexdigest() + "/0000",
        "state_chunks": 1,
        "requires": ["display"],
        "state_label": "S1",
        "grant": grant_map,
        "signature": b"",
    }
    checkpoint_signed = b"accord/v1/app-checkpoint" + _mp(checkpoint)
    return {
        "description": "Signatures by device A over the signed bytes of a rule record "
        "(name, source, author, written_at, enabled, deleted), an app grant (app_id, "
        "content_hash, by, at), an app checkpoint (the map with an empty signature) and "
        "an app bundle (content_hash, app_id, version with u32 "
        "big-endian lengths, then built_at as a big-endian IEEE 754 double).",
        "vectors": [
            {
                "name": "rule record",
                "fields": rule,
                "signed_bytes": rule_signed.hex(),
                "signature": A.sign(rule_signed).hex(),
            },
            {
                "name": "app grant",
                "fields": grant,
                "signed_bytes": grant_signed.hex(),
                "signature": A.sign(grant_signed).hex(),
            },
            {
                "name": "app bundle",
                "fields": [content_hash, "notes", "1.2.0", T0 + 9.5],
                "signed_bytes": bundle_signed.hex(),
                "signature": A.sign(bundle_signed).hex(),
            },
            {
                "name": "app checkpoint",
                "fields": _hex(checkpoint),
                "signed_bytes": checkpoint_signed.hex(),
                "signature": A.sign(checkpoint_signed).hex(),
            },
        ],
    }


def services() -> Vectors:
    block = b"x" * 1000
    offer = {
        "transfer": "00ff",
        "files": [["notes/today.txt", 1000, 131072, hashlib.sha256(block).digest()]],
    }
    messages: list[tuple[str, str, Any]] = [
        ("files.receive params", "Offer", offer),
        ("outbox.blocks params", "PullParams", {"transfer": "00ff", "runs": [[0, 0, 1]]}),
        ("outbox.blocks item", "list[Piece]", [[0, 0, block[:16]]]),
        ("files.receive item: accepted", "ReceiveEvent", {"kind": "accepted", "need_bytes": 1000}),
        (
            "files.receive item: done",
            "ReceiveEvent",
            {"kind": "done", "saved": ["notes/today.txt"]},
        ),
        (
            "clip.announce params",
            "ClipItem",
            {
                "id": f"{A.id}:7",
                "origin": A.id,
                "kind": "text",
                "size": 5,
                "created": T0 + 1.5,
                "ttl_s": 120.0,
                "label": "S1",
                "name": "",
            },
        ),
        ("clip.announce result", "Announced", {"taken": True, "reason": ""}),
        ("accord.catalog value", "Declaration", ["shared", "S2", "counter", 1733000000123]),
        (
            "notify.post params",
            "PostParams",
            {
                "title": "Door open",
                "body": "the fridge door is open",
                "app": "fridge",
                "mirror": True,
            },
        ),
        (
            "notify.mirror params",
            "Notification",
            {
                "id": f"{A.id}:3",
                "origin": A.id,
                "sender": B.id,
                "title": "Door open",
                "body": "",
                "app": "fridge",
                "created": T0 + 2.0,
            },
        ),
    ]
    return {
        "description": "Continuity messages (RPC params, results and stream items): file "
        "send (FileEntry, Run and Piece are arrays), clipboard and notifications.",
        "vectors": [
            {"name": name, "type": kind, "fields": _hex(fields), "encoded": _mp(fields).hex()}
            for name, kind, fields in messages
        ],
    }


FILES = {
    "identity": identity,
    "announcement": announcement,
    "spake2": spake2,
    "pairing": pairing,
    "members": members,
    "seal": seal,
    "channel": channel,
    "rpc": rpc,
    "details": details,
    "data": data,
    "signatures": signatures,
    "services": services,
}


def render(name: str) -> str:
    return json.dumps(FILES[name](), indent=1) + "\n"


def main(argv: list[str]) -> int:
    write = "--write" in argv
    changed = 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        path = OUT / f"{name}.json"
        text = render(name)
        old = path.read_text() if path.exists() else ""
        if old != text:
            changed += 1
            print(f"{'wrote' if write else 'would change'} {path}")
            if write:
                path.write_text(text)
    if not changed:
        print("vectors up to date")
    return 1 if changed and not write else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
