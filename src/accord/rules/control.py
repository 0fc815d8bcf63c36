"""``accord rule ...`` control methods: add, ls, show, rm, enable/disable, trace, test.

Any member may add, change or remove any rule: it writes a newer record of that
name in its own namespace, signed by itself, and so becomes the rule's author (the
actions then run with *its* authority, not the previous author's).
"""

from __future__ import annotations

from typing import Any

import msgspec

from accord.control.server import ControlServer
from accord.errors import AccordError, ControlError
from accord.rules.errors import RuleFileError, UnknownRule
from accord.rules.facts import Facts, evaluate
from accord.rules.parse import parse_rule
from accord.rules.records import RULE_PREFIX, RuleRecord, runner_for, sign_record
from accord.rules.service import RulesService
from accord.rules.spec import BEST, Rule


class RulesControl:
    def __init__(self, service: RulesService) -> None:
        self._s = service

    def register(self, control: ControlServer) -> None:
        for name in ("add", "ls", "show", "rm", "enable", "trace", "test"):
            control.add(f"rule_{name}", getattr(self, name))

    def _parse(self, params: dict[str, Any]) -> Rule:
        try:
            return parse_rule(str(params.get("source", "")), str(params.get("file", "rule")))
        except RuleFileError as exc:
            raise ControlError(str(exc)) from None

    def _held(self, params: dict[str, Any]) -> RuleRecord:
        name = str(params.get("name", ""))
        record = self._s.record(name)
        if record is None or record.deleted:
            known = ", ".join(sorted(n for n, r in self._s.records().items() if not r.deleted))
            raise UnknownRule(f"no rule called {name!r} in this circle; rules: {known or 'none'}")
        return record

    async def _write(self, name: str, source: str, *, enabled: bool = True,
                     deleted: bool = False) -> RuleRecord:  # fmt: skip
        assert self._s.rules is not None
        held = self._s.record(name)
        now = self._s.clock.wall()
        if held is not None and held.written_at >= now:
            now = held.written_at + 0.001  # newer than what counts now, whatever the clocks
        record = sign_record(RuleRecord(name=name, source=source, author=self._s.me,
                                        written_at=now, enabled=enabled, deleted=deleted),
                             self._s.sign)  # fmt: skip
        await self._s.rules.put(RULE_PREFIX + name, msgspec.msgpack.encode(record))
        return record

    async def add(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._parse(params)
        record = await self._write(rule.name, str(params["source"]))
        return self._row(record)

    async def rm(self, params: dict[str, Any]) -> dict[str, Any]:
        held = self._held(params)
        await self._write(held.name, held.source, deleted=True)
        return {"name": held.name, "removed": True}

    async def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        held = self._held(params)
        record = await self._write(held.name, held.source, enabled=bool(params.get("enabled")))
        return self._row(record)

    def _row(self, record: RuleRecord) -> dict[str, Any]:
        runner = self._s.runner(record.name)
        state = self._s.saved_state(record.name)
        current = state if state is not None and state.version == record.version else None
        traces = self._s.traces(record.name)
        last = traces[-1] if traces else None
        try:
            rule: Rule | None = parse_rule(record.source, record.name)
        except RuleFileError:
            rule = None
        return {
            "name": record.name,
            "enabled": record.enabled,
            "author": self._s.name_of(record.author),
            "author_id": record.author,
            "written_at": record.written_at,
            "version": record.version,
            "runner": runner.name if runner is not None and record.enabled else "",
            "runner_id": runner.device_id if runner is not None and record.enabled else "",
            "mode": rule.mode if rule else "",
            "triggers": [t.describe() for t in rule.triggers] if rule else [],
            "pending": {k: {"since": p.since, "deadline": p.deadline, "fired": p.fired}
                        for k, p in (current.pending.items() if current else [])},
            "running": len(current.runs) if current else 0,
            "last_run": None if last is None else {"started": last.started,
                                                   "outcome": last.outcome},
        }  # fmt: skip

    async def ls(self, _params: dict[str, Any]) -> dict[str, Any]:
        records = sorted(self._s.records().values(), key=lambda r: r.name)
        return {"rules": [self._row(r) for r in records if not r.deleted]}

    async def show(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._held(params)
        return {**self._row(record), "source": record.source}

    async def trace(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._held(params)
        state = self._s.saved_state(record.name)
        traces = self._s.traces(record.name)
        try:
            keep = parse_rule(record.source, record.name).traces
        except RuleFileError:
            keep = 20
        running = [r.trace for r in state.runs] if state is not None else []
        done = {t.run_id for t in traces}
        rows = traces + [t for t in running if t.run_id not in done]
        return {"name": record.name, "traces": msgspec.to_builtins(rows[-keep:])}

    async def test(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check a rule file and say what it would do now (nothing runs)."""
        rule = self._parse(params)
        devices: dict[str, str] = {}
        problems = []
        for device in sorted(rule.devices()):
            try:
                devices[device] = self._s.name_of(self._s.device_id(device))
            except AccordError as exc:
                problems.append(str(exc))
        names = {d: self._s.device_id(d) for d in devices}
        sensors: dict[str, Any] = {}
        for device_id in set(names.values()):
            try:
                reading: Any = await self._s.rpc.call(device_id, "sensors", "read", None, timeout=3)
                sensors[device_id] = msgspec.to_builtins(reading)
            except AccordError:
                continue
        facts = Facts(now=self._s.clock.wall(), sensors=sensors,
                      online={c.device_id for c in self._s.candidates()})  # fmt: skip
        runner = runner_for(rule.name, self._s.candidates())
        return {
            "name": rule.name,
            "valid": True,
            "mode": rule.mode,
            "runner": runner.name if runner else "",
            "devices": devices,
            "problems": problems,
            "triggers": [t.describe() for t in rule.triggers],
            "conditions": [{"what": c.describe(), "now": evaluate(c, facts, names)}
                           for c in rule.conditions],
            "actions": [a.describe() + (" (the best member at the time)"
                                        if a.device.startswith(BEST) else "")
                        for a in rule.actions],
        }  # fmt: skip
