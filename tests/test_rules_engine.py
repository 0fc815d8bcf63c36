"""The pure rule engine on a manual clock: for, delay, wait, modes, templating,
conditions, time triggers, and resuming from persisted state."""

from __future__ import annotations

from typing import Any

import msgspec

from accord.rules.engine import Do, Engine
from accord.rules.facts import Facts, KvEvent, NoteEvent, PresenceEvent, SensorEvent
from accord.rules.parse import parse_rule
from accord.rules.state import decode_state, encode_state
from accord.rules.template import render

FRIDGE = """
name = "fridge-door-open"
mode = "{mode}"

[trigger]
device = "Fridge"
sensor = "doors.fridge"
equals = true
for = "2s"

[[action]]
device = "TV"
call = "display.show"
params = {{ text = "open since {{{{ trigger.since }}}}: {{{{ trigger.value }}}}" }}
"""

NAMES = {"Fridge": "fridge-id", "TV": "tv-id", "Phone": "phone-id"}


def door(is_open: bool) -> SensorEvent:
    return SensorEvent("fridge-id", {"doors": {"fridge": is_open, "freezer": False}})


def engine(source: str, state: Any = None, runner: str = "laptop") -> Engine:
    return Engine(parse_rule(source), "v1", runner=runner, names=NAMES, state=state)


def finish(eng: Engine, facts: Facts, ok: bool = True) -> list[Do]:
    """Complete every action handed out, as a runner would."""
    done = eng.take_actions()
    for do in done:
        eng.done(do.run_id, do.step, facts, ok=ok, result="shown" if ok else None,
                 error="" if ok else "refused")  # fmt: skip
    return done


def test_for_fires_once_after_the_door_stays_open() -> None:
    eng = engine(FRIDGE.format(mode="single"))
    eng.observe(door(True), Facts(now=100.0))
    assert eng.take_actions() == []
    assert eng.next_wake(100.0) == 102.0
    eng.advance(Facts(now=101.9))
    assert eng.take_actions() == []
    eng.advance(Facts(now=102.0))
    (do,) = eng.take_actions()
    assert do.action.call == "display.show"
    assert render(do.action.params, do.vars) == {"text": "open since 100: true"}
    eng.done(do.run_id, do.step, Facts(now=102.1), ok=True, result="shown")
    (trace,) = eng.take_traces()
    assert trace.outcome == "done"
    assert trace.trigger["value"] is True
    assert [a.ok for a in trace.actions] == [True]
    # still open: no second alert until the door closes and opens again
    eng.observe(door(True), Facts(now=110.0))
    eng.advance(Facts(now=120.0))
    assert eng.take_actions() == []
    eng.observe(door(False), Facts(now=121.0))
    eng.observe(door(True), Facts(now=122.0))
    eng.advance(Facts(now=124.0))
    assert len(eng.take_actions()) == 1


def test_closing_the_door_before_for_cancels() -> None:
    eng = engine(FRIDGE.format(mode="single"))
    eng.observe(door(True), Facts(now=0.0))
    eng.observe(door(False), Facts(now=1.5))
    eng.advance(Facts(now=5.0))
    assert eng.take_actions() == []
    assert eng.next_wake(5.0) is None


def test_a_resumed_for_keeps_its_deadline_and_waits_for_a_fresh_reading() -> None:
    first = engine(FRIDGE.format(mode="single"), runner="phone")
    first.observe(door(True), Facts(now=10.0))
    saved = encode_state(first.state)  # the phone dies here, 1 s into the 2 s
    second = engine(FRIDGE.format(mode="single"), state=decode_state(saved), runner="tv")
    second.resume(Facts(now=11.0))
    second.advance(Facts(now=12.5))
    assert second.take_actions() == []  # past the deadline, but not confirmed yet
    second.observe(door(True), Facts(now=12.6))
    (do,) = second.take_actions()
    assert do.vars["trigger"]["since"] == 10.0  # not restarted at the takeover


def test_a_resumed_for_is_dropped_if_the_door_closed_meanwhile() -> None:
    first = engine(FRIDGE.format(mode="single"))
    first.observe(door(True), Facts(now=10.0))
    second = engine(FRIDGE.format(mode="single"), state=decode_state(encode_state(first.state)))
    second.resume(Facts(now=11.0))
    second.observe(door(False), Facts(now=12.5))
    second.advance(Facts(now=20.0))
    assert second.take_actions() == []


DELAYED = """
name = "delayed"
mode = "{mode}"
max = 2
[trigger]
store = "notes"
key = "todo/"
[[action]]
delay = "5s"
[[action]]
notify = "Phone"
title = "{{{{ trigger.key }}}} is {{{{ trigger.value }}}}"
"""


def put(key: str, value: str) -> KvEvent:
    return KvEvent("notes", key, value, "phone-id")


def test_delay_waits_then_acts_and_survives_a_takeover() -> None:
    eng = engine(DELAYED.format(mode="single"))
    eng.observe(put("todo/milk", "buy"), Facts(now=0.0))
    assert eng.take_actions() == []
    assert eng.next_wake(0.0) == 5.0
    resumed = engine(DELAYED.format(mode="single"), state=decode_state(encode_state(eng.state)))
    resumed.resume(Facts(now=3.0))
    resumed.advance(Facts(now=4.9))
    assert resumed.take_actions() == []
    resumed.advance(Facts(now=5.0))
    (do,) = resumed.take_actions()
    assert render(do.action.title, do.vars) == "todo/milk is buy"
    resumed.done(do.run_id, do.step, Facts(now=5.1), ok=True)
    (trace,) = resumed.take_traces()
    assert trace.resumed_by == ["laptop"]
    assert [(a.what, a.ok) for a in trace.actions] == [("delay 5 s", True),
                                                        ("notify Phone: {{ trigger.key }} is "
                                                         "{{ trigger.value }}", True)]  # fmt: skip


def test_an_action_in_flight_at_a_takeover_is_handed_out_again() -> None:
    eng = engine(DELAYED.format(mode="single"))
    eng.observe(put("todo/a", "x"), Facts(now=0.0))
    eng.advance(Facts(now=5.0))
    assert len(eng.take_actions()) == 1  # handed out; the runner dies before it returns
    resumed = engine(DELAYED.format(mode="single"), state=decode_state(encode_state(eng.state)))
    resumed.resume(Facts(now=6.0))
    assert len(resumed.take_actions()) == 1


def test_single_skips_restart_restarts_queued_queues_parallel_caps() -> None:
    outcomes: dict[str, list[str]] = {}
    for mode in ("single", "restart", "queued", "parallel"):
        eng = engine(DELAYED.format(mode=mode))
        for i in range(3):
            eng.observe(put(f"todo/{i}", "x"), Facts(now=float(i)))
        eng.advance(Facts(now=100.0))
        finish(eng, Facts(now=100.0))
        for t in (200.0, 300.0):
            eng.advance(Facts(now=t))
            finish(eng, Facts(now=t))
        outcomes[mode] = [f"{t.trigger['key']}:{t.outcome}" for t in eng.take_traces()]
    assert outcomes["single"] == ["todo/1:skipped: already running",
                                  "todo/2:skipped: already running", "todo/0:done"]  # fmt: skip
    assert outcomes["restart"] == ["todo/0:restarted", "todo/1:restarted", "todo/2:done"]
    # queued, max 2: one running and one queued; the third is dropped
    assert outcomes["queued"] == ["todo/2:skipped: too many runs", "todo/0:done", "todo/1:done"]
    assert outcomes["parallel"] == ["todo/2:skipped: too many runs", "todo/0:done",
                                    "todo/1:done"]  # fmt: skip


CONDITIONED = """
name = "conditioned"
[trigger]
device = "Phone"
presence = "leaves"
[[condition]]
or = [{ device = "Fridge", sensor = "cabinets.fridge.temperature_c", above = 6 },
      { not = { store = "home", key = "mode", equals = "away" } }]
[[condition]]
after = "22:00"
before = "06:00"
[[action]]
device = "Fridge"
call = "thermostat.set"
params = { cabinet = "fridge", celsius = "{{ trigger.nothing }}" }
"""


def test_conditions_and_or_not_and_time_windows() -> None:
    eng = engine(CONDITIONED)
    warm = {"fridge-id": {"cabinets": [{"name": "fridge", "temperature_c": 7.5}]}}
    cold = {"fridge-id": {"cabinets": [{"name": "fridge", "temperature_c": 4.0}]}}
    night, day = 23 * 3600.0, 12 * 3600.0  # UTC days from the epoch

    def leave(now: float, sensors: Any, mode: str) -> str:
        facts = Facts(now=now, sensors=sensors, kv={("home", "mode"): mode}, utc_offset_s=0)
        eng.observe(PresenceEvent("phone-id", joined=False), facts)
        finish(eng, facts)
        (trace,) = eng.take_traces()
        return trace.outcome

    assert leave(night, warm, "away") == "done"
    assert leave(night, cold, "home") == "done"
    assert leave(night, cold, "away") == "conditions not met"
    assert leave(day, warm, "away") == "conditions not met"
    assert leave(night + 7 * 3600 - 60, warm, "away") == "done"  # 05:59: inside
    assert leave(night + 7 * 3600, warm, "away") == "conditions not met"  # 06:00: outside
    eng.observe(PresenceEvent("phone-id", joined=True), Facts(now=night))
    assert eng.take_actions() == []
    assert eng.take_traces() == []


def test_a_failed_action_stops_the_run_unless_told_to_go_on() -> None:
    eng = engine(DELAYED.format(mode="single").replace('delay = "5s"', 'notify = "TV"\n'
                                                       'title = "first"'))  # fmt: skip
    eng.observe(put("todo/x", "y"), Facts(now=0.0))
    finish(eng, Facts(now=0.1), ok=False)
    (trace,) = eng.take_traces()
    assert trace.outcome == "failed"
    assert [(a.ok, a.error) for a in trace.actions] == [(False, "refused")]


WAITING = """
name = "waiting"
[trigger]
device = "Fridge"
sensor = "doors.fridge"
equals = true
[[action]]
wait = { device = "Fridge", sensor = "doors.fridge", equals = false }
timeout = "30s"
continue_on_timeout = false
[[action]]
notify = "Phone"
title = "closed after {{ wait.value }}"
"""


def test_wait_for_trigger_continues_on_the_event_or_stops_at_its_timeout() -> None:
    eng = engine(WAITING)
    eng.observe(door(False), Facts(now=0.0))
    eng.observe(door(True), Facts(now=1.0))
    assert eng.next_wake(1.0) == 31.0
    eng.observe(door(False), Facts(now=5.0))
    (do,) = eng.take_actions()
    assert render(do.action.title, do.vars) == "closed after false"
    eng.done(do.run_id, do.step, Facts(now=5.0), ok=True)
    assert eng.take_traces()[0].outcome == "done"
    eng.observe(door(True), Facts(now=10.0))
    eng.advance(Facts(now=40.0))
    assert eng.take_actions() == []
    assert eng.take_traces()[0].outcome == "stopped: wait timed out"


def test_time_triggers_fire_on_their_slots_once_even_across_a_takeover() -> None:
    source = 'name = "t"\n[trigger]\nevery = "10s"\n[[action]]\nnotify = "TV"\ntitle = "tick"'
    eng = engine(source)
    eng.advance(Facts(now=101.0))  # a new rule waits for the next slot
    assert eng.take_actions() == []
    assert eng.next_wake(101.0) == 110.0
    eng.advance(Facts(now=110.0))
    finish(eng, Facts(now=110.0))
    resumed = engine(source, state=decode_state(encode_state(eng.state)))
    resumed.advance(Facts(now=115.0))
    assert resumed.take_actions() == []
    resumed.advance(Facts(now=121.0))
    assert len(resumed.take_actions()) == 1
    at = 'name = "t"\n[trigger]\nat = "22:00"\n[[action]]\nnotify = "TV"\ntitle = "night"'
    nightly = engine(at)
    nightly.advance(Facts(now=21 * 3600.0, utc_offset_s=0))
    nightly.advance(Facts(now=22 * 3600.0 + 5, utc_offset_s=0))
    assert len(nightly.take_actions()) == 1
    nightly.advance(Facts(now=22 * 3600.0 + 65, utc_offset_s=0))
    assert nightly.take_actions() == []


def test_notifications_and_app_events() -> None:
    source = 'name = "n"\n[trigger]\napp = "fridge-guard"\ntitle = "alert"\n' \
             '[[action]]\nnotify = "Phone"\ntitle = "{{ trigger.title }}"'  # fmt: skip
    eng = engine(source)
    eng.observe(NoteEvent("tv-id", "notes", "alert"), Facts(now=0.0))
    eng.observe(NoteEvent("tv-id", "fridge-guard", "hello"), Facts(now=0.0))
    assert eng.take_actions() == []
    eng.observe(NoteEvent("tv-id", "fridge-guard", "door alert"), Facts(now=0.0))
    (do,) = eng.take_actions()
    assert render(do.action.title, do.vars) == "door alert"


def test_templates_keep_types_alone_and_write_text_inside() -> None:
    variables = {"trigger": {"value": 7.0, "on": True}, "now": 5}
    assert render({"a": "{{ trigger.value }}", "b": ["x {{ trigger.value }} {{ trigger.on }}"],
                   "c": "{{ trigger.missing }}"}, variables) == {
        "a": 7.0, "b": ["x 7 true"], "c": None}  # fmt: skip


def test_state_round_trips_through_msgpack() -> None:
    eng = engine(DELAYED.format(mode="queued"))
    eng.observe(put("todo/a", "x"), Facts(now=0.0))
    eng.observe(put("todo/b", "x"), Facts(now=1.0))
    back = decode_state(encode_state(eng.state))
    assert back is not None
    assert msgspec.to_builtins(back) == msgspec.to_builtins(eng.state)
    assert decode_state(b"\x00garbage") is None
