"""Self-test checks of the crypto vectors: identities, announcements, SPAKE2,
pairing seals, channels and sealed frames."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from conformance import spake2_ed25519 as sp
from conformance.crypto import (
    Channel,
    Identity,
    fingerprint,
    frame_key,
    header,
    open_frame,
    raw_id,
    seal,
)
from conformance.messages import (
    announcement_signed_bytes,
    answer_offer,
    channel_number,
    check_announcement,
    finish_offer,
    make_announcement,
    make_offer,
    pack,
    unpack,
)
from conformance.pairing import CREDENTIALS_AAD, _adopt, derive, request, transcript
from conformance.report import StepFailed
from conformance.vectorio import h, identities, roundtrip, same


def check_identity(d: dict[str, Any], vdir: Path) -> str:
    for v in d["vectors"]:
        me = Identity.from_seed(h(v["seed"]))
        same(f"{v['name']} public_key", me.public_key, h(v["public_key"]))
        same(f"{v['name']} raw_id", me.raw_id, h(v["raw_id"]))
        same(f"{v['name']} device_id", me.device_id, v["device_id"])
        same(f"{v['name']} raw_id(device_id)", raw_id(me.device_id), h(v["raw_id"]))
        same(f"{v['name']} fingerprint", fingerprint(me.public_key), v["fingerprint"])
    return f"{len(d['vectors'])} identities"


def check_announcement_vectors(d: dict[str, Any], vdir: Path) -> str:
    ids = identities(vdir)
    for v in d["vectors"]:
        f = v["fields"]
        pk = h(f["public_key"])
        signed = announcement_signed_bytes(
            f["v"], f["device_id"], pk, f["name"], f["type"], f["pairing"], f["seq"]
        )
        same("signed bytes", signed, h(v["signed_bytes"]))
        me = ids[f["device_id"]]
        same("sig", me.sign(signed), h(v["sig"]))
        built = make_announcement(me, f["name"], f["type"], f["seq"], f["pairing"])
        same("encoded", built, h(v["encoded"]))
        check_announcement(built)
    return f"{len(d['vectors'])} announcement(s): signed bytes, sig, encoding"


def check_spake2(d: dict[str, Any], vdir: Path) -> str:
    for v in d["vectors"]:
        same("M", sp.encode(sp.M), h(v["M"]))
        same("N", sp.encode(sp.N), h(v["N"]))
        same("base", sp.encode(sp.BASE), h(v["base"]))
        pin, j, hst = v["pin"].encode(), v["joiner_id"].encode(), v["host_id"].encode()
        same("w", sp.password_scalar(pin), int(v["w"], 16))
        x = int(v["joiner_entropy"], 16) % sp.L
        y = int(v["host_entropy"], 16) % sp.L
        same("x", x, int(v["x"], 16))
        same("y", y, int(v["y"], 16))
        joiner = sp.Side(b"A", pin, j, hst, scalar=x)
        host = sp.Side(b"B", pin, j, hst, scalar=y)
        same("hello", joiner.message, h(v["hello"]))
        same("spake2_B message", host.message, h(v["spake2_b_message"]))
        key = joiner.finish(host.message)
        same("spake2 key", key, h(v["spake2_key"]))
        same("spake2 key (host side)", host.finish(joiner.message), key)
        script = transcript(v["joiner_id"], v["host_id"], joiner.message, host.message)
        same("transcript", script, h(v["transcript"]))
        keys = derive(key, script)
        same("confirm_B", keys.confirm_host, h(v["confirm_b"]))
        same("confirm_A", keys.confirm_joiner, h(v["confirm"]))
        same("session", keys.session, h(v["session"]))
        same("code", keys.code, v["code"])
        same("challenge", host.message + keys.confirm_host, h(v["challenge"]))
    return "SPAKE2 (pure Python) messages, key, transcript, confirmations, session, code"


def check_pairing(d: dict[str, Any], vdir: Path) -> str:
    session = ChaCha20Poly1305(h(d["session"]))
    info = dict(d["joiner_info"], public_key=h(d["joiner_info"]["public_key"]))
    same("JoinerInfo encoded", pack(info), h(d["joiner_info_encoded"]))
    sealed = session.encrypt(bytes(11) + b"\x01", pack(info), CREDENTIALS_AAD)
    same("JoinerInfo sealed", sealed, h(d["joiner_info_sealed"]))
    creds = session.decrypt(bytes(11) + b"\x02", h(d["credentials_sealed"]), CREDENTIALS_AAD)
    same("Credentials", creds, h(d["credentials_encoded"]))
    host = d["credentials"]["members"]["signer"]
    joined = _adopt(unpack(creds), host, "")
    same("Credentials epoch", joined.epoch, d["credentials"]["epoch"])
    for m in d["messages"]:
        decoded = roundtrip(m["name"], m["encoded"], m["fields"])
        if "step" in decoded:
            built = request(
                decoded["step"], decoded["joiner_id"], decoded["data"], decoded["handshake"]
            )
            same(f"{m['name']} as we build it", built, h(m["encoded"]))
    return f"JoinerInfo/Credentials seals, {len(d['messages'])} messages"


def check_channel(d: dict[str, Any], vdir: Path) -> str:
    for v in d["vectors"]:
        a = Identity.from_seed(h(v["initiator_seed"]))
        b = Identity.from_seed(h(v["responder_seed"]))
        eph_a = X25519PrivateKey.from_private_bytes(h(v["eph_a_private"]))
        eph_b = X25519PrivateKey.from_private_bytes(h(v["eph_b_private"]))
        offer = make_offer(a, b.device_id, eph=eph_a)
        same("OFFER", offer.data, h(v["offer"]))
        answered = answer_offer(b, offer.data, {a.device_id: a.public_key}, eph=eph_b)
        if answered is None:
            raise StepFailed("our responder refused the vector's OFFER")
        same("ANSWER", answered[1], h(v["answer"]))
        secret = finish_offer(offer, answered[1], b.public_key)
        same("secret", secret, h(v["secret"]))
        same("secret (responder)", answered[2], secret)
        same("number", channel_number(offer.data), v["number"])
        key = v["request_key_expr"]
        frame = h(v["request_frame"])
        boot = int.from_bytes(frame[22:26], "big")
        ch = Channel(b.device_id, secret, v["number"], stream=boot, sender=a.raw_id)
        same("request frame", ch.seal(key, h(v["request_plaintext"])), frame)
        reply = Channel(b.device_id, secret, v["number"], sender=a.raw_id)
        if reply.open_from_peer(key, h(v["reply_frame"])) is None:
            raise StepFailed("B's reply frame does not open as sealed by B on the channel")
    return "OFFER, ANSWER, secret, number, request frame, reply opens"


def check_seal(d: dict[str, Any], vdir: Path) -> str:
    for v in d["vectors"]:
        head = header(v["kind"], h(v["sender"]), v["epoch"], v["stream"], v["counter"])
        same(f"{v['name']} key", frame_key(h(v["root"]), head), h(v["key"]))
        frame = seal(
            h(v["root"]),
            v["key_expr"],
            h(v["plaintext"]),
            kind=v["kind"],
            sender=h(v["sender"]),
            epoch=v["epoch"],
            stream=v["stream"],
            counter=v["counter"],
        )
        same(f"{v['name']} frame", frame, h(v["frame"]))
        opened = open_frame(h(v["root"]), v["key_expr"], frame)
        same(f"{v['name']} opens", opened, h(v["plaintext"]))
    first = d["vectors"][0]
    for r in d["refused"]:
        ch = Channel(_id_of(h(first["sender"])), h(first["root"]), first["epoch"])
        if ch.open_from_peer(r["key_expr"], h(r["frame"])) is not None:
            raise StepFailed(f"refused vector {r['name']!r} opened")
    return f"{len(d['vectors'])} frames; {len(d['refused'])} refused frames do not open"


def _id_of(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()
