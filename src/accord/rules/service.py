"""The rules service of a node: runs the rules this member is chosen for.

Every member holds every rule (the ``accord.rules`` store) and computes alike who
runs each (:func:`~accord.rules.records.runner_for`). The runner keeps one
:class:`~accord.rules.engine.Engine` per rule, feeds it events, performs what it
hands out, and writes its state to ``accord.rules.runs`` after every change, so
that when the runner goes, the next member in line resumes a pending ``for`` or a
``delay`` from where it was.

One task (:meth:`_loop`) owns the engines: events, finished actions and
reassignments reach it through one queue, so nothing races.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import msgspec

from accord.bus.directory import DeviceDirectory, DirectoryEvent
from accord.clock import Clock
from accord.data.api import DataStore
from accord.data.service import DataService
from accord.errors import AccordError
from accord.rpc import RpcClient, RpcServer
from accord.rules.acting import ACT_TIMEOUT_S, SERVICE, Acting, ActRequest
from accord.rules.actions import perform_local, target_of
from accord.rules.engine import Do, Engine
from accord.rules.errors import RuleError
from accord.rules.facts import Event, Facts, PresenceEvent, SensorEvent, kv_value
from accord.rules.parse import parse_rule
from accord.rules.records import (
    RULE_PREFIX,
    RULES_STORE,
    RUNS_STORE,
    STATE_PREFIX,
    TRACE_PREFIX,
    Candidate,
    RuleRecord,
    decode_record,
    newest,
    record_valid,
    runner_for,
)
from accord.rules.sources import NOTES_METHOD, Sources, local_notes
from accord.rules.spec import Condition, Rule
from accord.rules.state import RuleState, Trace, decode_state, encode_state
from accord.superdevice.api import SuperDevice
from accord.superdevice.links import NodeLink
from accord.trust.circle import Circle
from accord.trust.members import Member

log = logging.getLogger(__name__)

MAX_WAKE_S: Final = 1.0  # the loop looks at the clock at least this often
MAX_RESULT_BYTES: Final = 2048  # a trace keeps an action's result up to this size

NotesWatch = Callable[[], tuple["asyncio.Queue[dict[str, Any]]", Callable[[], None]]]


class RulesService:
    def __init__(self, *, me: str, name: str, capabilities: list[str], data: DataService,
                 rpc: RpcClient, server: RpcServer, circle: Circle, directory: DeviceDirectory,
                 clock: Clock, sign: Callable[[bytes], bytes], public_key: bytes,
                 resolve_member: Callable[[str], Member],
                 notes: NotesWatch | None = None) -> None:  # fmt: skip
        self.me, self.name = me, name
        self._capabilities = capabilities
        self._data, self.rpc, self._server = data, rpc, server
        self._circle, self._directory, self.clock = circle, directory, clock
        self.sign = sign
        self._public_key = public_key
        self._resolve_member = resolve_member
        self._notes = notes
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._engines: dict[str, Engine] = {}
        self._records: dict[str, RuleRecord] = {}
        self._saved: dict[str, bytes] = {}
        self._assign_queued = False
        self._closed = False
        self._sensors: dict[str, dict[str, Any]] = {}
        self._sources = Sources(name, data, rpc, lambda e: self._inbox.put_nowait(("event", e)))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Callable[[], None]] = []
        self.rules: DataStore | None = None
        self.runs: DataStore | None = None

    # -- life ------------------------------------------------------------------------

    async def start(self) -> None:
        self.rules = self._data.open(RULES_STORE, kind="per-device", label="S1")
        self.runs = self._data.open(RUNS_STORE, kind="per-device", label="S1")
        Acting(self.me, lambda: self._capabilities, self.key_of, self.record,
               self.device_id, self._server).register()  # fmt: skip
        if self._notes is not None:
            watch = self._notes
            self._server.register_stream(SERVICE, NOTES_METHOD,
                                         lambda _p, _c: local_notes(watch))  # fmt: skip
        self._undo.append(self._directory.subscribe(self._on_directory))
        self._undo.append(self.rules.replica.subscribe(lambda _cs: self._reassign(),
                                                       RULE_PREFIX))  # fmt: skip
        self._spawn(self._loop())
        self._reassign()

    async def stop(self) -> None:
        self._closed = True
        self._inbox.put_nowait(("stop",))
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        await self._sources.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reassign(self) -> None:
        if not self._assign_queued:  # a burst of changes: assign once
            self._assign_queued = True
            self._inbox.put_nowait(("assign",))

    def _on_directory(self, event: DirectoryEvent) -> None:
        if event.kind in ("joined", "left"):
            self._inbox.put_nowait(("event", PresenceEvent(event.device.device_id,
                                                           event.kind == "joined")))  # fmt: skip
        self._reassign()

    # -- who is who ------------------------------------------------------------------

    def key_of(self, device_id: str) -> bytes | None:
        if device_id == self.me:
            return self._public_key
        member = self._circle.member(device_id)
        return None if member is None else member.public_key

    def device_id(self, query: str) -> str:
        return self._resolve_member(query).device_id

    def name_of(self, device_id: str) -> str:
        if device_id == self.me:
            return self.name
        member = self._circle.member(device_id)
        return member.name if member is not None else device_id[:10]

    def level_of(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.security_level if member is not None else "SL1"

    def candidates(self) -> list[Candidate]:
        out = []
        # Records as held (no copy, no sort): this runs on every directory event.
        for rec in self._directory.stored():
            if rec.is_self or (rec.online and self._circle.is_member(rec.device_id)):
                mains = rec.profile is not None and rec.profile.power == "mains"
                out.append(Candidate(rec.device_id, rec.name, mains))
        return out

    def records(self) -> dict[str, RuleRecord]:
        """The record that counts for each rule name, signed by its namespace's owner."""
        assert self.rules is not None
        found = []
        for entry in self.rules.replica.scan(RULE_PREFIX):
            rec = decode_record(entry.value)
            if rec is not None and record_valid(rec, self.key_of, entry.device):
                found.append(rec)
        return newest(found)

    def running_rules(self) -> list[str]:
        """The rules this member runs now."""
        return sorted(self._engines)

    def record(self, name: str) -> RuleRecord | None:
        return self.records().get(name)

    def runner(self, name: str) -> Candidate | None:
        return runner_for(name, self.candidates())

    def saved_state(self, name: str) -> RuleState | None:
        assert self.runs is not None
        states = [s for e in self.runs.replica.scan(f"{STATE_PREFIX}{name}")
                  if e.key == f"{STATE_PREFIX}{name}" and (s := decode_state(e.value))]  # fmt: skip
        return max(states, key=lambda s: s.saved_at, default=None)

    def traces(self, name: str) -> list[Trace]:
        assert self.runs is not None
        from accord.rules.state import decode_trace

        found = [t for e in self.runs.replica.scan(f"{TRACE_PREFIX}{name}/")
                 if (t := decode_trace(e.value))]  # fmt: skip
        unique = {t.run_id: t for t in sorted(found, key=lambda t: t.ended)}
        return sorted(unique.values(), key=lambda t: (t.started, t.run_id))

    # -- the loop ----------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closed:
            now = self.clock.wall()
            wakes = [w for e in self._engines.values() if (w := e.next_wake(now)) is not None]
            # With no rule running here there is nothing to look at the clock for: an
            # idle node sleeps until something arrives (an assignment, an event).
            timeout = min([MAX_WAKE_S, *(w - now for w in wakes)]) if self._engines else None
            try:
                async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
                    item = await self._inbox.get()
            except TimeoutError:
                item = ("tick",)
            if self._closed:
                return  # asyncio may swallow a cancel that meets a ready item
            try:
                await self._handle(item)
            except Exception:
                log.exception("%s: rules loop failed on %s", self.name, item[0])

    async def _handle(self, item: tuple[Any, ...]) -> None:
        if item[0] == "assign":
            self._assign_queued = False
            self._assign()
        elif item[0] == "event":
            event: Event = item[1]
            if isinstance(event, SensorEvent):
                self._sensors[event.device] = event.readings
            for engine in self._engines.values():
                engine.observe(event, self._facts(engine))
        elif item[0] == "done":
            _, name, version, do, ok, result, error, device = item
            found = self._engines.get(name)
            if found is not None and found.version == version:
                found.done(do.run_id, do.step, self._facts(found), ok=ok, result=result,
                           error=error, device=device)  # fmt: skip
        for engine in self._engines.values():
            engine.advance(self._facts(engine))
        await self._flush()

    def _facts(self, engine: Engine) -> Facts:
        now = self.clock.wall()
        kv: dict[tuple[str, str], Any] = {}
        for store, key in _kv_pairs(engine.rule.conditions):
            try:
                kv[(store, key)] = kv_value(self._data.open_existing(store).replica.get(key))
            except AccordError:
                continue
        online = {c.device_id for c in self.candidates()}
        return Facts(now=now, sensors=self._sensors, kv=kv, online=online)

    async def _flush(self) -> None:
        assert self.runs is not None
        for name, engine in list(self._engines.items()):
            record = self._records[name]
            for do in engine.take_actions():
                self._spawn(self._perform(name, record, do))
            for trace in engine.take_traces():
                await self._keep_trace(engine.rule, trace)
            engine.state.runner = self.name
            raw = encode_state(msgspec.structs.replace(engine.state, saved_at=0.0))
            if self._saved.get(name) != raw:
                self._saved[name] = raw
                engine.state.saved_at = self.clock.wall()
                await self.runs.put(f"{STATE_PREFIX}{name}", encode_state(engine.state))

    async def _keep_trace(self, rule: Rule, trace: Trace) -> None:
        assert self.runs is not None
        prefix = f"{TRACE_PREFIX}{rule.name}/"
        await self.runs.put(prefix + trace.run_id, msgspec.msgpack.encode(trace))
        mine = await self.runs.scan(prefix, device=self.me)
        for entry in mine[: max(len(mine) - rule.traces, 0)]:
            await self.runs.delete(entry.key)  # run ids sort by start time

    # -- which rules run here ------------------------------------------------------------

    def _assign(self) -> None:
        self._records = {}
        records = self.records()
        candidates = self.candidates() if records else []  # no rule: nobody to choose
        for name, record in records.items():
            chosen = runner_for(name, candidates)
            if (
                record.deleted
                or not record.enabled
                or chosen is None
                or chosen.device_id != self.me
            ):
                continue
            self._records[name] = record
            held = self._engines.get(name)
            if held is not None and held.version == record.version:
                continue
            try:
                rule = parse_rule(record.source, name)
            except RuleError as exc:
                log.warning("%s: rule %s does not parse: %s", self.name, name, exc)
                continue
            engine = Engine(rule, record.version, runner=self.name, names=self._names(rule),
                            state=self.saved_state(name))  # fmt: skip
            engine.resume(self._facts(engine))
            self._engines[name] = engine
            self._saved.pop(name, None)
            log.info("%s: runs rule %s now", self.name, name)
        for name in set(self._engines) - set(self._records):
            del self._engines[name]  # its state is in the store for whoever runs it now
        self._sources.want(self._wanted())

    def _names(self, rule: Rule) -> dict[str, str]:
        names = {}
        for device in rule.devices():
            try:
                names[device] = self.device_id(device)
            except AccordError as exc:
                log.warning("%s: rule %s: %s", self.name, rule.name, exc)
        return names

    def _wanted(self) -> set[tuple[str, str]]:
        wanted: set[tuple[str, str]] = set()
        online = {c.device_id for c in self.candidates()}
        for engine in self._engines.values():
            rule = engine.rule
            waits = [a.wait for a in rule.actions if a.wait is not None]
            for t in (*rule.triggers, *waits):
                if t.kind == "sensor" and t.device in engine.names:
                    wanted.add(("sensors", engine.names[t.device]))
                elif t.kind == "kv":
                    wanted.add(("kv", t.store))
                elif t.kind in ("notification", "app"):
                    device = engine.names.get(t.device)
                    wanted |= {("notes", d) for d in online if device in (None, d)}
            for store_or_device in _sensor_devices(rule.conditions):
                if store_or_device in engine.names:
                    wanted.add(("sensors", engine.names[store_or_device]))
        return {w for w in wanted if w[0] == "kv" or w[1] in online}

    # -- actions -------------------------------------------------------------------------

    async def _perform(self, name: str, record: RuleRecord, do: Do) -> None:
        ok, error, device = True, "", ""
        result: Any = None
        try:
            if do.action.remote:
                sd = SuperDevice(NodeLink(self.rpc, self._directory, self._circle))
                target = await target_of(do.action, sd, self.rpc, self.device_id,
                                         self.candidates())  # fmt: skip
                device = self.name_of(target)
                result = await self.rpc.call(target, SERVICE, "act",
                                              ActRequest(record, do.step, do.vars),
                                              timeout=ACT_TIMEOUT_S)  # fmt: skip
            else:
                result = await perform_local(do.action, do.vars, self._data,
                                             self.level_of(record.author))  # fmt: skip
        except AccordError as exc:
            ok, error = False, str(exc)
        except Exception as exc:
            log.exception("%s: rule %s action failed", self.name, name)
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self._inbox.put_nowait(("done", name, record.version, do, ok, _small(result), error,
                                device))  # fmt: skip


def _kv_pairs(conditions: tuple[Condition, ...]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for c in conditions:
        if c.kind == "kv":
            out.add((c.store, c.key))
        out |= _kv_pairs(c.children)
    return out


def _sensor_devices(conditions: tuple[Condition, ...]) -> set[str]:
    out: set[str] = set()
    for c in conditions:
        if c.kind == "sensor":
            out.add(c.device)
        out |= _sensor_devices(c.children)
    return out


def _small(result: Any) -> Any:
    try:
        plain = msgspec.to_builtins(result)
        if len(msgspec.msgpack.encode(plain)) <= MAX_RESULT_BYTES:
            return plain
    except (TypeError, msgspec.EncodeError):
        pass
    return f"({type(result).__name__}, too large to keep)"
