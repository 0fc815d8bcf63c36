"""The conformance steps, in order; each returns why it passed or raises StepFailed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.crypto import Identity, raw_id
from conformance.link import Link
from conformance.messages import (
    ProtocolViolation,
    check_announcement,
)
from conformance.pairing import Joined, PairingFailed, pair
from conformance.peer import TYPE, Member
from conformance.report import Skipped, StepFailed
from conformance.streams import check_order, run_stream

ID_RE = re.compile(r"^[a-z2-7]{26}$")


@dataclass
class Options:
    connect: list[str]
    pin: str | None = None
    device: str | None = None
    timeout: float = 3.0
    revoke: Callable[[str], None] | None = None  # asks the node to revoke us
    revoke_wait: float = 15.0
    expect_kv: list[str] = field(default_factory=list)  # STORE/KEY=VALUE the node holds
    only: list[str] = field(default_factory=list)  # step names to run (default: all)


@dataclass
class State:
    link: Link
    me: Identity = field(default_factory=Identity)
    host: str = ""
    announcement: dict[str, Any] = field(default_factory=dict)
    joined: Joined | None = None
    member: Member | None = None
    info: dict[str, Any] = field(default_factory=dict)
    replayable: tuple[str, bytes] | None = None
    sync: Any = None  # conformance.datasync.Sync, made on first use
    list_body: dict[str, Any] | None = None  # the newest member list the node sent

    def need_member(self) -> Member:
        if self.member is None or self.member.channel is None:
            raise Skipped("needs a paired client with a channel (an earlier step failed)")
        return self.member


def discover(st: State, opt: Options) -> str:
    deadline = time.monotonic() + opt.timeout * 2
    while True:
        ids = [k.rsplit("/", 1)[-1] for k in st.link.alive("accord/v1/presence/*", opt.timeout)]
        ids = [i for i in ids if ID_RE.match(i) and (opt.device in (None, i))]
        if ids or time.monotonic() > deadline:
            break
    if not ids:
        raise StepFailed("no presence token under accord/v1/presence/*")
    errors, found = [], []
    for dev in ids:
        answer = st.link.get(f"accord/v1/announce/{dev}", timeout=opt.timeout)
        for r in answer.replies[:4]:
            try:
                found.append(check_announcement(r.payload))
            except ProtocolViolation as exc:
                errors.append(f"{dev}: {exc}")
    if not found:
        raise StepFailed("no valid announcement: " + "; ".join(errors or ["no replies"]))
    # with a PIN, the device whose window is open; else the first (highest seq of each)
    pick = [a for a in found if a.get("pairing")] if opt.pin else found
    if not pick:
        raise StepFailed("no device announces an open pairing window (pairing: true)")
    st.announcement = max(pick, key=lambda a: int(a.get("seq", 0)))
    st.host = st.announcement["device_id"]
    return f"{len(ids)} device(s); {st.host} {st.announcement['name']!r} signature verifies"


def announced(st: State, opt: Options) -> dict[str, Any]:
    """The node's current public announcement (the valid one with the highest seq)."""
    best: dict[str, Any] = {}
    for r in st.link.get(f"accord/v1/announce/{st.host}", timeout=opt.timeout).replies[:4]:
        try:
            a = check_announcement(r.payload)
        except ProtocolViolation:
            continue
        if a["device_id"] == st.host and a.get("seq", 0) >= best.get("seq", -1):
            best = a
    if not best:
        raise StepFailed("the node no longer answers its announce key with a valid announcement")
    return best


def wrong_pin(st: State, opt: Options) -> str:
    """One hello with a wrong PIN: the CHALLENGE's confirm_B does not verify, the client
    aborts, and the window stays open (one of its 5 attempts used)."""
    if not opt.pin:
        raise Skipped("no --pin given")
    if not st.host:
        raise Skipped("no device discovered")
    wrong = f"{(int(opt.pin) + 1) % 10**6:06d}"
    stranger = Identity()
    info = {"public_key": stranger.public_key, "name": "wrong pin", "type": TYPE}
    info["security_level"] = "SL1"
    try:
        pair(st.link, stranger, st.host, wrong, info, timeout=opt.timeout * 2)
    except PairingFailed as exc:
        if "confirm_B" not in str(exc):
            raise StepFailed(f"a wrong PIN was refused otherwise: {exc}") from exc
    else:
        raise StepFailed("a wrong PIN paired")
    if not announced(st, opt).get("pairing"):
        raise StepFailed("one wrong PIN closed the window (it allows 5 attempts)")
    return "confirm_B does not verify under a wrong PIN; abort sent; the window stays open"


def do_pair(st: State, opt: Options) -> str:
    if not opt.pin:
        raise Skipped("no --pin given")
    if not st.host:
        raise Skipped("no device discovered")
    info = {
        "public_key": st.me.public_key,
        "name": "conformance client",
        "type": TYPE,
        "security_level": "SL1",
    }
    try:
        st.joined = pair(st.link, st.me, st.host, opt.pin, info, timeout=opt.timeout * 2)
    except PairingFailed as exc:
        raise StepFailed(str(exc)) from exc
    st.member = Member(st.link, st.me, st.host, st.announcement["public_key"])
    for m in st.joined.members.get("members", []):
        if isinstance(m, dict) and isinstance(m.get("public_key"), bytes):
            st.member.keys.setdefault(str(m.get("device_id")), m["public_key"])
    st.member.revoked = {str(d) for d in st.joined.members.get("revoked", [])}
    st.member.show_up()
    # the PIN admits one device: the window closes, and the announcement says so
    deadline = time.monotonic() + opt.timeout
    while (now := announced(st, opt)).get("pairing"):
        if time.monotonic() > deadline:
            raise StepFailed("the announcement still says pairing: true after a success")
        time.sleep(0.02)  # polling the node's announcement, with a deadline
    if now.get("seq", 0) <= st.announcement.get("seq", 0):
        raise StepFailed("the announcement's seq did not grow when pairing changed")
    return (
        f"joined as {st.me.device_id}, epoch {st.joined.epoch}, code {st.joined.code};"
        " announcement now pairing: false, seq grew"
    )


def call(st: State, opt: Options) -> str:
    m = st.need_member()
    out = m.call("device.info", None, opt.timeout)
    if not out.opened:
        raise StepFailed(f"no authentic reply ({out.no_channel} 'no channel', {out.other} other)")
    res = out.opened[0]
    if not isinstance(res, dict) or res.get("ok") is not True:
        raise StepFailed(f"device.info failed: {res!r:.300}")
    value = res.get("value")
    if not isinstance(value, dict) or value.get("device_id") != st.host:
        raise StepFailed(f"device.info names another device: {value!r:.200}")
    st.info = value
    assert m.channel is not None
    key = m.rpc_key("device.info")
    st.replayable = (key, m.channel.seal(key, m.request(None, int(opt.timeout * 1000))))
    return f"device.info → {value.get('name')!r}, services {value.get('services')!r:.120}"


def stream(st: State, opt: Options) -> str:
    """Every node's `clip.fetch` of no live item ends at once (seq 0, ClipboardError);
    then the data streams the node serves: `camera.capture` read to its end frame;
    `sensors.watch` held without credit (the callee MUST stop at the window), then
    credited, then cancelled."""
    m = st.need_member()
    probe = run_stream(m, "clip.fetch", {"id": "conformance:0"}, timeout=opt.timeout * 2)
    end = probe.end
    if probe.items or end is None or end.get("seq") != 0:
        raise StepFailed(f"clip.fetch of no live item: {probe.frames!r:.200}")
    if end.get("error_type") != "ClipboardError":
        raise StepFailed(f"clip.fetch of no live item ended with {end.get('error_type')!r}")
    said = ["clip.fetch: end frame seq 0 ClipboardError"]
    services = st.info.get("services", [])
    if not isinstance(services, list):
        raise StepFailed(f"device.info services is not a list of str: {services!r:.120}")
    if "camera" in services:
        said.append(_capture(m, opt))
    if "sensors" in services:
        said.append(_watch(m, opt))
    return "; ".join(said)


def _capture(m: Member, opt: Options) -> str:
    params = {"width": 64, "height": 48}
    out = run_stream(m, "camera.capture", params, window=2, timeout=opt.timeout * 2)
    bad = check_order(out)
    if bad:
        raise StepFailed(f"camera.capture: {bad}")
    end = out.end
    if end is None:
        raise StepFailed(f"camera.capture: no end frame after {len(out.items)} items")
    if end.get("error_type"):
        raise StepFailed(f"camera.capture ended with {end['error_type']}: {end.get('error')}")
    header = out.items[0].get("value") if out.items else None
    if not isinstance(header, dict) or header.get("type") != "header":
        raise StepFailed(f"camera.capture's first item is not its header: {header!r:.120}")
    return f"camera.capture: header + {len(out.items) - 1} chunk(s), end at seq {end['seq']}"


def _watch(m: Member, opt: Options) -> str:
    params = {"interval_s": 0.05, "changes_only": False}
    hold = 0.5  # ten intervals: a callee that ignored credit would send ~10 items
    out = run_stream(
        m, "sensors.watch", params, window=2, max_items=5, hold_s=hold, timeout=opt.timeout * 2
    )
    bad = check_order(out)
    if bad:
        raise StepFailed(f"sensors.watch: {bad}")
    if out.over_credit:
        raise StepFailed(f"sensors.watch sent {out.over_credit} items beyond the granted 2")
    if len(out.items) < 5 or not out.cancelled:
        raise StepFailed(f"sensors.watch: {len(out.items)} items before the query ended")
    return (
        f"sensors.watch: stopped at the window of 2 for {hold} s, resumed on credit"
        f" ({out.credits} grants), cancelled after 5"
    )


def typed_errors(st: State, opt: Options) -> str:
    m = st.need_member()
    assert m.channel is not None
    seen = []
    out = m.call("nosuch.method", None, opt.timeout)
    _expect_error(out.opened, "UnknownMethod", "an unknown method")
    seen.append("UnknownMethod")
    key = m.rpc_key("device.info")
    garbage = m.sealed_query(key, m.channel.seal(key, b"\xc1 not msgpack"), timeout=opt.timeout)
    _expect_error(garbage.opened, "InvalidRequest", "a sealed frame that is not an RpcRequest")
    seen.append("InvalidRequest")
    wrong = run_stream(m, "device.info", None, window=2, timeout=opt.timeout)
    end = wrong.end
    if end is None or end.get("seq") != 0 or end.get("error_type") != "WrongCallKind":
        raise StepFailed(f"a call method called as a stream: {wrong.frames!r:.200}")
    seen.append("WrongCallKind")
    bad = m.call("device.info", 5, opt.timeout)
    _expect_error(bad.opened, "InvalidParams", "params 5 to a method that takes none")
    seen.append("InvalidParams")
    empty = m.call("device.info", {}, opt.timeout)
    if not empty.opened or empty.opened[0].get("ok") is not True:
        raise StepFailed(
            f"params {{}} to a method that takes none (MUST be nil): {empty.opened!r:.200}"
        )
    return "typed errors: " + ", ".join(seen) + "; {} taken as nil"


def _expect_error(opened: list[Any], error_type: str, what: str) -> None:
    if not opened:
        raise StepFailed(f"{what}: no authentic reply (expected {error_type})")
    res = opened[0]
    if not isinstance(res, dict) or res.get("ok") is not False:
        raise StepFailed(f"{what}: {res!r:.200}")
    if res.get("error_type") != error_type:
        raise StepFailed(f"{what}: error_type {res.get('error_type')!r}, not {error_type}")


def alive(st: State, opt: Options) -> None:
    """The node still answers an authentic call (it did not crash or wedge)."""
    m = st.need_member()
    out = m.call("device.info", None, opt.timeout)
    if not out.opened or not out.opened[0].get("ok"):
        raise StepFailed("the node no longer answers device.info after the hostile frames")


def replay(st: State, opt: Options) -> str:
    m = st.need_member()
    if st.replayable is None:
        raise Skipped("no frame to replay")
    key, frame = st.replayable
    first = m.sealed_query(key, frame, timeout=opt.timeout)
    if not first.opened:
        raise StepFailed("the fresh frame got no authentic reply")
    again = m.sealed_query(key, frame, timeout=opt.timeout)
    if not again.silent:
        raise StepFailed(
            f"the replayed frame was answered: {len(again.opened)} results,"
            f" {again.no_channel} 'no channel', {again.other} other"
        )
    # our channel's OFFER again: its number is confirmed, so it is refused in silence
    offer = st.link.get(f"accord/v1/channel/{st.host}", m.last_offer, timeout=opt.timeout)
    if offer.replies:
        raise StepFailed(
            f"a replayed OFFER of a confirmed channel got {len(offer.replies)} replies"
        )
    alive(st, opt)
    return (
        f"replayed RPC frame: no reply (query ended in {again.seconds:.2f} s);"
        " replayed OFFER: no reply; node answers after"
    )


def forged(st: State, opt: Options) -> str:
    """A frame sealed with our channel's key under another member's name. The spec
    documents the answer for a member other than the callee (one empty "no channel"
    reply, nothing run); for the callee's own id it is silent (logged gap), so then
    silence is accepted too."""
    m = st.need_member()
    assert m.channel is not None
    others = [d for d in m.keys if d not in (st.me.device_id, st.host, *m.revoked)]
    victim = others[0] if others else st.host
    key = m.rpc_key("device.info")
    real_sender = m.channel.sender
    m.channel.sender = raw_id(victim)  # our channel's key, another member's name
    try:
        frame = m.channel.seal(key, m.request(None, int(opt.timeout * 1000)))
    finally:
        m.channel.sender = real_sender
    out = m.sealed_query(key, frame, timeout=opt.timeout)
    documented = out.no_channel == 1 if others else out.no_channel <= 1
    if out.opened or out.other or not documented:
        raise StepFailed(
            f"a frame naming {victim} as sender: {len(out.opened)} results, "
            f"{out.no_channel} 'no channel', {out.other} other (expected one 'no channel')"
        )
    offer = m.offer(claimed_id=victim, timeout=opt.timeout)
    if offer.channel is not None:
        raise StepFailed(f"an OFFER naming {victim}, signed by us, was answered")
    alive(st, opt)
    whose = "another member's" if others else "the node's own (no other member known)"
    answer = "one empty 'no channel' reply" if out.no_channel else "silence"
    return f"frame under {whose} name: {answer}; forged OFFER unanswered; node answers after"
