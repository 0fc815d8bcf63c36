"""The implementation against every committed test vector (docs/vectors/*.json).

The vectors are computed from the spec's formulas (tests/vectors_gen.py, primitives
only); here accord's own code must produce the same bytes (encode, derive, seal,
sign), read the same fields back (decode), and open the same plaintexts. A change to
the wire without a change to docs/protocol.md and the vectors fails here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from spake2 import SPAKE2_A, SPAKE2_B

from accord.apps.authority import checkpoint_bytes, grant_bytes, sign_checkpoint, sign_grant
from accord.apps.bundle import signed_message as bundle_signed_message
from accord.apps.messages import Checkpoint
from accord.clock import Hlc
from accord.continuity.clipboard.messages import Announced, ClipItem
from accord.continuity.notify.messages import Notification, PostParams
from accord.continuity.transfer.messages import Offer, Piece, PullParams, ReceiveEvent
from accord.data import model, provenance
from accord.data.catalog import Declaration
from accord.data.identity import ENVELOPE_DECODER, Envelope
from accord.device.identity import Identity, device_id_for, fingerprint, id_from_raw, raw_id
from accord.errors import MalformedFrame, ReplayedFrame, TamperedFrame
from accord.rpc import messages as rpc
from accord.rules.records import RuleRecord, sign_record
from accord.rules.records import signed_bytes as rule_signed_bytes
from accord.trust import members as ml
from accord.trust import pairing, pake, session
from accord.trust.channel_service import NOTICE_PREFIX, RevocationNotice, decode_notice
from accord.trust.sessions import session_number
from accord.trust.sync import Details, KeyUpdate
from accord.wire import messages as wire
from accord.wire.seal import Kind, Opener, Sealer, StreamId, derive_key
from tests import vectors_gen

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def hexed(obj: Any) -> Any:
    return vectors_gen._hex(obj)


def builtins(obj: Any) -> Any:
    """A decoded struct as the vectors write it (bytes as hex)."""
    return hexed(msgspec.to_builtins(obj, builtin_types=(bytes,)))


def identity_of(label: str) -> Identity:
    seed = next(v["seed"] for v in load("identity")["vectors"] if v["name"] == label)
    return Identity(Ed25519PrivateKey.from_private_bytes(h(seed)))


def test_committed_vectors_match_the_generator() -> None:
    """The files are what the generator computes from the spec (nobody edited them by
    hand, and a change to the generator was written out)."""
    for name in vectors_gen.FILES:
        assert (VECTORS / f"{name}.json").read_text() == vectors_gen.render(name), name


def test_identity() -> None:
    for v in load("identity")["vectors"]:
        ident = identity_of(v["name"])
        assert ident.public_bytes.hex() == v["public_key"]
        assert ident.device_id == v["device_id"] == device_id_for(h(v["public_key"]))
        assert raw_id(v["device_id"]).hex() == v["raw_id"]
        assert id_from_raw(h(v["raw_id"])) == v["device_id"]
        assert fingerprint(h(v["public_key"])) == v["fingerprint"]


def test_public_announcement() -> None:
    (v,) = load("announcement")["vectors"]
    f = v["fields"]
    ann = wire.PublicAnnouncement(
        v=f["v"],
        device_id=f["device_id"],
        name=f["name"],
        type=f["type"],
        public_key=h(f["public_key"]),
        pairing=f["pairing"],
        seq=f["seq"],
    )
    assert wire.signed_bytes(ann).hex() == v["signed_bytes"]
    signed = wire.sign_public(ann, identity_of("A").sign)
    assert signed.sig.hex() == v["sig"]
    assert wire.encode(signed).hex() == v["encoded"]
    decoded = wire.decode_public(h(v["encoded"]))
    assert decoded == signed


@pytest.fixture
def fixed_spake2(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """pake's SPAKE2 sides draw their scalars from the vector's entropy."""
    (v,) = load("spake2")["vectors"]
    joiner, host = h(v["joiner_entropy"]), h(v["host_entropy"])
    monkeypatch.setattr(
        pake, "SPAKE2_A", functools.partial(SPAKE2_A, entropy_f=lambda n: joiner[:n])
    )
    monkeypatch.setattr(pake, "SPAKE2_B", functools.partial(SPAKE2_B, entropy_f=lambda n: host[:n]))
    fixed: dict[str, Any] = v
    return fixed


def test_spake2_constants() -> None:
    from spake2.parameters.ed25519 import ParamsEd25519

    (v,) = load("spake2")["vectors"]
    group = ParamsEd25519.group
    assert ParamsEd25519.M.to_bytes().hex() == v["M"]
    assert ParamsEd25519.N.to_bytes().hex() == v["N"]
    assert group.Base.to_bytes().hex() == v["base"]
    assert f"{group.password_to_scalar(v['pin'].encode()):064x}" == v["w"]


def test_pairing_handshake(fixed_spake2: dict[str, Any]) -> None:
    v = fixed_spake2
    joiner = pake.Joiner(v["pin"], v["joiner_id"], v["host_id"])
    host = pake.Host(v["pin"], v["host_id"])
    assert joiner.hello().hex() == v["hello"]
    assert host.on_hello(v["joiner_id"], h(v["hello"])).hex() == v["challenge"]
    assert joiner.on_challenge(h(v["challenge"])).hex() == v["confirm"]
    host.on_confirm(h(v["confirm"]))
    for keys in (joiner.keys, host.keys):
        assert keys is not None
        assert keys.session.hex() == v["session"]
        assert keys.code == v["code"]
        assert keys.confirm_host.hex() == v["k_confirm_host"]
        assert keys.confirm_joiner.hex() == v["k_confirm_joiner"]
    transcript = pake._transcript(
        v["joiner_id"], v["host_id"], h(v["hello"]), h(v["spake2_b_message"])
    )
    assert transcript.hex() == v["transcript"]


def _signed_list(fields: dict[str, Any]) -> ml.SignedList:
    return ml.SignedList(h(fields["body"]), fields["signer"], h(fields["signature"]))


def test_pairing_messages() -> None:
    v = load("pairing")
    session_key = h(v["session"])
    info = pairing.JoinerInfo(
        h(v["joiner_info"]["public_key"]),
        v["joiner_info"]["name"],
        v["joiner_info"]["type"],
        v["joiner_info"]["security_level"],
    )
    assert msgspec.msgpack.encode(info).hex() == v["joiner_info_encoded"]
    assert pairing._seal(session_key, pairing._NONCE_JOINER, info).hex() == v["joiner_info_sealed"]
    assert (
        pairing._open(
            session_key, pairing._NONCE_JOINER, h(v["joiner_info_sealed"]), pairing.JoinerInfo
        )
        == info
    )
    c = v["credentials"]
    creds = pairing.Credentials(
        h(c["host_public_key"]), _signed_list(c["members"]), c["epoch"], h(c["circle_key"])
    )
    assert msgspec.msgpack.encode(creds).hex() == v["credentials_encoded"]
    assert pairing._seal(session_key, pairing._NONCE_HOST, creds).hex() == v["credentials_sealed"]
    for m in v["messages"]:
        raw = h(m["encoded"])
        if "step" in m["fields"]:
            req = pairing.decode_request(raw)
            assert builtins(req) == m["fields"], m["name"]
            assert msgspec.msgpack.encode(req) == raw, m["name"]
        else:
            reply = pairing.decode_reply(raw)
            assert builtins(reply) == m["fields"], m["name"]
            assert msgspec.msgpack.encode(reply) == raw, m["name"]


def test_member_records_and_list() -> None:
    v = load("members")
    a, b, c = identity_of("A"), identity_of("B"), identity_of("C")
    records = {r["name"]: r for r in v["records"]}
    founder_v = records["founder A (self-made, unsigned)"]
    r = founder_v["record"]
    founder = ml.Member(
        a.device_id,
        a.public_bytes,
        r["name"],
        r["type"],
        r["security_level"],
        a.device_id,
        r["added_at"],
    )
    assert founder.signed_bytes().hex() == founder_v["signed_bytes"]
    assert msgspec.msgpack.encode(founder).hex() == founder_v["encoded"]

    def vouched(name: str, who: Identity, type_: str, declared: str, voucher: str) -> ml.Member:
        r = records[name]["record"]
        record = ml.vouch(
            a,
            device_id=who.device_id,
            public_key=who.public_bytes,
            name=r["name"],
            type_=type_,
            declared_level=declared,
            voucher_level=voucher,
            at=r["added_at"],
        )
        assert record.signed_bytes().hex() == records[name]["signed_bytes"], name
        assert msgspec.msgpack.encode(record).hex() == records[name]["encoded"], name
        return record

    rec_b = vouched("B vouched by A", b, "refrigerator", "SL1", "SL4")
    vouched("B vouched by A, declared SL2, lowered to SL1", b, "refrigerator", "SL2", "SL1")
    rec_c = vouched("C vouched by A", c, "laptop", "SL3", "SL4")

    circle_id = msgspec.msgpack.decode(h(v["member_list"]["body"]))["circle_id"]
    alone = ml.new_circle(founder, circle_id)
    full = ml.add(ml.add(alone, rec_b), rec_c)
    proof = v["revocation"]["proof"]
    revoked = ml.revoke(full, c.device_id, a, at=proof["at"])
    (made,) = revoked.revocations
    assert made.signed_bytes().hex() == v["revocation"]["signed_bytes"]
    assert made.signature.hex() == proof["signature"]
    assert msgspec.msgpack.encode(made).hex() == v["revocation"]["encoded"]

    signed = ml.sign(revoked, a)
    assert signed.body.hex() == v["member_list"]["body"]
    assert builtins(signed) == v["member_list"]["signed_list"]
    assert msgspec.msgpack.encode(signed).hex() == v["member_list"]["signed_list_encoded"]
    # A receiver that holds only the founder takes the copy whole; a joiner adopts it.
    assert ml.accept(_signed_list(v["member_list"]["signed_list"]), alone) == revoked
    assert ml.adopt(_signed_list(v["member_list"]["signed_list"]), a.public_bytes) == revoked

    notice = NOTICE_PREFIX + msgspec.msgpack.encode(RevocationNotice(circle_id, made))
    assert notice.hex() == v["notice"]
    assert decode_notice(h(v["notice"])) == RevocationNotice(circle_id, made)


def _fixed_root(root: bytes, _sid: StreamId) -> bytes:
    return root


def test_sealed_frames() -> None:
    v = load("seal")
    for f in v["vectors"]:
        sid = StreamId(Kind(f["kind"]), h(f["sender"]), f["epoch"], f["stream"])
        root = h(f["root"])
        assert derive_key(root, sid).hex() == f["key"], f["name"]
        sealer = Sealer(root, sid)
        for _ in range(f["counter"] - 1):
            sealer.seal(f["key_expr"], b"")
        frame = sealer.seal(f["key_expr"], h(f["plaintext"]))
        assert frame.hex() == f["frame"], f["name"]
        opener = Opener(functools.partial(_fixed_root, root))
        assert opener.open(f["key_expr"], frame) == (sid, h(f["plaintext"])), f["name"]
    root = h(v["vectors"][0]["root"])
    errors = {
        "TamperedFrame": TamperedFrame,
        "MalformedFrame": MalformedFrame,
        "ReplayedFrame": ReplayedFrame,
    }
    for bad in v["refused"]:
        with pytest.raises(errors[bad["error"]]):
            Opener(lambda _sid: root).open(bad["key_expr"], h(bad["frame"]))


class _FixedX25519:
    """Stands in for X25519PrivateKey in accord.trust.session: generate() hands out
    the vector's ephemeral keys in turn."""

    keys: ClassVar[list[bytes]] = []

    @classmethod
    def generate(cls) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(cls.keys.pop(0))


def test_channel_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    (v,) = load("channel")["vectors"]
    a, b = identity_of("A"), identity_of("B")
    monkeypatch.setattr(session, "X25519PrivateKey", _FixedX25519)
    _FixedX25519.keys = [h(v["eph_a_private"]), h(v["eph_b_private"])]
    initiator = session.Initiator(a, b.device_id)
    offer = initiator.offer()
    assert offer.hex() == v["offer"]
    peer, answer, secret = session.respond(b, offer, {a.device_id: a.public_bytes})
    assert (peer, answer.hex(), secret.hex()) == (a.device_id, v["answer"], v["secret"])
    assert initiator.on_answer(answer, b.public_bytes).hex() == v["secret"]
    assert session_number(offer) == v["number"]
    sid = StreamId(Kind.PAIRWISE, raw_id(a.device_id), v["number"], 5)
    frame = Sealer(secret, sid).seal(v["request_key_expr"], h(v["request_plaintext"]))
    assert frame.hex() == v["request_frame"]
    _, plain = Opener(lambda _sid: secret).open(v["request_key_expr"], h(v["reply_frame"]))
    assert rpc.result_decoder.decode(plain).error_type == "UnknownMethod"


def _raw(fields: dict[str, Any], name: str) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(fields[name])) if name in fields else rpc.NIL


def test_rpc_messages() -> None:
    for m in load("rpc")["vectors"]:
        f, raw = m["fields"], h(m["encoded"])
        message: msgspec.Struct
        if m["type"] == "RpcRequest":
            message = rpc.RpcRequest(
                f["call_id"], _raw(f, "params"), f["timeout_ms"], f.get("window", 0)
            )
            decoded: msgspec.Struct = rpc.request_decoder.decode(raw)
        elif m["type"] == "RpcResult":
            message = rpc.RpcResult(
                f["ok"], _raw(f, "value"), f.get("error_type", ""), f.get("error", "")
            )
            decoded = rpc.result_decoder.decode(raw)
        elif m["type"] == "StreamFrame":
            value = msgspec.Raw(msgspec.msgpack.encode(h(f["value"]))) if "value" in f else rpc.NIL
            message = rpc.StreamFrame(
                f["seq"], value, f.get("end", False), f.get("error_type", ""), f.get("error", "")
            )
            decoded = rpc.frame_decoder.decode(raw)
        elif m["type"] == "RpcCancel":
            message, decoded = rpc.RpcCancel(f["call_id"]), rpc.cancel_decoder.decode(raw)
        else:
            message = rpc.RpcCredit(f["call_id"], f["granted"])
            decoded = rpc.credit_decoder.decode(raw)
        assert msgspec.msgpack.encode(message) == raw, m["name"]
        assert msgspec.msgpack.encode(decoded) == raw, m["name"]


def test_member_traffic() -> None:
    vectors = {m["type"]: m for m in load("details")["vectors"]}
    ann_v = vectors["Announcement"]
    ann = wire.decode_announcement(h(ann_v["encoded"]))
    assert builtins(ann) == ann_v["fields"]
    assert wire.encode(ann).hex() == ann_v["encoded"]
    for kind in (Details, KeyUpdate):
        m = vectors[kind.__name__]
        decoded = msgspec.msgpack.decode(h(m["encoded"]), type=kind)
        assert builtins(decoded) == m["fields"]
        assert msgspec.msgpack.encode(decoded).hex() == m["encoded"]


def test_data_sync() -> None:
    v = load("data")
    batch = v["batch"]
    leaves = [
        provenance.leaf("", key, None if value is None else h(value)) for key, value in batch["ops"]
    ]
    assert [leaf.hex() for leaf in leaves] == batch["leaves"]
    assert provenance.root(leaves).hex() == batch["root"]
    hlc = Hlc(*batch["hlc"])
    signed = provenance.message(
        batch["store"], batch["origin"], batch["seq"], hlc, len(leaves), h(batch["root"])
    )
    assert signed.hex() == batch["signed_bytes"]
    sig, _paths = provenance.sign_batch(
        identity_of("A").sign, batch["store"], batch["origin"], batch["seq"], hlc, leaves
    )
    assert sig.hex() == batch["sig"]
    for m in v["messages"]:
        raw = h(m["encoded"])
        decoded = model.decode(raw)
        assert builtins(decoded) == m["fields"], m["name"]
        assert model.encode(decoded) == raw, m["name"]
    env = ENVELOPE_DECODER.decode(h(v["envelope"]["encoded"]))
    assert msgspec.msgpack.encode(env).hex() == v["envelope"]["encoded"]
    assert isinstance(env, Envelope)
    assert builtins(env) == v["envelope"]["fields"]


def test_signatures() -> None:
    a = identity_of("A")
    v = {x["name"]: x for x in load("signatures")["vectors"]}
    name, source, author, written_at, enabled, deleted = v["rule record"]["fields"]
    record = RuleRecord(
        name=name,
        source=source,
        author=author,
        written_at=written_at,
        enabled=enabled,
        deleted=deleted,
    )
    assert rule_signed_bytes(record).hex() == v["rule record"]["signed_bytes"]
    assert sign_record(record, a.sign).signature.hex() == v["rule record"]["signature"]
    app_id, content_hash, by, at = v["app grant"]["fields"]
    grant = sign_grant(a, app_id, content_hash, at)
    assert (grant.by, grant_bytes(grant).hex()) == (by, v["app grant"]["signed_bytes"])
    assert grant.signature.hex() == v["app grant"]["signature"]
    c = v["app checkpoint"]["fields"]
    ckpt = msgspec.convert(
        {**c, "grant": {**c["grant"], "signature": h(c["grant"]["signature"])}, "signature": b""},
        Checkpoint,
    )
    assert ckpt.grant is not None
    assert ckpt.grant.signature == grant.signature
    assert checkpoint_bytes(ckpt).hex() == v["app checkpoint"]["signed_bytes"]
    assert sign_checkpoint(ckpt, a).signature.hex() == v["app checkpoint"]["signature"]
    bundle = bundle_signed_message(*v["app bundle"]["fields"])
    assert bundle.hex() == v["app bundle"]["signed_bytes"]
    assert a.sign(bundle).hex() == v["app bundle"]["signature"]


SERVICE_TYPES: dict[str, Any] = {
    "Offer": Offer,
    "PullParams": PullParams,
    "list[Piece]": list[Piece],
    "ReceiveEvent": ReceiveEvent,
    "ClipItem": ClipItem,
    "Announced": Announced,
    "PostParams": PostParams,
    "Notification": Notification,
    "Declaration": Declaration,
}


def test_continuity_messages() -> None:
    for m in load("services")["vectors"]:
        raw = h(m["encoded"])
        decoded = msgspec.msgpack.decode(raw, type=SERVICE_TYPES[m["type"]])
        assert msgspec.msgpack.encode(decoded) == raw, m["name"]
        assert builtins(decoded) == m["fields"], m["name"]
