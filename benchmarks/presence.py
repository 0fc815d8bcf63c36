"""Presence benchmark: how fast a household of real node processes sees joins and losses.

Runs N real ``accord up`` processes on 127.0.0.1 (multicast off, each listening on its
own port and connected to the ones started before it) watched by an in-process
observer :class:`accord.node.Node`; then, in the same run, the floor: the same
topology of small raw Zenoh processes that only declare a liveliness token, watched by
a raw liveliness subscriber, with the identical Zenoh config
(``zenoh_config(BusSettings(...))``).

Each trial picks the next node round-robin and measures, on both systems:

* clean stop: SIGTERM -> offline on the observer, then restart -> online again;
* crash: SIGKILL -> offline, then restart (same identity, same port) -> online;
* freeze: SIGSTOP -> offline, then SIGKILL and a fresh identity on the same port ->
  online (the "join" of a device the observer never saw).

Joins are timed from a timestamp taken just before the spawn, and from the child's own
pre-open timestamp (accord: ``started_at`` of its announcement, read over its control
socket; raw: encoded in its token key). Usage::

    .venv/bin/python benchmarks/presence.py [--nodes 10] [--trials 20] [--json-out PATH]
    .venv/bin/python benchmarks/presence.py --quick      # 4 nodes, 5 trials
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zenoh
from rich.console import Console
from rich.table import Table

from accord.bus.directory import DirectoryEvent
from accord.bus.settings import BusSettings, zenoh_config
from accord.device.home import init_home
from accord.errors import AccordError
from accord.node import Node
from accord.sim.household import die_with_parent
from common import (
    BenchError,
    BenchParser,
    control_client,
    endpoint,
    log_tail,
    machine,
    new_table,
    result_header,
    run_main,
    signal_group,
    summary_ms,
    verdict,
    write_results,
)

JOIN_TIMEOUT_S = 20.0  # a cold Python start on a loaded 2-core machine
CRASH_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
FREEZE_EXTRA_S = 6.0  # on top of the lease
EXIT_TIMEOUT_S = 10.0
OPENED_AT_TIMEOUT_S = 5.0
SETTLE_UP_S = 0.3  # let the other peers finish meeting a newcomer before the next step
SETTLE_DOWN_S = 0.2
POLL_S = 0.25
SPAWN_ATTEMPTS = 3
CHILD_MAX_LIFE_S = 3600  # raw children end on their own even if everything else fails
RAW_PREFIX = "bench/raw"

Kind = Literal["up", "down"]

# Metric key, label, target in ms (None: no target).
ROWS: list[tuple[str, str, float | None]] = [
    ("join_from_spawn", "join, new device: spawn -> online", None),
    ("join_from_open", "join, new device: open -> online", 1000.0),
    ("restart_from_spawn", "restart after SIGKILL: spawn -> online", None),
    ("restart_from_open", "restart after SIGKILL: open -> online", 1000.0),
    ("rejoin_from_spawn", "restart after stop: spawn -> online", None),
    ("rejoin_from_open", "restart after stop: open -> online", 1000.0),
    ("stop", "clean stop (SIGTERM) -> offline", 1000.0),
    ("crash", "crash (SIGKILL) -> offline", 1000.0),
    ("freeze", "freeze (SIGSTOP) -> offline", 3000.0),
]

# The raw floor: a process that opens a Zenoh session with accord's own config and
# declares one liveliness token whose key carries its pre-open timestamp.
RAW_CHILD = """
import json, signal, sys, time
import zenoh
from accord.bus.settings import BusSettings, zenoh_config
a = json.loads(sys.argv[1])
settings = BusSettings(
    listen=(a["listen"],), connect=tuple(a["connect"]), multicast=False,
    lease_ms=a["lease_ms"], keep_alive=a["keep_alive"],
)
conf = zenoh_config(settings)
opened_at = time.time()
session = zenoh.open(conf)
token = session.liveliness().declare_token(a["key"] + "/" + str(round(opened_at * 1e6)))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    time.sleep(a["max_life"])
finally:
    token.undeclare()
    session.close()
"""


# -- child processes ---------------------------------------------------------


def kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group and reap it (bounded)."""
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(EXIT_TIMEOUT_S)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait without blocking the loop (the observer runs on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        await asyncio.sleep(0.02)
    return proc.poll() is not None


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 free right now, below the ephemeral range so that outgoing
    connections made during the run cannot take them."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = max(1024, low - 12000)
    candidates = list(range(first, low))
    random.shuffle(candidates)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in candidates[: count * 20]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
            if len(ports) == count:
                return ports
    finally:
        for s in held:
            s.close()
    raise BenchError(f"could not find {count} free ports below {low}")


# -- what the observer saw ---------------------------------------------------


@dataclass(frozen=True)
class Seen:
    kind: Kind
    ident: str  # accord: device id; raw: the child's name
    token: str  # what exactly appeared or went (raw: the full token key)
    wall: float
    mono: float
    opened_at: float | None = None  # raw only: the child's pre-open timestamp


class EventLog:
    """Everything the observer saw, in order; waits are bounded by deadlines."""

    def __init__(self) -> None:
        self.events: list[Seen] = []
        self._changed = asyncio.Event()

    def push(self, event: Seen) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(
        self,
        match: Callable[[Seen], bool],
        start: int,
        timeout: float,
        alive: Callable[[], bool] | None = None,
    ) -> Seen | None:
        """The first event from index ``start`` on that matches; None on timeout or
        when ``alive()`` turns false."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if match(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (alive is not None and not alive()):
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, POLL_S))


@dataclass
class Child:
    slot: int
    ident: str
    proc: subprocess.Popen[bytes]
    log: Path
    spawn_wall: float
    spawn_mono: float
    token: str | None = None
    home: Path | None = None


# -- the two systems under test ----------------------------------------------


class Cluster:
    """N-1 child processes plus an in-process observer; subclasses say what a child is."""

    system = ""

    def __init__(self, root: Path, ports: list[int], settings: BusSettings) -> None:
        self.root = root
        self.ports = ports
        self.settings = settings
        self.log = EventLog()
        self.children: dict[int, Child] = {}
        self._gen = 0

    def next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def connect_for(self, slot: int) -> list[str]:
        return [endpoint(p) for p in self.ports[:slot]]

    def popen(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )

    async def open_observer(self) -> None:
        raise NotImplementedError

    async def close_observer(self) -> None:
        raise NotImplementedError

    def spawn(self, slot: int, *, fresh: bool) -> Child:
        raise NotImplementedError

    async def opened_at(self, child: Child, event: Seen) -> float | None:
        raise NotImplementedError

    def kill_all(self) -> None:
        for child in list(self.children.values()):
            signal_group(child.proc.pid, signal.SIGKILL)
        for child in list(self.children.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(EXIT_TIMEOUT_S)
        self.children.clear()


class AccordCluster(Cluster):
    system = "accord"

    def __init__(self, root: Path, ports: list[int], settings: BusSettings) -> None:
        super().__init__(root, ports, settings)
        self._node: Node | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._homes: dict[int, Path] = {}

    async def open_observer(self) -> None:
        home = init_home(self.root / "observer", profile_name="tablet")
        settings = BusSettings(
            listen=(endpoint(self.ports[0]),),
            multicast=False,
            lease_ms=self.settings.lease_ms,
            keep_alive=self.settings.keep_alive,
        )
        node = Node(home, settings)
        await node.start()
        self._node = node
        assert node.directory is not None
        self._unsubscribe = node.directory.subscribe(self._on_event)

    def _on_event(self, event: DirectoryEvent) -> None:
        wall, mono = time.time(), time.monotonic()
        if event.kind == "updated":
            return
        kind: Kind = "up" if event.kind == "joined" else "down"
        device_id = event.device.device_id
        self.log.push(Seen(kind, device_id, device_id, wall, mono))

    async def close_observer(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._node is not None:
            await self._node.stop()
            self._node = None

    def spawn(self, slot: int, *, fresh: bool) -> Child:
        if fresh or slot not in self._homes:
            path = self.root / f"n{slot}g{self.next_gen()}"
            init_home(path, profile_name="tablet")
            self._homes[slot] = path
        path = self._homes[slot]
        device_id = (path / "device.toml").read_text().split('"')[1]
        cmd = [sys.executable, "-m", "accord", "up", "--home", str(path), "--no-multicast"]
        cmd += ["--listen", endpoint(self.ports[slot])]
        for ep in self.connect_for(slot):
            cmd += ["--connect", ep]
        cmd += ["--set", f"lease_ms={self.settings.lease_ms}"]
        cmd += ["--set", f"keep_alive={self.settings.keep_alive}"]
        log = path / "node.log"
        spawn_wall, spawn_mono = time.time(), time.monotonic()
        proc = self.popen(cmd, log)
        child = Child(slot, device_id, proc, log, spawn_wall, spawn_mono, home=path)
        self.children[slot] = child
        return child

    async def opened_at(self, child: Child, event: Seen) -> float | None:
        """The node's ``started_at`` (the one in its announcement), over its control socket."""
        assert child.home is not None
        client = control_client(child.home, 2.0)
        deadline = time.monotonic() + OPENED_AT_TIMEOUT_S
        while time.monotonic() < deadline and child.proc.poll() is None:
            try:
                status: dict[str, Any] = await asyncio.to_thread(client.call, "status")
            except AccordError:
                await asyncio.sleep(0.05)
                continue
            return float(status["started_at"])
        return None


class RawCluster(Cluster):
    system = "zenoh"

    def __init__(self, root: Path, ports: list[int], settings: BusSettings) -> None:
        super().__init__(root, ports, settings)
        self._session: Any = None
        self._subscriber: Any = None
        self._names: dict[int, str] = {}
        self.callback_errors = 0

    async def open_observer(self) -> None:
        loop = asyncio.get_running_loop()
        settings = BusSettings(
            listen=(endpoint(self.ports[0]),),
            multicast=False,
            lease_ms=self.settings.lease_ms,
            keep_alive=self.settings.keep_alive,
        )
        conf = zenoh_config(settings)
        self._session = await loop.run_in_executor(None, zenoh.open, conf)

        def callback(sample: Any) -> None:  # on a Zenoh thread: stamp first, then hand over
            wall, mono = time.time(), time.monotonic()
            try:
                key = str(sample.key_expr)
                kind: Kind = "up" if sample.kind == zenoh.SampleKind.PUT else "down"
                name, _, micros = key[len(RAW_PREFIX) + 1 :].partition("/")
                seen = Seen(kind, name, key, wall, mono, int(micros) / 1e6)
                loop.call_soon_threadsafe(self.log.push, seen)
            except Exception:  # Zenoh would swallow it
                self.callback_errors += 1
                traceback.print_exc()

        liveliness = self._session.liveliness()
        self._subscriber = liveliness.declare_subscriber(f"{RAW_PREFIX}/**", callback, history=True)

    async def close_observer(self) -> None:
        if self._subscriber is not None:
            with contextlib.suppress(zenoh.ZError):
                self._subscriber.undeclare()
            self._subscriber = None
        if self._session is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._session.close)
            self._session = None

    def spawn(self, slot: int, *, fresh: bool) -> Child:
        if fresh or slot not in self._names:
            self._names[slot] = f"n{slot}g{self.next_gen()}"
        name = self._names[slot]
        params = {
            "listen": endpoint(self.ports[slot]),
            "connect": self.connect_for(slot),
            "lease_ms": self.settings.lease_ms,
            "keep_alive": self.settings.keep_alive,
            "key": f"{RAW_PREFIX}/{name}",
            "max_life": CHILD_MAX_LIFE_S,
        }
        cmd = [sys.executable, "-c", RAW_CHILD, json.dumps(params)]
        log = self.root / f"{name}.log"
        spawn_wall, spawn_mono = time.time(), time.monotonic()
        proc = self.popen(cmd, log)
        child = Child(slot, name, proc, log, spawn_wall, spawn_mono)
        self.children[slot] = child
        return child

    async def opened_at(self, child: Child, event: Seen) -> float | None:
        return event.opened_at


# -- one phase: start the household, run the trials ---------------------------


@dataclass
class PhaseResult:
    system: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    timeouts: dict[str, int] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add(self, metric: str, ms: float) -> None:
        self.samples.setdefault(metric, []).append(round(ms, 3))

    def timeout(self, metric: str) -> None:
        self.timeouts[metric] = self.timeouts.get(metric, 0) + 1

    def failures(self) -> int:
        return sum(self.timeouts.values())


class Runner:
    def __init__(
        self, cluster: Cluster, nodes: int, trials: int, console: Console, max_failures: int
    ) -> None:
        self.c = cluster
        self.nodes = nodes
        self.trials = trials
        self.console = console
        self.max_failures = max_failures
        self.result = PhaseResult(cluster.system)

    def _check_budget(self) -> None:
        if self.result.failures() > self.max_failures:
            raise BenchError(f"more than {self.max_failures} timed-out measurements; giving up")

    def _down_match(self, child: Child) -> Callable[[Seen], bool]:
        token = child.token

        def match(e: Seen) -> bool:
            return e.kind == "down" and e.ident == child.ident and token in (None, e.token)

        return match

    @staticmethod
    def _up_match(child: Child) -> Callable[[Seen], bool]:
        return lambda e: e.kind == "up" and e.ident == child.ident

    @staticmethod
    def _alive(child: Child) -> Callable[[], bool]:
        return lambda: child.proc.poll() is None

    async def up(self, slot: int, *, fresh: bool, metric: str, trial: int | None) -> None:
        """Spawn the node of ``slot`` and time until the observer has it online."""
        last_log = ""
        for _attempt in range(SPAWN_ATTEMPTS):
            start = len(self.c.log.events)
            child = self.c.spawn(slot, fresh=fresh)
            event = await self.c.log.wait_for(
                self._up_match(child), start, JOIN_TIMEOUT_S, alive=self._alive(child)
            )
            if event is not None:
                break
            last_log = log_tail(child.log)
            if child.proc.poll() is None:  # alive but never seen: a real miss
                self.result.timeout(f"{metric}_from_spawn")
                self.console.print(f"[yellow]{self.c.system}: slot {slot} not seen online")
            else:
                self.console.print(
                    f"[yellow]{self.c.system}: slot {slot} exited at start, retrying"
                )
            kill_and_reap(child.proc)
            self._check_budget()
            await asyncio.sleep(0.5)
        else:
            raise BenchError(f"{self.c.system}: slot {slot} never came online:\n{last_log}")
        child.token = event.token
        from_spawn = (event.mono - child.spawn_mono) * 1000
        opened_at = await self.c.opened_at(child, event)
        from_open = None if opened_at is None else (event.wall - opened_at) * 1000
        self.result.add(f"{metric}_from_spawn", from_spawn)
        if from_open is not None:
            self.result.add(f"{metric}_from_open", from_open)
        self.result.details.append(
            {
                "metric": metric,
                "trial": trial,
                "slot": slot,
                "ident": child.ident,
                "from_spawn_ms": round(from_spawn, 3),
                "from_open_ms": None if from_open is None else round(from_open, 3),
                "spawn_wall": child.spawn_wall,
                "opened_at": opened_at,
                "seen_wall": event.wall,
            }
        )
        await asyncio.sleep(SETTLE_UP_S)

    async def down(self, slot: int, sig: signal.Signals, metric: str, trial: int) -> None:
        """Signal the node of ``slot`` and time until the observer has it offline; the
        process is gone afterwards."""
        child = self.c.children[slot]
        timeout = {
            "stop": STOP_TIMEOUT_S,
            "crash": CRASH_TIMEOUT_S,
            "freeze": self.c.settings.lease_ms / 1000 + FREEZE_EXTRA_S,
        }[metric]
        match = self._down_match(child)
        start = len(self.c.log.events)
        sent = time.monotonic()
        signal_group(child.proc.pid, sig)
        event = await self.c.log.wait_for(match, start, timeout)
        if event is None:
            self.result.timeout(metric)
            self.console.print(f"[yellow]{self.c.system}: {metric} of slot {slot} not seen")
        else:
            ms = (event.mono - sent) * 1000
            self.result.add(metric, ms)
            self.result.details.append(
                {"metric": metric, "trial": trial, "slot": slot, "ident": child.ident, "ms": ms}
            )
        if sig == signal.SIGTERM and not await wait_exit(child.proc, EXIT_TIMEOUT_S):
            self.console.print(f"[yellow]{self.c.system}: slot {slot} ignored SIGTERM")
        kill_and_reap(child.proc)  # a frozen child dies here
        del self.c.children[slot]
        if event is None:  # make sure a late "left" cannot be taken for a later one
            late = await self.c.log.wait_for(match, start, timeout)
            if late is None:
                self.console.print(f"[yellow]{self.c.system}: slot {slot} never seen offline")
            self._check_budget()
        await asyncio.sleep(SETTLE_DOWN_S)

    async def run(self) -> PhaseResult:
        began = time.monotonic()
        try:
            await self.c.open_observer()
            for slot in range(1, self.nodes):
                await self.up(slot, fresh=True, metric="join", trial=None)
            self.console.print(
                f"{self.c.system}: {self.nodes - 1} nodes + observer up "
                f"in {time.monotonic() - began:.1f} s; {self.trials} trials"
            )
            for trial in range(self.trials):
                slot = 1 + trial % (self.nodes - 1)
                await self.down(slot, signal.SIGTERM, "stop", trial)
                await self.up(slot, fresh=False, metric="rejoin", trial=trial)
                await self.down(slot, signal.SIGKILL, "crash", trial)
                await self.up(slot, fresh=False, metric="restart", trial=trial)
                await self.down(slot, signal.SIGSTOP, "freeze", trial)
                await self.up(slot, fresh=True, metric="join", trial=trial)
                self.console.print(
                    f"  {self.c.system} trial {trial + 1}/{self.trials} (slot {slot}) "
                    f"done at {time.monotonic() - began:.0f} s",
                    highlight=False,
                )
        except (BenchError, AccordError, OSError) as exc:
            self.result.error = str(exc)
            self.console.print(f"[red]{self.c.system}: {exc}")
        finally:
            self.c.kill_all()
            await self.c.close_observer()
        self.result.seconds = round(time.monotonic() - began, 1)
        return self.result


# -- report --------------------------------------------------------------------


def fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"  # no thousands separator, unlike common.fmt


def render(results: dict[str, PhaseResult], nodes: int, trials: int) -> Table:
    accord, raw = results["accord"], results["zenoh"]
    within = "accord max\nwithin"
    cols = ("measurement", "n", "accord p50", "accord max", "zenoh p50", "zenoh max")
    table = new_table(
        f"Presence: {nodes} nodes on 127.0.0.1, {trials} trials (ms)",
        (*cols, "ratio p50", "target", within),
        left=("measurement",),
        center=(within,),
    )
    for key, label, target in ROWS:
        a = summary_ms(accord.samples.get(key, []), p90=True)
        r = summary_ms(raw.samples.get(key, []), p90=True)
        ap50, rp50, amax = a["p50_ms"], r["p50_ms"], a["max_ms"]
        ratio = f"{ap50 / rp50:.2f}x" if ap50 is not None and rp50 else "-"
        met = "-"
        if target is not None and amax is not None:
            met = verdict(amax <= target and not accord.timeouts.get(key))
        n = f"{a['n']}/{r['n']}"
        misses = accord.timeouts.get(key, 0) + raw.timeouts.get(key, 0)
        if misses:
            n += f" ({misses} missed)"
        table.add_row(
            label,
            n,
            fmt(ap50),
            fmt(amax),
            fmt(rp50),
            fmt(r["max_ms"]),
            ratio,
            fmt(target),
            met,
        )
    return table


def to_json(
    args: argparse.Namespace,
    settings: BusSettings,
    results: dict[str, PhaseResult],
    info: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for name, res in results.items():
        metrics = {
            key: {
                **summary_ms(vals, p90=True),
                "timeouts": res.timeouts.get(key, 0),
                "samples_ms": vals,
            }
            for key, vals in sorted(res.samples.items())
        }
        for key, count in res.timeouts.items():
            empty = summary_ms([], p90=True)
            metrics.setdefault(key, {**empty, "timeouts": count, "samples_ms": []})
        systems[name] = {
            "seconds": res.seconds,
            "error": res.error,
            "metrics": metrics,
            "events": res.details,
        }
    ratios = {}
    for key, _label, _target in ROWS:
        a = summary_ms(results["accord"].samples.get(key, []), p90=True)["p50_ms"]
        r = summary_ms(results["zenoh"].samples.get(key, []), p90=True)["p50_ms"]
        ratios[key] = round(a / r, 2) if a is not None and r else None
    return {
        **result_header("presence", info, args.argv),
        "nodes": args.nodes,
        "trials": args.trials,
        "settings": {
            "lease_ms": settings.lease_ms,
            "keep_alive": settings.keep_alive,
            "retry_init_ms": settings.retry_init_ms,
            "retry_max_ms": settings.retry_max_ms,
            "multicast": False,
        },
        "targets_ms": {key: target for key, _label, target in ROWS if target is not None},
        "total_seconds": round(seconds, 1),
        "ratio_p50": ratios,
        "systems": systems,
    }


# -- main ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = BenchParser("presence", __doc__)
    parser.count("--nodes", "N, observer included", 10, 4)
    parser.count("--trials", "trials per measurement", 20, 5)
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 nodes, 5 trials")
    parser.add_argument("--json-out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--lease-ms", type=int, default=BusSettings().lease_ms, help="Zenoh lease for all"
    )
    parser.add_argument("--only", choices=("accord", "zenoh"), default=None, help=argparse.SUPPRESS)
    args = parser.parse(argv)
    if args.nodes < 2 or args.trials < 1:
        parser.error("need --nodes >= 2 and --trials >= 1")
    return args


async def run(args: argparse.Namespace, console: Console, root: Path) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    began = time.monotonic()
    settings = BusSettings(lease_ms=args.lease_ms)
    info = machine()
    console.print(
        f"presence benchmark: {args.nodes} nodes, {args.trials} trials, lease "
        f"{settings.lease_ms} ms, {info['cpu_count']} CPUs, zenoh {info['zenoh']}",
        highlight=False,
    )
    results: dict[str, PhaseResult] = {}
    max_failures = max(3, args.trials // 4)
    ports = free_ports(2 * args.nodes)
    phases: list[Cluster] = [
        AccordCluster(root / "accord", ports[: args.nodes], settings),
        RawCluster(root / "zenoh", ports[args.nodes :], settings),
    ]
    for cluster in phases:
        if args.only not in (None, cluster.system):
            results[cluster.system] = PhaseResult(cluster.system, error="skipped")
            continue
        cluster.root.mkdir(parents=True)
        runner = Runner(cluster, args.nodes, args.trials, console, max_failures)
        results[cluster.system] = await runner.run()
    seconds = time.monotonic() - began
    console.print(render(results, args.nodes, args.trials))
    write_results(args.json_out, to_json(args, settings, results, info, seconds), console, seconds)
    return 1 if any(r.error and r.error != "skipped" for r in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(
        lambda console, root: run(args, console, root),
        prefix="accbench-",
        width=140,
        interrupted="interrupted; every child was killed",
    )


if __name__ == "__main__":
    sys.exit(main())
