"""Self-test checks of the message vectors: RPC, member records and lists, details,
data sync, signatures, and any file of plain encoding vectors."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.crypto import verify
from conformance.datasync import batch_message, leaf, make_batch, merkle_root, parse_page
from conformance.messages import (
    REVOCATION_DOMAIN,
    check_proof,
    check_signed_list,
    pack,
    parse_notice,
    unpack,
)
from conformance.report import StepFailed
from conformance.vectorio import h, identities, roundtrip, same

MEMBER_RECORD_DOMAIN = b"accord/v1/member-record"


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
