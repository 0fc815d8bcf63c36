"""``--self-test``: this client's crypto and encodings against docs/vectors/*.json.

Each vector file is one step; a step fails at the first value that differs. The
vectors write bytes as hex strings; which fields are bytes is known from the spec's
tables (the JSON does not say), so each check converts exactly those."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from functools import partial
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
    verify,
)
from conformance.datasync import (
    batch_message,
    leaf,
    make_batch,
    merkle_root,
    parse_page,
)
from conformance.messages import (
    REVOCATION_DOMAIN,
    announcement_signed_bytes,
    answer_offer,
    channel_number,
    check_announcement,
    check_proof,
    check_signed_list,
    finish_offer,
    make_announcement,
    make_offer,
    pack,
    parse_notice,
    unpack,
)
from conformance.pairing import CREDENTIALS_AAD, _adopt, derive, request, transcript
from conformance.report import Report, StepFailed

MEMBER_RECORD_DOMAIN = b"accord/v1/member-record"


def vectors_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "docs" / "vectors"
    return here if here.is_dir() else Path("docs/vectors")


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def same(what: str, got: Any, want: Any) -> None:
    if got != want:
        g = got.hex() if isinstance(got, bytes) else repr(got)
        w = want.hex() if isinstance(want, bytes) else repr(want)
        raise StepFailed(f"{what}: got {g[:80]}, vector says {w[:80]}")


def jsonish(value: Any) -> Any:
    """A decoded MessagePack value as the vectors write it (bytes as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonish(v) for v in value]
    return value


def roundtrip(name: str, encoded_hex: str, fields: Any) -> Any:
    """Decode the vector's bytes, compare with its fields, and re-encode to the same
    bytes (our encoder keeps map order and picks the shortest forms)."""
    encoded = h(encoded_hex)
    decoded = unpack(encoded)
    same(f"{name}: decoded fields", jsonish(decoded), fields)
    same(f"{name}: re-encoded", pack(decoded), encoded)
    return decoded


def identities(vdir: Path) -> dict[str, Identity]:
    out = {}
    for v in json.loads((vdir / "identity.json").read_text())["vectors"]:
        me = Identity.from_seed(h(v["seed"]))
        out[v["name"]] = out[me.device_id] = me
    return out


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


def check_rpc(d: dict[str, Any], vdir: Path) -> str:
    for v in d["vectors"]:
        roundtrip(v["name"], v["encoded"], v["fields"])
    return f"{len(d['vectors'])} RPC messages decode and re-encode to the same bytes"


def check_members(d: dict[str, Any], vdir: Path) -> str:
    ids = identities(vdir)
    keys = {i.device_id: i.public_key for i in ids.values()}
    for r in d["records"]:
        rec = dict(r["record"], public_key=h(r["record"]["public_key"]))
        rec["signature"] = h(rec["signature"])
        fields = [
            rec[k]
            for k in (
                "device_id",
                "public_key",
                "name",
                "type",
                "security_level",
                "added_by",
                "added_at",
                "declared_level",
            )
        ]
        same(f"{r['name']} signed bytes", pack(fields), h(r["signed_bytes"]))
        same(f"{r['name']} encoded", pack(rec), h(r["encoded"]))
        if rec["signature"] and not verify(
            keys[rec["added_by"]], rec["signature"], MEMBER_RECORD_DOMAIN + pack(fields)
        ):
            raise StepFailed(f"{r['name']}: signature does not verify")
    p = d["revocation"]["proof"]
    proof = dict(p, signature=h(p["signature"]))
    same(
        "revocation signed bytes",
        pack([p["device_id"], p["by"], p["at"]]),
        h(d["revocation"]["signed_bytes"]),
    )
    same("revocation encoded", pack(proof), h(d["revocation"]["encoded"]))
    if not check_proof(proof, keys) or not verify(
        keys[p["by"]], proof["signature"], REVOCATION_DOMAIN + h(d["revocation"]["signed_bytes"])
    ):
        raise StepFailed("revocation proof does not verify")
    ml = d["member_list"]
    signed = unpack(h(ml["signed_list_encoded"]))
    body = check_signed_list(signed, keys[ml["signed_list"]["signer"]])
    same("list body", signed["body"], h(ml["body"]))
    notice = parse_notice(h(d["notice"]))
    same("notice circle_id", notice.get("circle_id"), body.get("circle_id"))
    if not check_proof(notice["proof"], keys):
        raise StepFailed("notice proof does not verify")
    return f"{len(d['records'])} records, proof, signed list, notice"


def check_encodings(d: dict[str, Any], vdir: Path) -> str:
    """A file of plain encoding vectors ({name, fields, encoded}): each decodes to its
    fields and re-encodes to the same bytes."""
    for v in d["vectors"]:
        roundtrip(v["name"], v["encoded"], v["fields"])
    return f"{len(d['vectors'])} messages decode to their fields and re-encode to the bytes"


def is_encoding_file(d: dict[str, Any]) -> bool:
    vectors = d.get("vectors")
    return (
        isinstance(vectors, list)
        and bool(vectors)
        and all(isinstance(v, dict) and {"name", "fields", "encoded"} <= set(v) for v in vectors)
    )


def check_data(d: dict[str, Any], vdir: Path) -> str:
    ids = identities(vdir)
    b = d["batch"]
    ops = [[k, None if v is None else h(v)] for k, v in b["ops"]]
    leaves = [leaf("", k, v) for k, v in ops]
    same("leaves", [x.hex() for x in leaves], b["leaves"])
    same("root", merkle_root(leaves), h(b["root"]))
    msg = batch_message(b["store"], b["origin"], b["seq"], b["hlc"], len(ops), h(b["root"]))
    same("signed bytes", msg, h(b["signed_bytes"]))
    batch = make_batch(ids[b["origin"]], b["store"], False, b["seq"], b["hlc"], ops)
    same("sig", batch[4], h(b["sig"]))
    keys = {i.device_id: i.public_key for i in ids.values()}
    for m in d["messages"]:
        decoded = roundtrip(m["name"], m["encoded"], m["fields"])
        if m["name"] == "push":
            built = {"t": "push", "v": 2, "store": b["store"], "batches": [batch]}
            same("push as we build it", pack(built), h(m["encoded"]))
        if m["name"] == "page":
            page = parse_page(decoded, "responder-is-not-the-origin", keys, b["store"], False)
            if page.unproven:
                raise StepFailed("the page's multiproof does not check")
            same("page rows", sorted(k for _, k in page.rows), ["a", "c"])
    env = d["envelope"]
    roundtrip("envelope", env["encoded"], env["fields"])
    return "leaves, root, batch signature, push/pull/summary/page, multiproof, envelope"


def _bundle_bytes(content_hash: str, app_id: str, version: str, built_at: float) -> bytes:
    out = b"accord/v1/app-bundle"
    for part in (content_hash, app_id, version):
        raw = part.encode()
        out += struct.pack(">I", len(raw)) + raw
    return out + struct.pack(">d", built_at)


SIGNED_BYTES: dict[str, Callable[[Any], bytes]] = {
    "rule record": lambda f: b"accord.rules.record.v1\x00" + pack(f),
    "app grant": lambda f: b"accord/v1/app-grant" + pack(f),
    "app bundle": lambda f: _bundle_bytes(*f),
    "app checkpoint": lambda f: b"accord/v1/app-checkpoint" + pack(_checkpoint(f)),
}


def _checkpoint(fields: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint map as signed: its `signature` (and its grant's) are bytes."""
    out = dict(fields, signature=h(fields["signature"]))
    if isinstance(out.get("grant"), dict):
        out["grant"] = dict(out["grant"], signature=h(out["grant"]["signature"]))
    return out


def check_signatures(d: dict[str, Any], vdir: Path) -> str:
    """Rule records, app grants and app bundles, signed by device A."""
    signer = identities(vdir)["A"]
    for v in d["vectors"]:
        build = SIGNED_BYTES.get(v["name"])
        if build is None:
            raise StepFailed(f"no rule in this client for signed bytes of {v['name']!r}")
        signed = build(v["fields"])
        same(f"{v['name']} signed bytes", signed, h(v["signed_bytes"]))
        same(f"{v['name']} signature", signer.sign(signed), h(v["signature"]))
    return f"{len(d['vectors'])} signatures: " + ", ".join(v["name"] for v in d["vectors"])


CHECKS: dict[str, Callable[[dict[str, Any], Path], str]] = {
    "identity": check_identity,
    "announcement": check_announcement_vectors,
    "spake2": check_spake2,
    "pairing": check_pairing,
    "channel": check_channel,
    "seal": check_seal,
    "rpc": check_rpc,
    "members": check_members,
    "details": check_encodings,
    "data": check_data,
    "signatures": check_signatures,
}


def self_test(vdir: Path | None = None) -> Report:
    vdir = vdir or vectors_dir()
    report = Report(node=f"vectors in {vdir}")
    files = sorted(vdir.glob("*.json"))
    if not files:
        report.run("vectors", partial(_missing, vdir))
    for path in files:
        data = json.loads(path.read_text())
        check = CHECKS.get(path.stem) or (check_encodings if is_encoding_file(data) else None)
        if check is None:
            report.run(f"vectors/{path.name}", partial(_unknown, path))
        else:
            report.run(f"vectors/{path.name}", partial(check, data, vdir))
    return report


def _missing(vdir: Path) -> str:
    raise StepFailed(f"no vectors: {vdir}/*.json")


def _unknown(path: Path) -> str:
    raise StepFailed(f"{path.name}: no check in this client for this file (add one)")
