"""Rule records as the circle stores them, who wrote them, and who runs them. Pure.

A rule lives in the per-device store ``accord.rules`` under ``rule/NAME`` in the
namespace of the member that last wrote it: the data layer lets only a device write
its own namespace and proves every row's origin, so the namespace *is* the author.
The record is also signed by its author, so a member asked to act on it can check
the author without trusting whoever forwards it. The record of a name that counts
is the newest (``written_at``, then author id) among valid ones; a removed rule is
a newer record with ``deleted``.

Who runs a rule is computed by every member alike from the online members, as apps
failover does (:mod:`accord.apps.placement`): mains power first, then a hash of
(rule, device) so rules spread over the always-on members, then the id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from accord.device.identity import verify

RULES_STORE: Final = "accord.rules"  # per-device, S1: definitions (this module)
RUNS_STORE: Final = "accord.rules.runs"  # per-device, S1: run state and traces
RULE_PREFIX: Final = "rule/"
STATE_PREFIX: Final = "state/"
TRACE_PREFIX: Final = "trace/"
_CONTEXT: Final = b"accord.rules.record.v1\x00"

KeyOf = Callable[[str], bytes | None]


class RuleRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    source: str  # the TOML text, parsed alike by every member
    author: str  # device id of the member that wrote this record
    written_at: float
    enabled: bool = True
    deleted: bool = False
    signature: bytes = b""

    @property
    def version(self) -> str:
        """Short id of this exact record (state and traces belong to one version)."""
        return hashlib.sha256(signed_bytes(self)).hexdigest()[:16]


def signed_bytes(record: RuleRecord) -> bytes:
    fields = [record.name, record.source, record.author, record.written_at,
              record.enabled, record.deleted]  # fmt: skip
    return _CONTEXT + msgspec.msgpack.encode(fields)


def sign_record(record: RuleRecord, sign: Callable[[bytes], bytes]) -> RuleRecord:
    return msgspec.structs.replace(record, signature=sign(signed_bytes(record)))


def record_valid(record: RuleRecord, key_of: KeyOf, namespace: str | None = None) -> bool:
    """Signed by its author (a member's key), and found in the author's own namespace
    when ``namespace`` is given."""
    if namespace is not None and namespace != record.author:
        return False
    key = key_of(record.author)
    return key is not None and verify(key, record.signature, signed_bytes(record))


def decode_record(raw: bytes) -> RuleRecord | None:
    try:
        return msgspec.msgpack.decode(raw, type=RuleRecord)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def newest(records: Iterable[RuleRecord]) -> dict[str, RuleRecord]:
    """The record that counts for each name (deleted ones included)."""
    out: dict[str, RuleRecord] = {}
    for rec in records:
        held = out.get(rec.name)
        if held is None or (rec.written_at, rec.author) > (held.written_at, held.author):
            out[rec.name] = rec
    return out


class Candidate(msgspec.Struct, frozen=True):
    device_id: str
    name: str
    mains: bool


def runner_for(rule: str, candidates: Iterable[Candidate]) -> Candidate | None:
    """The one member that runs ``rule``, from the online members every member sees."""

    def rank(c: Candidate) -> tuple[int, str, str]:
        spread = hashlib.sha256(f"{rule}\x00{c.device_id}".encode()).hexdigest()
        return (0 if c.mains else 1, spread, c.device_id)

    ranked = sorted(candidates, key=rank)
    return ranked[0] if ranked else None
