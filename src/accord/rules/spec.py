"""What a rule is, once its TOML file has been checked (:mod:`accord.rules.parse`).

Pure data: frozen structs that the engine reads and that travel nowhere by
themselves (the rule's *source* is what is stored and signed, so every member
parses the same text the same way).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

Mode = Literal["single", "restart", "queued", "parallel"]
TriggerKind = Literal["sensor", "kv", "presence", "notification", "time", "app"]
ConditionKind = Literal["sensor", "kv", "online", "time", "and", "or", "not"]
ActionKind = Literal["call", "notify", "kv", "app", "delay", "wait"]
TestOp = Literal["equals", "above", "below"]

BEST: Final = "best:"  # device = "best:display": the SuperDevice's best member for it
DEFAULT_TRACES: Final = 20
MAX_TRACES: Final = 200
MAX_RUNS: Final = 10  # queued/parallel default "max", as Home Assistant's


class Test(msgspec.Struct, frozen=True):
    """One comparison of a value: ``equals``, ``above`` or ``below``."""

    op: TestOp
    value: Any

    def holds(self, value: Any) -> bool:
        if self.op == "equals":
            # true == 1 in Python; a door that is open is not a reading of 1
            if isinstance(value, bool) or isinstance(self.value, bool):
                return value is self.value
            return bool(value == self.value)
        number = _number(value)
        if number is None:
            return False
        return bool(number > self.value if self.op == "above" else number < self.value)

    def describe(self) -> str:
        return f"{self.op} {self.value!r}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    kind: TriggerKind
    device: str = ""  # sensor, presence, notification: a device as the CLI names it
    sensor: str = ""  # a path into sensors.read, e.g. "doors.fridge"
    tests: tuple[Test, ...] = ()
    for_s: float = 0.0  # the tests must hold this long
    store: str = ""
    key: str = ""  # a key prefix ("" = every key)
    event: str = ""  # presence: "joins" | "leaves"
    app: str = ""  # notification / app: the app that posted it
    title: str = ""  # notification / app: the title contains this
    at: str = ""  # time: "HH:MM" in the runner's local time
    every_s: float = 0.0  # time: every N seconds (aligned on the epoch, so runners agree)

    def describe(self) -> str:
        if self.kind == "sensor":
            tests = " and ".join(t.describe() for t in self.tests) or "changes"
            held = f" for {self.for_s:g} s" if self.for_s else ""
            return f"{self.device} {self.sensor} {tests}{held}"
        if self.kind == "kv":
            return f"a change in {self.store} under {self.key!r}"
        if self.kind == "presence":
            return f"{self.device} {self.event}"
        if self.kind == "time":
            return f"at {self.at}" if self.at else f"every {self.every_s:g} s"
        what = f"app {self.app}" if self.app else (self.device or "any device")
        return f"a notification from {what}" + (f" titled *{self.title}*" if self.title else "")


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    kind: ConditionKind
    device: str = ""
    sensor: str = ""
    store: str = ""
    key: str = ""
    tests: tuple[Test, ...] = ()
    online: bool = True
    after: str = ""  # time window "HH:MM" (after <= now < before, across midnight too)
    before: str = ""
    weekdays: tuple[int, ...] = ()  # 0 = Monday
    children: tuple[Condition, ...] = ()

    def describe(self) -> str:
        if self.kind in ("and", "or"):
            return f" {self.kind} ".join(f"({c.describe()})" for c in self.children)
        if self.kind == "not":
            return f"not ({self.children[0].describe()})"
        tests = " and ".join(t.describe() for t in self.tests)
        if self.kind == "sensor":
            return f"{self.device} {self.sensor} {tests}"
        if self.kind == "kv":
            return f"{self.store}/{self.key} {tests}"
        if self.kind == "online":
            return f"{self.device} is {'online' if self.online else 'offline'}"
        days = f" on days {list(self.weekdays)}" if self.weekdays else ""
        return f"time after {self.after or '00:00'} and before {self.before or '24:00'}{days}"


class Action(msgspec.Struct, frozen=True, kw_only=True):
    kind: ActionKind
    device: str = ""  # call / notify / app run: a name, or "best:CAPABILITY"
    call: str = ""  # SERVICE.METHOD
    params: dict[str, Any] = {}
    title: str = ""
    body: str = ""
    store: str = ""
    key: str = ""
    value: Any = None
    app: str = ""
    op: Literal["", "run", "move", "stop"] = ""
    to: str = ""  # app move: the device it goes to
    delay_s: float = 0.0
    wait: Trigger | None = None
    timeout_s: float = 0.0  # wait: 0 = forever
    continue_on_timeout: bool = True
    continue_on_error: bool = False

    @property
    def remote(self) -> bool:
        """Whether a member runs it through ``rules.act`` (as the rule's author)."""
        return self.kind in ("call", "notify", "app")

    def describe(self) -> str:
        if self.kind == "call":
            return f"{self.call} on {self.device}"
        if self.kind == "notify":
            return f"notify {self.device}: {self.title}"
        if self.kind == "kv":
            return f"put {self.store}/{self.key}"
        if self.kind == "app":
            where = self.to if self.op == "move" else self.device
            return f"app {self.op} {self.app} on {where}"
        if self.kind == "delay":
            return f"delay {self.delay_s:g} s"
        assert self.wait is not None
        limit = f" (at most {self.timeout_s:g} s)" if self.timeout_s else ""
        return f"wait for {self.wait.describe()}{limit}"


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    mode: Mode = "single"
    max: int = MAX_RUNS
    traces: int = DEFAULT_TRACES
    triggers: tuple[Trigger, ...]
    conditions: tuple[Condition, ...] = ()
    actions: tuple[Action, ...]

    def devices(self) -> set[str]:
        """Every device string the rule names (resolved to members by the runner)."""
        found: set[str] = set()

        def cond(c: Condition) -> None:
            if c.device:
                found.add(c.device)
            for child in c.children:
                cond(child)

        for t in self.triggers:
            if t.device and t.device != "any":
                found.add(t.device)
        for c in self.conditions:
            cond(c)
        for a in self.actions:
            for d in (a.device, a.to, a.wait.device if a.wait else ""):
                if d and not d.startswith(BEST) and d != "any":
                    found.add(d)
        return found
