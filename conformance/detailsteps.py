"""The details step (docs/protocol.md, "Member traffic / Details")."""

from __future__ import annotations

import hashlib
from typing import Any

from conformance.messages import (
    ProtocolViolation,
    check_signed_list,
    own_announcement,
    pack,
    unpack_map,
)
from conformance.report import Skipped, StepFailed
from conformance.steps import Options, State

KEY_ID_PERSON = b"accord/v1/key-id"  # BLAKE2b personalization, 16 bytes


def details(st: State, opt: Options) -> str:
    if st.member is None:
        raise Skipped("not paired")
    m = st.member
    m.open_channel()
    key = f"accord/v1/details/{st.host}"
    assert m.channel is not None
    out = m.sealed_query(key, m.channel.seal(key, b""), timeout=opt.timeout)
    if not out.opened:
        raise StepFailed(
            f"no authentic Details ({out.no_channel} 'no channel', {out.other} other replies)"
        )
    d = out.opened[0]
    if not isinstance(d, dict) or not isinstance(d.get("announcement"), bytes):
        raise StepFailed(f"Details is not {{announcement: bin, members}}: {d!r:.200}")
    ann = unpack_map(d["announcement"], "Announcement")
    if ann.get("device_id") != st.host or ann.get("public_key") != m.host_key:
        raise StepFailed("the sealed Announcement names another device or key")
    profile = ann.get("profile")
    if not isinstance(profile, dict) or "security_level" not in profile:
        raise StepFailed(f"Announcement.profile is not a Profile: {profile!r:.200}")
    keyed = _check_details_list(st, d)
    caps = ann.get("capabilities")
    carried = _details_carrying(st, opt, d)
    return (
        f"sealed Details: {ann.get('name')!r}, {profile.get('type')}, caps {caps}{keyed}; {carried}"
    )


def _details_carrying(st: State, opt: Options, theirs: dict[str, Any]) -> str:
    """A details query may carry the asker's own Details; one whose announcement is not
    the asker's is ignored and the query still answered. Both get the node's Details."""
    m = st.need_member()
    assert m.channel is not None
    key = f"accord/v1/details/{st.host}"
    ours = dict(theirs, announcement=own_announcement(st.me))
    foreign = dict(theirs)  # the node's own announcement, as if it were ours
    for what, body in (("our own Details", ours), ("Details of another device", foreign)):
        out = m.sealed_query(key, m.channel.seal(key, pack(body)), timeout=opt.timeout)
        got = out.opened[0] if out.opened else None
        if not isinstance(got, dict) or not isinstance(got.get("announcement"), bytes):
            raise StepFailed(f"a details query carrying {what} was not answered with Details")
    return "queries carrying our Details and a foreign one: both answered"


def _check_details_list(st: State, d: dict[str, Any]) -> str:
    """The Details' SignedList verifies and is of our circle; its key_id (if the
    epoch is ours) names the circle key we hold."""
    assert st.member is not None
    assert st.joined is not None
    signed = d.get("members")
    signer = signed.get("signer") if isinstance(signed, dict) else None
    key = st.member.keys.get(str(signer))
    if key is None:
        raise StepFailed(f"Details.members is signed by {signer!r}, not a member we know")
    try:
        body = check_signed_list(signed, key)
    except ProtocolViolation as exc:
        raise StepFailed(f"Details.members: {exc}") from exc
    st.list_body = body
    if body.get("circle_id") != st.joined.members.get("circle_id"):
        raise StepFailed("Details.members is another circle's list")
    epoch, key_id = d.get("epoch", 0), d.get("key_id", b"")
    if epoch == st.joined.epoch and key_id:
        want = hashlib.blake2b(st.joined.circle_key, digest_size=8, person=KEY_ID_PERSON)
        if key_id != want.digest():
            raise StepFailed("Details.key_id does not name the circle key we were given")
        return f"; list verifies, key_id matches epoch {epoch}"
    return f"; list verifies (epoch {epoch})"
