"""RPC streams with credit and cancel (docs/protocol.md, "Remote calls / Streams")."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from conformance.link import stream_replies
from conformance.messages import ProtocolViolation, unpack
from conformance.peer import Member

_END = object()  # the query finished (Zenoh finalized it or it timed out)


@dataclass
class StreamOutcome:
    frames: list[dict[str, Any]] = field(default_factory=list)
    credits: int = 0
    cancelled: bool = False
    no_channel: int = 0
    other: int = 0
    over_credit: int = 0  # items that came while none was granted (a callee fault)
    finished: bool = False  # the query ended (all replies in)

    @property
    def items(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if not f.get("end")]

    @property
    def end(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("end")), None)


class _Replies:
    """A query's replies read on a thread of their own, so the caller can wait for
    the next one with a deadline (and notice that none comes)."""

    def __init__(self, member: Member, key: str, frame: bytes, timeout: float) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        handler = stream_replies(member.link, key, frame, timeout)
        self.thread = threading.Thread(target=self._read, args=(handler,), daemon=True)
        self.thread.start()

    def _read(self, handler: Any) -> None:
        try:
            for reply in handler:
                self.q.put(reply)
        finally:
            self.q.put(_END)

    def next(self, wait: float) -> Any:
        """The next reply, ``_END``, or None if nothing came within ``wait`` s."""
        try:
            return self.q.get(timeout=max(wait, 0.0))
        except queue.Empty:
            return None


def run_stream(
    member: Member,
    target: str,
    params: Any,
    *,
    window: int = 2,
    max_items: int = 0,
    hold_s: float = 0.0,
    timeout: float = 5.0,
) -> StreamOutcome:
    """Call a stream; grant credit as items are consumed (Accord's rule: `consumed +
    window` when fewer than `window / 2` remain). With ``hold_s``, grant nothing for
    that long once the first `window` items are in, counting any item that comes
    meanwhile (the callee MUST wait for credit). With ``max_items``, cancel after
    that many items."""
    assert member.channel is not None
    key = member.rpc_key(target)
    raw = member.request(params, int(timeout * 1000), window)
    call_id = unpack(raw)["call_id"]
    replies = _Replies(member, key, member.channel.seal(key, raw), timeout)
    out = StreamOutcome()
    granted, held = window, hold_s <= 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = replies.next(deadline - time.monotonic())
        if reply is _END:
            out.finished = True
            break
        value = _open(member, key, reply, out)
        if value is None:
            continue
        out.frames.append(value)
        if value.get("end"):
            break
        consumed = len(out.items)
        if max_items and consumed >= max_items:
            cancel = {"call_id": call_id}
            member.publish_sealed(f"accord/v1/rpc-cancel/{member.host}", cancel)
            out.cancelled = True
            break
        if not held and consumed >= granted:
            out.over_credit += _hold(member, key, replies, out, hold_s)
            held = True
        if granted - consumed < window / 2:
            granted = consumed + window
            credit = {"call_id": call_id, "granted": granted}
            member.publish_sealed(f"accord/v1/rpc-credit/{member.host}", credit)
            out.credits += 1
    return out


def _hold(member: Member, key: str, replies: _Replies, out: StreamOutcome, hold_s: float) -> int:
    """Wait ``hold_s`` granting nothing; items that come are over the credit."""
    extra = 0
    until = time.monotonic() + hold_s
    while (left := until - time.monotonic()) > 0:
        reply = replies.next(left)
        if reply is None:
            break
        if reply is _END:
            out.finished = True
            break
        value = _open(member, key, reply, out)
        if value is not None:
            out.frames.append(value)
            extra += 0 if value.get("end") else 1
    return extra


def _open(member: Member, key: str, reply: Any, out: StreamOutcome) -> dict[str, Any] | None:
    """A reply as an authentic StreamFrame, or None (counted as 'no channel' or other)."""
    assert member.channel is not None
    if reply is None or reply.ok is None:
        out.other += reply is not None
        return None
    payload = reply.ok.payload.to_bytes()
    if not payload:
        out.no_channel += 1
        return None
    plain = member.channel.open_from_peer(key, payload)
    try:
        value = unpack(plain) if plain is not None else None
    except ProtocolViolation:
        value = None
    if not isinstance(value, dict):
        out.other += 1
        return None
    return value


def check_order(out: StreamOutcome) -> str:
    """'' if seqs run 0, 1, 2... (end frame at seq = number of items), else why not."""
    for i, f in enumerate(out.frames):
        if f.get("seq") != i:
            return f"frame {i} has seq {f.get('seq')!r}"
    return ""
