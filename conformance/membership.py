"""Leaving the circle (docs/protocol.md, "Member list" and "Member traffic /
Leaving"): the client writes a member list from the page alone — the canonical
MemberList with a revocation of itself, signed by itself — and publishes it sealed
under the circle key. A node that takes it counts the client as revoked."""

from __future__ import annotations

import time
from typing import Any

from conformance.crypto import KIND_BROADCAST, seal
from conformance.messages import MEMBERS_DOMAIN, REVOCATION_DOMAIN, pack, unpack_map
from conformance.report import Skipped, StepFailed
from conformance.steps import Options, State

MEMBERS_KEY = "accord/v1/circle/members"


def leave_list(st: State, body: dict[str, Any]) -> dict[str, Any]:
    """Our SignedList: ``body`` plus a proof revoking our admission, canonical."""
    me = st.me.device_id
    ours = [m for m in body.get("members", []) if m.get("device_id") == me]
    if not ours:
        raise StepFailed("the member list we hold does not name us")
    at = max(time.time(), max(float(m["added_at"]) for m in ours))
    proof = {"device_id": me, "by": me, "at": at}
    proof["signature"] = st.me.sign(REVOCATION_DOMAIN + pack([me, me, at]))
    new = dict(body)
    new["revocations"] = sorted(
        [*body.get("revocations", []), proof],
        key=lambda p: (p["device_id"], p["at"], p["by"], p["signature"]),
    )
    new["revoked"] = sorted({*body.get("revoked", []), me})
    raw = pack(new)
    return {"body": raw, "signer": me, "signature": st.me.sign(MEMBERS_DOMAIN + raw)}


def leave(st: State, opt: Options) -> str:
    m = st.member
    if m is None or st.joined is None:
        raise Skipped("not paired")
    if m.channel is None:
        m.open_channel()  # to see our calls refused once we are gone
    body = st.list_body or st.joined.members
    signed = leave_list(st, body)
    frame = seal(
        st.joined.circle_key,
        MEMBERS_KEY,
        pack(signed),
        kind=KIND_BROADCAST,
        sender=st.me.raw_id,
        epoch=st.joined.epoch,
        stream=1,
        counter=1,
    )
    st.link.put(MEMBERS_KEY, frame)
    # the node takes the proof: from then on our calls get the "no channel" reply
    # Until then a call is answered (the list is still on its way), or, while the node
    # takes the list, maybe not at all or not in a way our channel opens: asked again.
    deadline = time.monotonic() + opt.revoke_wait
    last = "no call made"
    while time.monotonic() < deadline:
        out = m.call("device.info", None, opt.timeout)
        if out.no_channel == 1 and not out.opened:
            revoked = unpack_map(signed["body"], "our list")["revoked"]
            return (
                f"published a self-revoking list ({len(revoked)} revoked) under the circle key"
                f" epoch {st.joined.epoch}; the node now answers our calls 'no channel'"
            )
        last = f"{len(out.opened)} result(s), {out.no_channel} 'no channel', {out.other} other"
        if not out.opened:
            time.sleep(0.05)
    raise StepFailed(
        f"no single 'no channel' answer {opt.revoke_wait:g} s after we left (last call: {last})"
    )
