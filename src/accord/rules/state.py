"""What a rule's runner persists, so that another member resumes it: pending
``for`` deadlines, runs in the middle of a delay or a wait, the queue, and traces.

All times are wall-clock seconds since the epoch: a deadline written by one member
is read by another, and a monotonic clock means nothing across devices (members
are expected to keep NTP time; skew between them shifts a resumed deadline by as
much). Everything here is encoded with MessagePack into the ``accord.rules.runs``
store (see docs/protocol.md).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Outcome = Literal[
    "running", "done", "failed", "conditions not met", "skipped: already running",
    "skipped: too many runs", "restarted", "stopped: wait timed out", "rule changed",
]  # fmt: skip


class Pending(msgspec.Struct, kw_only=True):
    """A sensor trigger whose tests hold, counting towards its ``for``."""

    since: float
    deadline: float
    fired: bool = False
    confirmed: bool = True  # False after a takeover, until a fresh reading agrees
    value: Any = None


class ConditionTrace(msgspec.Struct, frozen=True):
    what: str
    ok: bool


class ActionTrace(msgspec.Struct, kw_only=True):
    step: int
    what: str
    started: float
    ended: float = 0.0
    ok: bool | None = None  # None: not finished
    device: str = ""  # who ran it (a member's name), for remote actions
    result: Any = None
    error: str = ""


class Trace(msgspec.Struct, kw_only=True):
    """One run of a rule: what fired it, what the conditions said, each action."""

    rule: str
    run_id: str
    version: str
    runner: str  # the member that ran it (its name)
    started: float
    ended: float = 0.0
    trigger: dict[str, Any] = {}
    conditions: list[ConditionTrace] = []
    actions: list[ActionTrace] = []
    outcome: Outcome = "running"
    resumed_by: list[str] = []  # members that took the run over from a runner that went


class Run(msgspec.Struct, kw_only=True):
    id: str
    vars: dict[str, Any]
    trace: Trace
    step: int = 0
    wake: float | None = None  # a delay's end or a wait's timeout
    waiting: bool = False
    acting: bool = False  # an action was handed out and has not come back


class RuleState(msgspec.Struct, kw_only=True):
    version: str  # the rule record this state belongs to; another version starts afresh
    runner: str = ""
    saved_at: float = 0.0
    seq: int = 0
    pending: dict[str, Pending] = {}
    runs: list[Run] = []
    queue: list[dict[str, Any]] = []
    last_time: dict[str, float] = {}  # time triggers: the last slot that fired


def encode_state(state: RuleState) -> bytes:
    return msgspec.msgpack.encode(state)


def decode_state(raw: bytes) -> RuleState | None:
    try:
        return msgspec.msgpack.decode(raw, type=RuleState)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a member wrote nonsense: start afresh rather than fail the rule


def decode_trace(raw: bytes) -> Trace | None:
    try:
        return msgspec.msgpack.decode(raw, type=Trace)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
