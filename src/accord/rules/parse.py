"""Rule files: TOML text -> :class:`~accord.rules.spec.Rule`, or an error that names
the file, the line and the field, and says what would be right.

Strict, like profiles: unknown fields are errors (a typo such as ``fro = "2s"`` must
not silently make a rule fire at once). Which kind of trigger, condition or action
a table is follows from the one key that names it (``sensor``, ``store``, ``at``,
``call``, ``delay``...).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any, NoReturn, get_args

from accord.rules.errors import RuleFileError
from accord.rules.locate import locate
from accord.rules.spec import (
    BEST,
    DEFAULT_TRACES,
    MAX_RUNS,
    MAX_TRACES,
    Action,
    Condition,
    Mode,
    Rule,
    Test,
    Trigger,
)
from accord.rules.template import check_template

Path = tuple[str | int, ...]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEST_KEYS = ("equals", "above", "below")
MAX_ACTIONS = 50
MAX_DEPTH = 8


class _Checker:
    def __init__(self, source: str, file: str) -> None:
        self.source = source
        self.file = file

    def fail(self, path: Path, message: str) -> NoReturn:
        field = _field_name(path)
        raise RuleFileError(message, file=self.file, line=locate(self.source, path), field=field)

    def table(self, value: Any, path: Path, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, not {_kind(value)}")
        for key in value:
            if key not in known:
                self.fail((*path, key), f"unknown field; known here: {', '.join(known)}")
        return value

    def text(self, table: Mapping[str, Any], key: str, path: Path, *, required: bool = False,
             default: str = "") -> str:  # fmt: skip
        if key not in table:
            if required:
                self.fail(path, f'needs {key} = "..."')
            return default
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.fail((*path, key), f"must be non-empty text, not {_kind(value)}")
        return value

    def flag(self, table: Mapping[str, Any], key: str, path: Path, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.fail((*path, key), f"must be true or false, not {_kind(value)}")
        return value

    def duration(self, table: Mapping[str, Any], key: str, path: Path) -> float:
        if key not in table:
            return 0.0
        value = table[key]
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        if seconds is None or not 0 <= seconds <= 366 * 86400:
            self.fail((*path, key), f"{value!r} is not a duration (use 2s, 500ms, 5m, 1h or "
                                    "a number of seconds, at most a year)")  # fmt: skip
        return seconds

    def clock(self, table: Mapping[str, Any], key: str, path: Path) -> str:
        value = table.get(key, "")
        if value and not (isinstance(value, str) and CLOCK.match(value)):
            self.fail((*path, key), f'{value!r} is not a time of day (use "HH:MM", 24 h)')
        return str(value)

    def tests(self, table: Mapping[str, Any], path: Path) -> tuple[Test, ...]:
        out = []
        for op in TEST_KEYS:
            if op not in table:
                continue
            value = table[op]
            if op != "equals" and (isinstance(value, bool) or not isinstance(value, int | float)):
                self.fail((*path, op), f"must be a number, not {_kind(value)}")
            if isinstance(value, dict | list):
                self.fail((*path, op), "compare with a number, text or true/false")
            out.append(Test(op, value))  # type: ignore[arg-type]
        return tuple(out)

    def device(self, table: Mapping[str, Any], key: str, path: Path, *, best: bool) -> str:
        name = self.text(table, key, path, required=True)
        if name.startswith(BEST) and (not best or len(name) == len(BEST)):
            what = "name a device here" if not best else "name a capability: best:display"
            self.fail((*path, key), what)
        return name

    def templates(self, value: Any, path: Path) -> None:
        if isinstance(value, str):
            problem = check_template(value)
            if problem:
                self.fail(path, problem)
        elif isinstance(value, dict):
            for k, v in value.items():
                self.templates(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.templates(v, (*path, i))


def parse_rule(source: str, file: str = "rule") -> Rule:
    """Check ``source`` (a rule file's text) and return the rule it describes."""
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise RuleFileError(f"not valid TOML: {exc}", file=file,
                            line=int(line.group(1)) if line else 0) from None  # fmt: skip
    c = _Checker(source, file)
    top = c.table(doc, (), ("name", "description", "mode", "max", "traces", "trigger",
                            "condition", "action"))  # fmt: skip
    name = c.text(top, "name", (), required=True)
    if not NAME.match(name):
        c.fail(("name",), "use letters, digits, '.', '-' or '_' (at most 64)")
    mode = top.get("mode", "single")
    if mode not in get_args(Mode):
        c.fail(("mode",), f"{mode!r} is not a mode; use one of {', '.join(get_args(Mode))}")
    most = _bounded(c, top, "max", MAX_RUNS, 1, 100)
    traces = _bounded(c, top, "traces", DEFAULT_TRACES, 1, MAX_TRACES)
    triggers = [_trigger(c, t, p) for t, p in _items(c, top, "trigger", required=True)]
    conditions = [_condition(c, t, p, 0) for t, p in _items(c, top, "condition")]
    actions = [_action(c, t, p) for t, p in _items(c, top, "action", required=True)]
    if len(actions) > MAX_ACTIONS:
        c.fail(("action",), f"at most {MAX_ACTIONS} actions")
    return Rule(name=name, description=str(top.get("description", "")), mode=mode, max=most,
                traces=traces, triggers=tuple(triggers), conditions=tuple(conditions),
                actions=tuple(actions))  # fmt: skip


def _bounded(c: _Checker, top: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = top.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        c.fail((key,), f"must be a whole number from {lo} to {hi}")
    return value


def _items(c: _Checker, top: dict[str, Any], key: str, *, required: bool = False,
           ) -> list[tuple[dict[str, Any], Path]]:  # fmt: skip
    """``[key]`` (one table) or ``[[key]]`` (several), each with its path."""
    value = top.get(key)
    if value is None:
        if required:
            c.fail((), f"needs at least one [{key}] table")
        return []
    if isinstance(value, dict):
        return [(value, (key,))]
    if not isinstance(value, list) or (required and not value):
        c.fail((key,), f"must be a [{key}] table or [[{key}]] tables")
    return [(item, (key, i)) for i, item in enumerate(value)]


TRIGGER_KEYS = ("device", "sensor", *TEST_KEYS, "for", "store", "key", "presence",
                "notification", "app", "title", "at", "every")  # fmt: skip


def _trigger(c: _Checker, raw: Any, path: Path) -> Trigger:
    t = c.table(raw, path, TRIGGER_KEYS)
    kinds: list[str] = [
        k for k in ("sensor", "store", "presence", "notification", "at", "every") if k in t
    ]
    if not kinds and "app" in t:
        kinds = ["app"]
    if len(kinds) != 1:
        c.fail(path, "say what triggers it with one of: sensor (with device), store, "
                     "presence, notification, app, at or every")  # fmt: skip
    kind = kinds[0]
    allowed = {
        "sensor": {"device", "sensor", *TEST_KEYS, "for"},
        "store": {"store", "key"},
        "presence": {"device", "presence"},
        "notification": {"notification", "app", "title"},
        "app": {"app", "title"},
        "at": {"at"},
        "every": {"every"},
    }[kind]
    for key in t:
        if key not in allowed:
            c.fail((*path, key), f"does not belong in a {kind} trigger "
                                 f"(its fields: {', '.join(sorted(allowed))})")  # fmt: skip
    if kind == "sensor":
        return Trigger(kind="sensor", device=c.device(t, "device", path, best=False),
                       sensor=c.text(t, "sensor", path, required=True),
                       tests=c.tests(t, path), for_s=c.duration(t, "for", path))  # fmt: skip
    if kind == "store":
        return Trigger(kind="kv", store=c.text(t, "store", path, required=True),
                       key=str(t.get("key", "")))  # fmt: skip
    if kind == "presence":
        event = t["presence"]
        if event not in ("joins", "leaves"):
            c.fail((*path, "presence"), 'must be "joins" or "leaves"')
        return Trigger(kind="presence", device=c.device(t, "device", path, best=False),
                       event=event)  # fmt: skip
    if kind in ("notification", "app"):
        device = "any"
        if kind == "notification":
            device = c.text(t, "notification", path, required=True)
        return Trigger(kind="notification" if kind == "notification" else "app", device=device,
                       app=c.text(t, "app", path), title=c.text(t, "title", path))  # fmt: skip
    if kind == "at":
        at = c.clock(t, "at", path)
        return Trigger(kind="time", at=at)
    every = c.duration(t, "every", path)
    if every < 1:
        c.fail((*path, "every"), "must be at least 1 s")
    return Trigger(kind="time", every_s=every)


CONDITION_KEYS = ("device", "sensor", "store", "key", *TEST_KEYS, "online", "after",
                  "before", "weekdays", "and", "or", "not")  # fmt: skip


def _condition(c: _Checker, raw: Any, path: Path, depth: int) -> Condition:
    if depth > MAX_DEPTH:
        c.fail(path, f"conditions nest at most {MAX_DEPTH} deep")
    t = c.table(raw, path, CONDITION_KEYS)
    for group in ("and", "or"):
        if group in t:
            if len(t) != 1:
                c.fail(path, f"a table with {group} holds nothing else")
            items = t[group]
            if not isinstance(items, list) or not items:
                c.fail((*path, group), "must be a list of conditions: [{...}, {...}]")
            return Condition(kind=group, children=tuple(
                _condition(c, item, (*path, group, i), depth + 1) for i, item in enumerate(items)
            ))  # fmt: skip
    if "not" in t:
        if len(t) != 1:
            c.fail(path, "a table with not holds nothing else")
        return Condition(kind="not", children=(_condition(c, t["not"], (*path, "not"), depth + 1),))
    tests = c.tests(t, path)
    if "sensor" in t:
        if not tests:
            c.fail(path, "a sensor condition needs equals, above or below")
        return Condition(kind="sensor", device=c.device(t, "device", path, best=False),
                         sensor=c.text(t, "sensor", path, required=True), tests=tests)  # fmt: skip
    if "store" in t:
        if not tests:
            c.fail(path, "a store condition needs equals, above or below")
        return Condition(kind="kv", store=c.text(t, "store", path, required=True),
                         key=c.text(t, "key", path, required=True), tests=tests)  # fmt: skip
    if "online" in t:
        return Condition(kind="online", device=c.device(t, "device", path, best=False),
                         online=c.flag(t, "online", path, True))  # fmt: skip
    if any(k in t for k in ("after", "before", "weekdays")):
        days = t.get("weekdays", [])
        if not isinstance(days, list) or any(d not in DAYS for d in days):
            c.fail((*path, "weekdays"), f"must be a list of {', '.join(DAYS)}")
        return Condition(kind="time", after=c.clock(t, "after", path),
                         before=c.clock(t, "before", path),
                         weekdays=tuple(DAYS.index(d) for d in days))  # fmt: skip
    c.fail(path, "say what to check: sensor (with device), store and key, online (with "
                 "device), after/before/weekdays, or and/or/not")  # fmt: skip


ACTION_KEYS = ("device", "call", "params", "notify", "title", "body", "store", "key",
               "value", "app", "run", "move", "stop", "delay", "wait", "timeout",
               "continue_on_timeout", "continue_on_error")  # fmt: skip


def _action(c: _Checker, raw: Any, path: Path) -> Action:
    t = c.table(raw, path, ACTION_KEYS)
    kinds = [k for k in ("call", "notify", "store", "app", "delay", "wait") if k in t]
    if len(kinds) != 1:
        c.fail(path, "say what to do with one of: call (with device), notify, store (with "
                     "key and value), app (with run, move or stop), delay or wait")  # fmt: skip
    kind = kinds[0]
    allowed = {
        "call": {"device", "call", "params"},
        "notify": {"notify", "title", "body"},
        "store": {"store", "key", "value"},
        "app": {"app", "run", "move", "stop", "params"},
        "delay": {"delay"},
        "wait": {"wait", "timeout", "continue_on_timeout"},
    }[kind] | {"continue_on_error"}
    for key in t:
        if key not in allowed:
            c.fail((*path, key), f"does not belong in a {kind} action "
                                 f"(its fields: {', '.join(sorted(allowed))})")  # fmt: skip
    on_error = c.flag(t, "continue_on_error", path, False)
    c.templates(t.get("params", {}), (*path, "params"))
    if kind == "call":
        call = c.text(t, "call", path, required=True)
        service, _, method = call.partition(".")
        if not service or not method or "/" in call:
            c.fail((*path, "call"), "name the method as SERVICE.METHOD, e.g. display.show")
        if service == "rules":
            c.fail((*path, "call"), "a rule cannot call the rules service itself")
        params = t.get("params", {})
        if not isinstance(params, dict):
            c.fail((*path, "params"), 'must be a table: params = { text = "..." }')
        return Action(kind="call", device=c.device(t, "device", path, best=True), call=call,
                      params=params, continue_on_error=on_error)  # fmt: skip
    if kind == "notify":
        for key in ("title", "body"):
            c.templates(t.get(key, ""), (*path, key))
        return Action(kind="notify", device=c.device(t, "notify", path, best=True),
                      title=c.text(t, "title", path, required=True),
                      body=str(t.get("body", "")), continue_on_error=on_error)  # fmt: skip
    if kind == "store":
        if "value" not in t:
            c.fail(path, "a store action needs value = ...")
        c.templates(t["value"], (*path, "value"))
        c.templates(t.get("key", ""), (*path, "key"))
        return Action(kind="kv", store=c.text(t, "store", path, required=True),
                      key=c.text(t, "key", path, required=True), value=t["value"],
                      continue_on_error=on_error)  # fmt: skip
    if kind == "app":
        ops = [op for op in ("run", "move", "stop") if op in t]
        if len(ops) != 1:
            c.fail(path, "an app action has one of run = DEVICE, move = DEVICE, stop = DEVICE")
        op = ops[0]
        where = c.device(t, op, path, best=op == "run")
        params = t.get("params", {})
        if not isinstance(params, dict):
            c.fail((*path, "params"), "must be a table")
        return Action(kind="app", app=c.text(t, "app", path, required=True), op=op,
                      device="" if op == "move" else where, to=where if op == "move" else "",
                      params=params, continue_on_error=on_error)  # fmt: skip
    if kind == "delay":
        return Action(kind="delay", delay_s=c.duration(t, "delay", path))
    wait = _trigger(c, t["wait"], (*path, "wait"))
    if wait.kind == "time":
        c.fail((*path, "wait"), "wait for a sensor, store, presence or notification; "
                                "for a time, use delay")  # fmt: skip
    return Action(kind="wait", wait=wait, timeout_s=c.duration(t, "timeout", path),
                  continue_on_timeout=c.flag(t, "continue_on_timeout", path, True),
                  continue_on_error=on_error)  # fmt: skip


def _field_name(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _kind(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "a table"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def parse_duration(text: str) -> float:
    """``"2s"`` -> 2.0 (for the CLI and tests)."""
    return _Checker("", "").duration({"d": text}, "d", ())
