"""The rule engine: one rule's triggers, conditions, runs and modes, with no I/O.

Sans-IO like the rest of the core: events and the current time go in
(:meth:`Engine.observe`, :meth:`Engine.advance`, :meth:`Engine.done`), and out come
the actions to perform (:meth:`Engine.take_actions`) and the finished runs' traces
(:meth:`Engine.take_traces`). Time is whatever ``facts.now`` says, so tests drive a
``for`` or a ``delay`` with a manual clock and nothing sleeps.

Everything that must outlive the runner is in :attr:`Engine.state` (a
:class:`~accord.rules.state.RuleState`): the runner persists it after every change,
and a member that takes over builds an engine from it and calls :meth:`resume`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from accord.rules.facts import (
    MISSING,
    Event,
    Facts,
    KvEvent,
    NoteEvent,
    PresenceEvent,
    SensorEvent,
    clock_minutes,
    evaluate,
    path_value,
)
from accord.rules.spec import Action, Rule, Trigger
from accord.rules.state import (
    ActionTrace,
    ConditionTrace,
    Outcome,
    Pending,
    RuleState,
    Run,
    Trace,
)

AT_GRACE_S = 300.0  # an "at" time missed by up to this much (a takeover) still fires


class Do(msgspec.Struct, frozen=True):
    """Perform ``action`` (a call, notify, kv put or app action) for run ``run_id``."""

    run_id: str
    step: int
    action: Action
    vars: dict[str, Any]


class Engine:
    def __init__(self, rule: Rule, version: str, *, runner: str,
                 names: Mapping[str, str] | None = None,
                 state: RuleState | None = None) -> None:  # fmt: skip
        self.rule = rule
        self.version = version
        self.runner = runner
        self.names = dict(names or {})  # device strings of the rule -> device ids
        fresh = state is None or state.version != version
        self.state = RuleState(version=version) if fresh or state is None else state
        self._fresh_time = fresh  # time triggers start at the current slot, not before it
        self._actions: list[Do] = []
        self._traces: list[Trace] = []

    # -- what goes out -----------------------------------------------------------

    def take_actions(self) -> list[Do]:
        out, self._actions = self._actions, []
        return out

    def take_traces(self) -> list[Trace]:
        out, self._traces = self._traces, []
        return out

    def running(self) -> list[Trace]:
        return [r.trace for r in self.state.runs]

    def next_wake(self, now: float) -> float | None:
        """When :meth:`advance` next has something to do (None: only on events)."""
        times = [p.deadline for p in self.state.pending.values()
                 if not p.fired and p.confirmed]  # fmt: skip
        times += [r.wake for r in self.state.runs if r.wake is not None]
        for t in self.rule.triggers:
            if t.kind == "time" and t.every_s:
                times.append((math.floor(now / t.every_s) + 1) * t.every_s)
            elif t.kind == "time":
                times.append(now + 60.0 - now % 60.0)  # "at" is checked each minute
        return min(times) if times else None

    # -- taking over ---------------------------------------------------------------

    def resume(self, facts: Facts) -> None:
        """Continue a state another runner persisted: pending ``for``s wait for a fresh
        reading to confirm them; an action handed out but not finished is handed out
        again (at least once: the old runner may have done it just before it went)."""
        for pending in self.state.pending.values():
            pending.confirmed = False
        for run in self.state.runs:
            run.trace.resumed_by.append(self.runner)
            if run.acting:
                run.acting = False
                self._drive(run, facts)

    # -- what comes in -------------------------------------------------------------

    def observe(self, event: Event, facts: Facts) -> None:
        for index, trigger in enumerate(self.rule.triggers):
            if isinstance(event, SensorEvent) and trigger.kind == "sensor":
                self._sensor(index, trigger, event, facts)
                continue
            found = self._matches(trigger, event)
            if found is not None:
                self._fire({**found, "index": index}, facts)
        for run in list(self.state.runs):
            action = self._action(run)
            if run.waiting and action is not None and action.wait is not None:
                found = self._matches(action.wait, event, waiting=True)
                if found is not None:
                    self._end_step(run, facts, ok=True, result=found)
                    run.vars["wait"] = found
                    self._drive(run, facts)
        self.advance(facts)

    def advance(self, facts: Facts) -> None:
        now = facts.now
        for key, pending in sorted(self.state.pending.items()):
            if not pending.fired and pending.confirmed and now >= pending.deadline:
                pending.fired = True
                trigger = self.rule.triggers[int(key)]
                self._fire(self._sensor_vars(trigger, pending, int(key)), facts)
        self._time_triggers(facts)
        for run in list(self.state.runs):
            if run.wake is None or now < run.wake or run not in self.state.runs:
                continue
            run.wake = None
            action = self._action(run)
            if run.waiting and action is not None:
                run.waiting = False
                self._end_step(run, facts, ok=action.continue_on_timeout, error="timed out")
                if not action.continue_on_timeout:
                    self._finish(run, facts, "stopped: wait timed out")
                    continue
                run.vars["wait"] = None
            else:
                self._end_step(run, facts, ok=True)
            self._drive(run, facts)

    def done(self, run_id: str, step: int, facts: Facts, *, ok: bool, result: Any = None,
             error: str = "", device: str = "") -> None:  # fmt: skip
        """An action handed out by :meth:`take_actions` finished."""
        run = next((r for r in self.state.runs if r.id == run_id), None)
        if run is None or run.step != step or not run.acting:
            return  # the run was restarted or ended meanwhile
        run.acting = False
        self._end_step(run, facts, ok=ok, result=result, error=error, device=device)
        action = self.rule.actions[step]
        if not ok and not action.continue_on_error:
            self._finish(run, facts, "failed")
            return
        self._drive(run, facts)

    # -- triggers --------------------------------------------------------------------

    def _sensor(self, index: int, trigger: Trigger, event: SensorEvent, facts: Facts) -> None:
        if self.names.get(trigger.device) != event.device:
            return
        value = path_value(event.readings, trigger.sensor)
        if value is MISSING:
            return
        key = str(index)
        pending = self.state.pending.get(key)
        if not trigger.tests:  # no test: any change fires (the first reading is a baseline)
            if pending is None:
                self.state.pending[key] = _baseline(facts.now, value)
            elif pending.value != value:
                pending.value = value
                self._fire(self._sensor_vars(trigger, pending, index), facts)
            return
        if all(t.holds(value) for t in trigger.tests):
            if pending is None:
                self.state.pending[key] = msgspec.structs.replace(
                    _baseline(facts.now, value), deadline=facts.now + trigger.for_s, fired=False
                )
            elif not pending.confirmed:
                pending.confirmed = True
                pending.value = value
        else:
            self.state.pending.pop(key, None)

    def _sensor_vars(self, trigger: Trigger, pending: Any, index: int) -> dict[str, Any]:
        return {"kind": "sensor", "device": trigger.device, "sensor": trigger.sensor,
                "value": pending.value, "for": trigger.for_s, "since": pending.since,
                "index": index}  # fmt: skip

    def _matches(self, trigger: Trigger, event: Event, *, waiting: bool = False,
                 ) -> dict[str, Any] | None:  # fmt: skip
        """The trigger's variables if ``event`` fires it (sensor tests too when
        ``waiting``, where a matching reading is enough), else None."""
        if isinstance(event, SensorEvent) and trigger.kind == "sensor" and waiting:
            if self.names.get(trigger.device) != event.device:
                return None
            value = path_value(event.readings, trigger.sensor)
            if value is MISSING or not all(t.holds(value) for t in trigger.tests):
                return None
            return {"kind": "sensor", "device": trigger.device, "sensor": trigger.sensor,
                    "value": value}  # fmt: skip
        if isinstance(event, KvEvent) and trigger.kind == "kv":
            if event.store != trigger.store or not event.key.startswith(trigger.key):
                return None
            return {"kind": "kv", "store": event.store, "key": event.key,
                    "value": event.value, "device": event.device}  # fmt: skip
        if isinstance(event, PresenceEvent) and trigger.kind == "presence":
            wanted = trigger.event == "joins"
            if self.names.get(trigger.device) == event.device and event.joined == wanted:
                return {"kind": "presence", "device": trigger.device, "event": trigger.event}
        if isinstance(event, NoteEvent) and trigger.kind in ("notification", "app"):
            if trigger.kind == "app" and event.app != trigger.app:
                return None
            if trigger.device not in ("any", "") and self.names.get(trigger.device) != event.device:
                return None
            if (trigger.app and event.app != trigger.app) or trigger.title not in event.title:
                return None
            return {"kind": trigger.kind, "app": event.app, "title": event.title,
                    "body": event.body, "value": event.title}  # fmt: skip
        return None

    def _time_triggers(self, facts: Facts) -> None:
        now = facts.now
        for index, trigger in enumerate(self.rule.triggers):
            if trigger.kind != "time":
                continue
            key = str(index)
            if trigger.every_s:
                slot = math.floor(now / trigger.every_s) * trigger.every_s
            else:
                slot = _last_occurrence(trigger.at, facts)
            last = self.state.last_time.get(key)
            if last is None and self._fresh_time:
                self.state.last_time[key] = slot  # a new rule waits for the next slot
                continue
            if last is not None and slot <= last:
                continue
            self.state.last_time[key] = slot
            if trigger.at and now - slot > AT_GRACE_S:
                continue  # long missed (no member was up): not worth doing now
            self._fire({"kind": "time", "at": trigger.at, "every": trigger.every_s,
                        "value": slot, "index": index}, facts)  # fmt: skip
        self._fresh_time = False

    # -- runs --------------------------------------------------------------------------

    def _fire(self, variables: dict[str, Any], facts: Facts) -> None:
        mode, most, runs = self.rule.mode, self.rule.max, self.state.runs
        if runs and mode == "single":
            self._skipped(variables, facts, "skipped: already running")
        elif mode == "restart":
            for run in list(runs):
                self._finish(run, facts, "restarted")
            self._start(variables, facts)
        elif mode == "queued" and runs:
            if len(runs) + len(self.state.queue) < most:
                self.state.queue.append(variables)
            else:
                self._skipped(variables, facts, "skipped: too many runs")
        elif mode == "parallel" and len(runs) >= most:
            self._skipped(variables, facts, "skipped: too many runs")
        else:
            self._start(variables, facts)

    def _new_trace(self, variables: dict[str, Any], facts: Facts) -> Trace:
        self.state.seq += 1
        run_id = f"{int(facts.now * 1000):013d}-{self.state.seq}"
        return Trace(rule=self.rule.name, run_id=run_id, version=self.version,
                     runner=self.runner, started=facts.now, trigger=dict(variables))  # fmt: skip

    def _skipped(self, variables: dict[str, Any], facts: Facts, why: Outcome) -> None:
        trace = self._new_trace(variables, facts)
        trace.ended, trace.outcome = facts.now, why
        self._traces.append(trace)

    def _start(self, variables: dict[str, Any], facts: Facts) -> None:
        trace = self._new_trace(variables, facts)
        trace.conditions = [ConditionTrace(c.describe(), evaluate(c, facts, self.names))
                            for c in self.rule.conditions]  # fmt: skip
        if not all(c.ok for c in trace.conditions):
            trace.ended, trace.outcome = facts.now, "conditions not met"
            self._traces.append(trace)
            self._dequeue(facts)
            return
        run = Run(id=trace.run_id, trace=trace,
                  vars={"trigger": variables, "rule": {"name": self.rule.name},
                        "now": facts.now, "wait": None})  # fmt: skip
        self.state.runs.append(run)
        self._drive(run, facts)

    def _action(self, run: Run) -> Action | None:
        return self.rule.actions[run.step] if run.step < len(self.rule.actions) else None

    def _drive(self, run: Run, facts: Facts) -> None:
        """Hand out the run's next step, or end it when there is none."""
        if run.acting or run.waiting or run.wake is not None:
            return
        action = self._action(run)
        if action is None:
            self._finish(run, facts, "done")
            return
        run.trace.actions.append(ActionTrace(step=run.step, what=action.describe(),
                                             started=facts.now))  # fmt: skip
        if action.kind == "delay":
            run.wake = facts.now + action.delay_s
        elif action.kind == "wait":
            run.waiting = True
            run.wake = facts.now + action.timeout_s if action.timeout_s else None
        else:
            run.acting = True
            self._actions.append(Do(run.id, run.step, action, run.vars))

    def _end_step(self, run: Run, facts: Facts, *, ok: bool, result: Any = None,
                  error: str = "", device: str = "") -> None:  # fmt: skip
        step = run.trace.actions[-1] if run.trace.actions else None
        if step is not None and step.step == run.step and not step.ended:
            step.ended, step.ok, step.result = facts.now, ok, result
            step.error, step.device = error, device
        run.step += 1
        run.waiting = False
        run.wake = None

    def _finish(self, run: Run, facts: Facts, outcome: Outcome) -> None:
        if run not in self.state.runs:
            return
        self.state.runs.remove(run)
        run.trace.ended, run.trace.outcome = facts.now, outcome
        self._traces.append(run.trace)
        if outcome != "restarted":
            self._dequeue(facts)

    def _dequeue(self, facts: Facts) -> None:
        if self.rule.mode == "queued" and self.state.queue and not self.state.runs:
            self._start(self.state.queue.pop(0), facts)


def _baseline(now: float, value: Any) -> Pending:
    return Pending(since=now, deadline=now, fired=True, value=value)


def _last_occurrence(at: str, facts: Facts) -> float:
    """The latest wall time <= now whose local clock read ``at``."""
    local = facts.local(facts.now)
    minute = local.tm_hour * 60 + local.tm_min
    ago = (minute - clock_minutes(at)) % (24 * 60)
    return facts.now - local.tm_sec - (facts.now % 1) - ago * 60
