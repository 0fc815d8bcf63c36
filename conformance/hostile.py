"""Malformed frames and revocation (docs/protocol.md, "Sealed frames", "Remote
calls", "Revocation notice")."""

from __future__ import annotations

import os
import time

from conformance.crypto import KIND_PAIRWISE, Channel, Identity, header
from conformance.messages import (
    NOTICE_PREFIX,
    ProtocolViolation,
    check_proof,
    make_offer,
    pack,
    parse_notice,
    unpack,
)
from conformance.report import Skipped, StepFailed
from conformance.spake2_ed25519 import Side
from conformance.steps import Options, State, alive, announced


def malformed(st: State, opt: Options) -> str:
    m = st.need_member()
    assert m.channel is not None
    rpc = m.rpc_key("device.info")
    ch = m.channel
    good_head = header(KIND_PAIRWISE, ch.sender, ch.number, ch.stream, ch.counter + 1000)
    silent_cases = {
        "10 random bytes": os.urandom(10),
        "49 bytes (one short of a frame)": os.urandom(49),
        "our channel's header, random ciphertext": good_head + os.urandom(40),
        "version 9": bytes([9]) + good_head[1:] + os.urandom(40),
        "kind 7": good_head[:1] + bytes([7]) + good_head[2:] + os.urandom(40),
        "counter 0": good_head[:26] + bytes(8) + os.urandom(40),
    }
    for what, frame in silent_cases.items():
        out = m.sealed_query(rpc, frame, timeout=opt.timeout)
        if out.opened or out.other:
            raise StepFailed(f"{what}: answered with a frame (expected silence)")
        if out.no_channel:
            raise StepFailed(f"{what}: answered 'no channel' (expected silence)")
    # other keys, each with its documented answer ("Errors on the wire")
    pair = st.link.get(f"accord/v1/pair/{st.host}", b"\x93not a map", timeout=opt.timeout)
    words = [_pair_refusal(r.payload) for r in pair.replies]
    if not words or not all(w.startswith("Malformed:") for w in words):
        raise StepFailed(f"a malformed PairRequest: {words!r:.200} (expected Malformed)")
    # a well-formed hello of another protocol version: refused, saying so
    other = Identity()
    hello = Side(b"A", b"000000", other.device_id.encode(), st.host.encode()).message
    v2 = {"v": 2, "step": "hello", "joiner_id": other.device_id, "data": hello}
    got = st.link.get(f"accord/v1/pair/{st.host}", pack(v2), timeout=opt.timeout)
    said = [_pair_refusal(r.payload) for r in got.replies]
    if not said or not all(w.startswith("Unsupported:") and "version" in w for w in said):
        raise StepFailed(f"a PairRequest with v 2: {said!r:.200} (expected Unsupported)")
    closed = _window_closed(st, opt)
    junk_offer = b"x" * 148  # right length, addressed to nobody, no valid signature
    for key, body in (
        (f"accord/v1/channel/{st.host}", junk_offer),
        (f"accord/v1/session/{st.host}", os.urandom(147)),
        (f"accord/v1/details/{st.host}", os.urandom(10)),
        (f"accord/v1/details/{st.host}", good_head + os.urandom(40)),
    ):
        got = st.link.get(key, body, timeout=opt.timeout)
        if got.replies:
            raise StepFailed(f"garbage on {key} was answered (expected silence)")
    st.link.put(f"accord/v1/data/{st.host}", os.urandom(80))
    st.link.put("accord/v1/circle/members", os.urandom(80))
    st.link.put(f"accord/v1/rpc-credit/{st.host}", good_head + os.urandom(40))
    alive(st, opt)
    return (
        f"{len(silent_cases)} malformed RPC frames, OFFERs, details queries: silence;"
        f" PairRequest: malformed → {words[0][:40]!r}, v 2 → {said[0][:40]!r}{closed};"
        " 3 bad publications; node answers"
    )


def _window_closed(st: State, opt: Options) -> str:
    """With the window closed (our pairing closed it), a hello from a new device is
    refused as WindowClosed, uncounted."""
    if announced(st, opt).get("pairing"):
        return ""  # someone opened a window meanwhile: nothing to check
    other = Identity()
    hello = Side(b"A", b"000000", other.device_id.encode(), st.host.encode()).message
    req = {"v": 1, "step": "hello", "joiner_id": other.device_id, "data": hello}
    got = st.link.get(f"accord/v1/pair/{st.host}", pack(req), timeout=opt.timeout)
    said = [_pair_refusal(r.payload) for r in got.replies]
    if not said or not all(w.startswith("WindowClosed:") for w in said):
        raise StepFailed(f"a hello with no window open: {said!r:.200} (expected WindowClosed)")
    return ", hello with the window closed → WindowClosed"


def _pair_refusal(payload: bytes) -> str:
    """ "error_type: error" of a PairReply{ok: false}, or '' if it is not one."""
    try:
        reply = unpack(payload)
    except ProtocolViolation:
        return ""
    if not isinstance(reply, dict) or reply.get("ok") is not False:
        return ""
    return f"{reply.get('error_type') or 'Refused'}: {reply.get('error') or 'refused'}"


def stranger(st: State, opt: Options) -> str:
    """Before pairing, as a device the node has never admitted: an OFFER, a sealed RPC
    frame and a details query naming ourselves get no reply at all."""
    if not st.host:
        raise Skipped("no device discovered")
    me = Identity()
    offer = make_offer(me, st.host)
    got = st.link.get(f"accord/v1/channel/{st.host}", offer.data, timeout=opt.timeout)
    if got.replies:
        raise StepFailed(f"a stranger's OFFER got {len(got.replies)} replies (expected none)")
    for key in (f"accord/v1/rpc/{st.host}/device/info", f"accord/v1/details/{st.host}"):
        frame = Channel(st.host, os.urandom(32), offer.number, sender=me.raw_id).seal(key, b"")
        got = st.link.get(key, frame, timeout=opt.timeout)
        if got.replies:
            raise StepFailed(f"a stranger's frame on {key} got {len(got.replies)} replies")
    return "a stranger's OFFER, RPC frame and details query: no reply at all"


def revocation(st: State, opt: Options) -> str:
    m = st.need_member()
    if opt.revoke is None:
        raise Skipped("no way to ask the node to revoke us (--revoke-cmd)")
    opt.revoke(st.me.device_id)
    deadline = time.monotonic() + opt.revoke_wait
    # the node sends NOTICE to our channel key; meanwhile, calls must be refused
    refused = ""
    while time.monotonic() < deadline:
        out = m.call("device.info", None, opt.timeout)
        if out.opened and out.opened[0].get("ok"):
            if m.notice_seen.wait(0.05):
                raise StepFailed("a call still runs after the revocation NOTICE")
            continue  # the revocation has not landed yet
        refused = "no channel" if out.no_channel == 1 and not out.other else "silence"
        break
    if not refused:
        raise StepFailed(f"calls still answered {opt.revoke_wait:g} s after the revocation")
    if refused != "no channel":
        raise StepFailed("a call from the revoked client got silence, not the 'no channel' reply")
    # a details query on the channel the node dropped: NOTICE (or nothing, if the node's
    # 3-a-second notice budget is spent), never authentic Details
    assert m.channel is not None
    key = f"accord/v1/details/{st.host}"
    asked = m.link.get(key, m.channel.seal(key, b""), timeout=opt.timeout)
    by_details = [r.payload for r in asked.replies if r.payload.startswith(NOTICE_PREFIX)]
    if any(r.payload and r.payload not in by_details for r in asked.replies):
        raise StepFailed("a details query from the revoked client got something besides NOTICE")
    offer = m.offer(timeout=opt.timeout)
    if offer.channel is not None:
        raise StepFailed("a new channel OFFER from the revoked client was answered")
    extra = by_details + ([offer.notice] if offer.notice else [])
    if not m.notices and not extra:
        m.notice_seen.wait(max(0.0, deadline - time.monotonic()))
    notices = list(m.notices) + extra
    if not notices:
        raise StepFailed("no revocation NOTICE (not pushed, not to a details query or OFFER)")
    circle = st.joined.members.get("circle_id") if st.joined else None
    for raw in notices:
        try:
            notice = parse_notice(raw)
        except ProtocolViolation as exc:
            raise StepFailed(f"NOTICE: {exc}") from exc
        proof = notice.get("proof")
        if not isinstance(proof, dict) or proof.get("device_id") != st.me.device_id:
            raise StepFailed(f"NOTICE proof names another device: {proof!r:.200}")
        if circle is not None and notice.get("circle_id") != circle:
            raise StepFailed("NOTICE names another circle")
        if not check_proof(proof, m.keys):
            raise StepFailed("NOTICE proof does not verify")
    ways = [
        w
        for w, got in (("pushed", m.notices), ("details", by_details), ("OFFER", offer.notice))
        if got
    ]
    return (
        f"call refused ('no channel'); {len(notices)} signed NOTICE(s) via {', '.join(ways)};"
        " no channel answered"
    )
