"""RPC streams with credit and cancel (docs/protocol.md, "Remote calls / Streams")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.link import stream_replies
from conformance.messages import ProtocolViolation, unpack
from conformance.peer import Member


@dataclass
class StreamOutcome:
    frames: list[dict[str, Any]] = field(default_factory=list)
    credits: int = 0
    cancelled: bool = False
    no_channel: int = 0
    other: int = 0

    @property
    def items(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if not f.get("end")]

    @property
    def end(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("end")), None)


def run_stream(
    member: Member,
    target: str,
    params: Any,
    *,
    window: int = 2,
    max_items: int = 0,
    timeout: float = 5.0,
) -> StreamOutcome:
    """Call a stream; grant credit as items are consumed; with ``max_items``, cancel
    after that many items."""
    assert member.channel is not None
    key = member.rpc_key(target)
    raw = member.request(params, int(timeout * 1000), window)
    call_id = unpack(raw)["call_id"]
    frame = member.channel.seal(key, raw)
    out = StreamOutcome()
    granted = window
    for reply in stream_replies(member.link, key, frame, timeout):
        if reply.ok is None:
            out.other += 1
            continue
        payload = reply.ok.payload.to_bytes()
        if not payload:
            out.no_channel += 1
            continue
        plain = member.channel.open_from_peer(key, payload)
        if plain is None:
            out.other += 1
            continue
        try:
            value = unpack(plain)
        except ProtocolViolation:
            out.other += 1
            continue
        if not isinstance(value, dict):
            out.other += 1
            continue
        out.frames.append(value)
        if value.get("end"):
            break
        consumed = len(out.items)
        if max_items and consumed >= max_items:
            member.publish_sealed(f"accord/v1/rpc-cancel/{member.host}", {"call_id": call_id})
            out.cancelled = True
            break
        if granted - consumed < window / 2:
            granted = consumed + window
            member.publish_sealed(
                f"accord/v1/rpc-credit/{member.host}", {"call_id": call_id, "granted": granted}
            )
            out.credits += 1
    return out


def check_order(out: StreamOutcome) -> str:
    """'' if seqs run 0, 1, 2... (end frame at seq = number of items), else why not."""
    for i, f in enumerate(out.frames):
        if f.get("seq") != i:
            return f"frame {i} has seq {f.get('seq')!r}"
    return ""
