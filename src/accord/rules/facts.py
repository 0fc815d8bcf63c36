"""What the engine knows of the world: events that may fire triggers, and the
current state that conditions test. Pure: the runner fills them in, tests build
them by hand."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from accord.rules.spec import Condition

MISSING: Any = object()


class SensorEvent(msgspec.Struct, frozen=True):
    device: str  # device id
    readings: dict[str, Any]  # sensors.read as plain data


class KvEvent(msgspec.Struct, frozen=True):
    store: str
    key: str
    value: Any
    device: str = ""  # who wrote it


class PresenceEvent(msgspec.Struct, frozen=True):
    device: str
    joined: bool


class NoteEvent(msgspec.Struct, frozen=True):
    device: str  # where it was posted
    app: str
    title: str
    body: str = ""


Event = SensorEvent | KvEvent | PresenceEvent | NoteEvent


def path_value(readings: Any, path: str) -> Any:
    """``doors.fridge`` or ``cabinets.freezer.temperature_c`` in a reading: dict keys,
    list items by their ``name`` (or index); :data:`MISSING` if absent."""
    value = readings
    for part in path.split("."):
        if isinstance(value, Mapping):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(value, list):
            found = [v for v in value if isinstance(v, Mapping) and v.get("name") == part]
            if found:
                value = found[0]
            elif part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return MISSING
        else:
            return MISSING
    return value


def kv_value(raw: bytes | None) -> Any:
    """A store value as rules compare it: text (numbers compare as numbers)."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


@dataclass
class Facts:
    """The current state, as of ``now`` (wall seconds)."""

    now: float
    sensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # device id -> reading
    kv: dict[tuple[str, str], Any] = field(default_factory=dict)  # (store, key) -> value
    online: set[str] = field(default_factory=set)
    utc_offset_s: float | None = None  # None: this machine's local time zone

    def local(self, t: float) -> time.struct_time:
        if self.utc_offset_s is None:
            return time.localtime(t)
        return time.gmtime(t + self.utc_offset_s)

    def sensor(self, device: str, path: str) -> Any:
        reading = self.sensors.get(device)
        return MISSING if reading is None else path_value(reading, path)


def clock_minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def evaluate(cond: Condition, facts: Facts, names: Mapping[str, str]) -> bool:
    """Whether ``cond`` holds now. Unknown values (a sensor not read yet, a device
    that is not a member) make a test false, never an error."""
    if cond.kind == "and":
        return all(evaluate(c, facts, names) for c in cond.children)
    if cond.kind == "or":
        return any(evaluate(c, facts, names) for c in cond.children)
    if cond.kind == "not":
        return not evaluate(cond.children[0], facts, names)
    if cond.kind == "sensor":
        value = facts.sensor(names.get(cond.device, ""), cond.sensor)
        return value is not MISSING and all(t.holds(value) for t in cond.tests)
    if cond.kind == "kv":
        value = facts.kv.get((cond.store, cond.key))
        return value is not None and all(t.holds(value) for t in cond.tests)
    if cond.kind == "online":
        return (names.get(cond.device, "") in facts.online) == cond.online
    local = facts.local(facts.now)
    if cond.weekdays and local.tm_wday not in cond.weekdays:
        return False
    minute = local.tm_hour * 60 + local.tm_min
    after = clock_minutes(cond.after) if cond.after else 0
    before = clock_minutes(cond.before) if cond.before else 24 * 60
    if after <= before:
        return after <= minute < before
    return minute >= after or minute < before  # a window across midnight: 22:00-06:00
