"""Scale benchmark: a circle of 10, 50 and 100 devices through one relay.

Per size N, on 127.0.0.1: an ``accord relay`` process, an in-process host
:class:`accord.node.Node` (founder and observer) and N - 1 ``accord up --relay``
processes (profile ``tablet``), all Zenoh clients of the relay. Measured in one run:

* **pairing**: each process joins the host's circle in turn with a PIN, as a person
  would; timed from opening the window to ``pair_join``'s return, and on until the
  joiner holds every member's details; then until every node counts N members.
* **kv put to all**: a put on one node, until every other holds it (polled over the
  control sockets: an upper bound); the store's first put, then warm ones.
* **RPC**: ``display.current`` host -> a node, sealed on their channel, against raw
  Zenoh queries between two raw clients of the same relay, alternating in blocks.
* **crash -> offline**: SIGKILL a node; until the host sees it offline.
* **idle**: CPU (% of one core) and RSS of the nodes over a quiet window; the floor:
  N - 1 raw Zenoh clients of the relay with Accord's Zenoh config. Usage::

    .venv/bin/python benchmarks/scale.py [--nodes 10,50,100] [--calls 300] [--json-out PATH]
    .venv/bin/python benchmarks/scale.py --quick      # 10 nodes, fewer calls
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import zenoh
from rich.console import Console
from rich.table import Table

from accord.bus.settings import BusSettings, zenoh_config
from accord.device.home import init_home
from accord.errors import AccordError
from accord.node import Node
from accord.sim.household import die_with_parent, free_port
from common import (
    BenchError,
    BenchParser,
    control_client,
    endpoint,
    fmt,
    fmt_x,
    machine,
    new_table,
    ratio,
    result_header,
    run_main,
    sees,
    signal_group,
    verdict,
    wait_until,
    write_results,
)

START_BATCH = 8  # processes started at once: a cold start is ~1 s of CPU each
TIMEOUT_S = 60.0  # any one step: a start, a join, a put reaching a node
SETTLE_S = 10.0  # a joiner that holds not every member's details by then never will
QUIET_JOINS = 3  # the last joins wait until the circle is quiet (their cost alone)
QUIET_PCT = 25.0  # quiet: all processes together use less than this % of one core ...
QUIET_WINDOW_S = 0.5  # ... over this long
QUIET_WAIT_S = 20.0  # waited at most
# On an RPC key of a made-up device: the relay passes only Accord's key layout.
ECHO_KEY = "accord/v1/rpc/benchbenchbenchbenchbenchbe/bench/echo"

# A raw Zenoh client of the relay that answers every query with its payload.
ECHO_CHILD = """
import signal, sys, threading, zenoh
from accord.bus.settings import BusSettings, zenoh_config
session = zenoh.open(zenoh_config(BusSettings(relay=(sys.argv[1],), multicast=False)))
def echo(query):
    query.reply(query.key_expr, query.payload.to_bytes() if query.payload else b"")
queryable = session.declare_queryable(sys.argv[2], zenoh.handlers.Callback(echo, indirect=False))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("ready", flush=True)
stop.wait()
queryable.undeclare()
session.close()
"""
# What the interpreter and Accord's imports alone hold, before any node runs.
IMPORTS_CHILD = "import accord.node, psutil; print(psutil.Process().memory_info().rss)"


def idle_cpu_pct(procs: list[psutil.Process], seconds: float) -> float:
    """CPU time of ``procs`` over ``seconds`` of wall time, in % of one core."""
    before = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(seconds)
    return 100 * (sum(sum(p.cpu_times()[:2]) for p in procs) - before) / seconds


IDLE_KEYS = ("cpu_pct_all_nodes", "cpu_pct_relay", "rss_mb_per_node", "uss_mb_per_node",
             "pss_mb_per_node", "rss_mb_relay")  # fmt: skip
FLOOR_KEYS = ("raw_cpu_pct_all_clients", "raw_rss_mb_per_client", "imports_rss_mb")


def raw_floor(relay: str, count: int, seconds: float) -> dict[str, float]:
    """Idle CPU and RSS of ``count`` raw Zenoh clients of the relay (Accord's Zenoh
    config, one queryable each), and the RSS of an interpreter with Accord imported."""
    echoes = [start_echo(relay) for _ in range(count)]
    try:
        for echo in echoes:
            assert echo.stdout is not None
            echo.stdout.readline()
        procs = [psutil.Process(e.pid) for e in echoes]
        cpu = idle_cpu_pct(procs, seconds)
        rss = statistics.mean(p.memory_info().rss for p in procs) / 2**20
    finally:
        stop_all(echoes)
    cmd = [sys.executable, "-c", IMPORTS_CHILD]
    imports = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {
        "raw_cpu_pct_all_clients": round(cpu, 2),
        "raw_rss_mb_per_client": round(rss, 1),
        "imports_rss_mb": round(int(imports.stdout) / 2**20, 1),
    }


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True,
                                preexec_fn=die_with_parent(signal.SIGKILL))  # fmt: skip


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def until(
    home: Path, method: str, check: Callable[[Any], bool], timeout: float, what: str, **params: Any
) -> None:
    """Call ``method`` on the node of ``home`` until ``check`` of its answer is true."""
    client = control_client(home, 5.0)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(AccordError):
            if check(await asyncio.to_thread(client.call, method, **params)):
                return
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}; see {home}/node.log")
        await asyncio.sleep(0.005)


class Circle:
    """One size's relay, host node and process nodes."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self.relay = endpoint(free_port())
        self.procs: list[subprocess.Popen[bytes]] = []
        self.homes: list[Path] = []
        self.ids: list[str] = []
        self.host: Node | None = None
        self.unsettled = 0  # joiners that never held every member's details
        self.failed_joins: list[str] = []  # joiners that did not get in (why)
        self.join_retries = 0
        self.quiet_joins: list[float] = []  # pair_join of the last joiners, once quiet
        self.quiet_waits: list[list[float]] = []  # [s waited, % of a core then]
        self.arrivals: dict[str, list[float]] = {}  # put key -> when each node held it (s)

    async def start(self) -> None:
        relay = spawn(
            [sys.executable, "-m", "accord", "relay", "--listen", self.relay],
            self.root / "relay.log",
        )
        self.procs.append(relay)
        host_home = init_home(self.root / "host", profile_name="laptop")
        settings = BusSettings(relay=(self.relay,), multicast=False)
        deadline = time.monotonic() + TIMEOUT_S
        while self.host is None:  # the relay takes a moment to listen
            node = Node(host_home, settings)
            try:
                await node.start()
            except AccordError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                self.host = node
        for first in range(0, self.size - 1, START_BATCH):
            batch = range(first, min(first + START_BATCH, self.size - 1))
            for i in batch:
                home = init_home(self.root / f"n{i}", profile_name="tablet")
                self.homes.append(home.path)
                self.ids.append(home.device_id)
                cmd = [sys.executable, "-m", "accord", "up", "--home", str(home.path)]
                self.procs.append(spawn([*cmd, "--relay", self.relay], home.path / "node.log"))
            for i in batch:
                await until(self.homes[i], "status", bool, TIMEOUT_S, f"node {i} to start")

    async def pair_all(self) -> tuple[list[float], list[float]]:
        """Each process node joins in turn: the seconds each ``pair_join`` took, and
        each until the joiner also held every member's details (the O(N) part). The
        last QUIET_JOINS join only once the circle is quiet again (see ``quiet``):
        their times go to ``quiet_joins``, apart."""
        host = self.host
        assert host is not None
        joins: list[float] = []
        settled: list[float] = []
        for i in range(len(self.ids)):

            def sees_host(rows: list[dict[str, Any]]) -> bool:
                return any(r["device_id"] == host.home.device_id and r["online"] for r in rows)

            quiet = i >= len(self.ids) - QUIET_JOINS
            try:  # a joiner that cannot join is counted, and the others go on
                await until(self.homes[i], "devices", sees_host, TIMEOUT_S, f"joiner {i} to see")
                if quiet:
                    self.quiet_waits.append(await asyncio.to_thread(self.quiet))
                began = time.monotonic()
                await self._join(i)
            except (BenchError, AccordError) as exc:
                self.failed_joins.append(f"joiner {i}: {exc}")
                continue
            (self.quiet_joins if quiet else joins).append(time.monotonic() - began)
            members = i + 2 - len(self.failed_joins)

            def detailed(rows: list[dict[str, Any]], members: int = members) -> bool:
                """It holds its own, the host's and every earlier joiner's details."""
                return sum(1 for r in rows if r["online"] and r["summary"]) >= members

            try:  # a joiner that misses a member's details is counted, not waited on
                await until(self.homes[i], "devices", detailed, SETTLE_S, f"joiner {i}")
                if not quiet:
                    settled.append(time.monotonic() - began)
            except BenchError:
                self.unsettled += 1
        return joins, settled

    def quiet(self) -> list[float]:
        """Wait until the node processes (and this one, the host) use less than
        QUIET_PCT of a core over QUIET_WINDOW_S, at most QUIET_WAIT_S; returns [seconds
        waited, % of a core in the last window] (the % is above QUIET_PCT if it never
        got that quiet)."""
        procs = [psutil.Process(p.pid) for p in self.procs[1:] if p.poll() is None]
        procs.append(psutil.Process())
        began = time.monotonic()
        while True:
            with contextlib.suppress(psutil.Error):
                pct = idle_cpu_pct(procs, QUIET_WINDOW_S)
                if pct < QUIET_PCT or time.monotonic() - began > QUIET_WAIT_S:
                    return [round(time.monotonic() - began, 1), round(pct, 1)]

    async def _join(self, i: int) -> None:
        """Joiner ``i`` pairs with the host by PIN; a PIN refused because the host was
        busy (a query timed out) is tried once more with a fresh window."""
        host = self.host
        assert host is not None
        client = control_client(self.homes[i], TIMEOUT_S)
        for attempt in range(2):
            pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
            try:
                await asyncio.to_thread(
                    client.call, "pair_join", device=host.home.device_id, pin=pin
                )
                return
            except AccordError:
                if attempt:
                    raise
                self.join_retries += 1

    async def members_everywhere(self) -> int:
        """Wait (boundedly) until every joined node counts every member; how many do."""
        members = 1 + len(self.ids) - len(self.failed_joins)
        deadline = time.monotonic() + 2 * TIMEOUT_S
        counted = 0
        for i, home in enumerate(self.homes):

            def counts_all(status: dict[str, Any]) -> bool:
                return bool(status["circle_members"] >= members)

            left = max(1.0, deadline - time.monotonic())
            with contextlib.suppress(BenchError):
                await until(home, "status", counts_all, left, f"node {i} to count all")
                counted += 1
        return counted

    async def put_reaches_all(self, key: str) -> float:
        """Put on node 0; seconds until every other process node holds the value."""
        writer = control_client(self.homes[0], 10)
        began = time.monotonic()
        await asyncio.to_thread(writer.call, "kv_put", store="scale", key=key, value=key)

        def holds(got: dict[str, Any]) -> bool:
            return got.get("text") == key

        async def reached(home: Path) -> float:
            await until(home, "kv_get", holds, TIMEOUT_S, "the put", store="scale", key=key)
            return time.monotonic() - began

        waits = [reached(h) for h in self.homes[1:]]
        results = await asyncio.gather(*waits, return_exceptions=True)
        arrivals = sorted(r for r in results if isinstance(r, float))
        self.arrivals[key] = [round(a, 3) for a in arrivals]
        if len(arrivals) < len(waits):
            raise BenchError(f"the put {key!r} reached {len(arrivals)} of "
                             f"{len(waits)} nodes within {TIMEOUT_S:g} s")  # fmt: skip
        return time.monotonic() - began

    def idle(self, seconds: float) -> dict[str, float]:
        nodes = [psutil.Process(p.pid) for p in self.procs[1:]]
        relay = psutil.Process(self.procs[0].pid)
        relay_before = sum(relay.cpu_times()[:2])
        cpu = idle_cpu_pct(nodes, seconds)
        relay_cpu = 100 * (sum(relay.cpu_times()[:2]) - relay_before) / seconds
        rss = [p.memory_info().rss / 2**20 for p in nodes]
        # RSS counts the shared libraries' pages in every process; USS is what a node
        # holds alone (what one more node costs), PSS its fair share of the rest.
        full = [p.memory_full_info() for p in nodes[:10]]
        return {
            "cpu_pct_all_nodes": round(cpu, 2),
            "cpu_pct_relay": round(relay_cpu, 2),
            "rss_mb_per_node": round(statistics.mean(rss), 1),
            "uss_mb_per_node": round(statistics.mean(m.uss for m in full) / 2**20, 1),
            "pss_mb_per_node": round(statistics.mean(m.pss for m in full) / 2**20, 1),
            "rss_mb_relay": round(relay.memory_info().rss / 2**20, 1),
        }

    async def crash_to_offline(self) -> float:
        host = self.host
        assert host is not None
        victim = len(self.homes) - 1
        began = time.monotonic()
        signal_group(self.procs[victim + 1].pid, signal.SIGKILL)
        await wait_until(lambda: not sees(host, self.ids[victim]), 10, "the crash to be seen")
        return time.monotonic() - began

    async def close(self) -> None:
        if self.host is not None:
            await self.host.stop()
        stop_all(self.procs[1:])
        stop_all(self.procs[:1])


def start_echo(relay: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", ECHO_CHILD, relay, ECHO_KEY],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )


async def rpc_vs_raw(circle: Circle, calls: int) -> dict[str, Any]:
    """p50 of sealed calls host -> node 0 against raw queries through the same relay."""
    host = circle.host
    assert host is not None
    echo = start_echo(circle.relay)
    raw = zenoh.open(zenoh_config(BusSettings(relay=(circle.relay,), multicast=False)))
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != b"ready":
            raise BenchError("the raw echo process did not start")
        callee = circle.ids[0]
        payload = b"x" * 200  # about what the sealed request carries
        accord_ms: list[float] = []
        raw_ms: list[float] = []
        for _ in range(3):  # warm-up: channel, routes
            await host.rpc.call(callee, "display", "current", None, timeout=10)
            list(raw.get(ECHO_KEY, payload=payload, timeout=10))
        for block in range(10):
            for _ in range(max(1, calls // 10)):
                began = time.perf_counter()
                await host.rpc.call(callee, "display", "current", None, timeout=10)
                accord_ms.append((time.perf_counter() - began) * 1e3)
            for _ in range(max(1, calls // 10)):
                began = time.perf_counter()
                replies = list(raw.get(ECHO_KEY, payload=payload, timeout=10))
                raw_ms.append((time.perf_counter() - began) * 1e3)
                if not replies or replies[0].ok is None:
                    raise BenchError(f"raw echo failed in block {block}")
        a, r = statistics.median(accord_ms), statistics.median(raw_ms)
        return {"accord_p50_ms": round(a, 3), "raw_p50_ms": round(r, 3), "ratio": ratio(a, r)}
    finally:
        raw.close()  # type: ignore[no-untyped-call]
        stop_all([echo])


async def one_size(root: Path, size: int, args: argparse.Namespace, console: Console) -> Any:
    """One size's figures. A step that fails (a deadline, a node that stops answering)
    leaves its figures missing and says why under ``errors``; the others go on."""
    circle = Circle(root / f"c{size}", size)
    circle.root.mkdir(parents=True)
    row: dict[str, Any] = {"nodes": size, "errors": {}, "load_avg": {}}

    async def step(name: str, make: Callable[[], Any]) -> Any:
        began = time.monotonic()
        try:
            result = make()
            if asyncio.iscoroutine(result):
                result = await result
        except (BenchError, AccordError, OSError, subprocess.SubprocessError) as exc:
            row["errors"][name] = f"{type(exc).__name__}: {exc}"
            console.print(f"{size}: {name} failed after {time.monotonic() - began:.1f} s: {exc}")
            return None
        finally:
            row["load_avg"][name] = round(os.getloadavg()[0], 1)
        console.print(f"{size}: {name} done in {time.monotonic() - began:.1f} s")
        return result

    try:
        began = time.monotonic()
        await circle.start()
        console.print(f"{size}: {size - 1} nodes up in {time.monotonic() - began:.1f} s")
        began = time.monotonic()
        joins, settled = await circle.pair_all()
        counted = await circle.members_everywhere()
        pair_all_s = time.monotonic() - began
        console.print(f"{size}: paired in {pair_all_s:.1f} s ({len(joins)} joins, "
                      f"{len(circle.failed_joins)} failed, {counted} count all)")  # fmt: skip
        fifth = max(1, len(joins) // 5)
        row.update({
            "pair_all_s": round(pair_all_s, 2) if counted == len(circle.homes) else None,
            "join_mean_s": round(statistics.mean(joins), 3) if joins else None,
            "join_last_fifth_mean_s": round(statistics.mean(joins[-fifth:]), 3) if joins else None,
            "settled_mean_s": round(statistics.mean(settled), 3) if settled else None,
            "settled_last_fifth_mean_s": (
                round(statistics.mean(settled[-fifth:]), 3) if settled else None
            ),
            "joins_s": [round(j, 3) for j in joins],
            "settled_s": [round(j, 3) for j in settled],
            "unsettled_joiners": circle.unsettled,
            "failed_joins": circle.failed_joins,
            "join_retries": circle.join_retries,
            "join_quiet_mean_s": (
                round(statistics.mean(circle.quiet_joins), 3) if circle.quiet_joins else None
            ),
            "joins_quiet_s": [round(j, 3) for j in circle.quiet_joins],
            "quiet_waits": circle.quiet_waits,
            "nodes_counting_all": counted,
        })  # fmt: skip
        first = await step("first_put", lambda: circle.put_reaches_all("first"))
        warm = []
        for i in range(3):
            warm.append(await step(f"warm_put_{i}", partial(circle.put_reaches_all, f"warm{i}")))
        warm_ok = [w for w in warm if w is not None]
        row["first_put_to_all_s"] = round(first, 3) if first is not None else None
        row["warm_put_to_all_s"] = round(statistics.median(warm_ok), 3) if warm_ok else None
        row["warm_puts_s"] = [None if w is None else round(w, 3) for w in warm]
        row["put_arrivals_s"] = circle.arrivals
        missing_rpc = {"accord_p50_ms": None, "raw_p50_ms": None, "ratio": None}
        row["rpc"] = await step("rpc", lambda: rpc_vs_raw(circle, args.calls)) or missing_rpc
        idle = await step("idle", lambda: asyncio.to_thread(circle.idle, args.idle_s))
        row.update(idle or dict.fromkeys(IDLE_KEYS))
        crash = await step("crash", circle.crash_to_offline)
        row["crash_to_offline_s"] = round(crash, 3) if crash is not None else None
        floor = await step(
            "floor", lambda: asyncio.to_thread(raw_floor, circle.relay, size - 1, args.idle_s)
        )
        row.update(floor or dict.fromkeys(FLOOR_KEYS))
        return row
    finally:
        await circle.close()


def table(rows: list[dict[str, Any]]) -> Table:
    t = new_table(
        "Circle through one relay (host in-process, other nodes real processes)",
        ["metric", *[f"{r['nodes']} nodes" for r in rows]],
        left=["metric"],
    )
    lines: list[tuple[str, Any]] = [
        ("pair all, until every node counts N (s)", lambda r: fmt(r["pair_all_s"], 1)),
        ("per join, mean (s)", lambda r: fmt(r["join_mean_s"], 3)),
        ("per join, last fifth (s)", lambda r: fmt(r["join_last_fifth_mean_s"], 3)),
        ("per join on a quiet circle, last 3 (s)", lambda r: fmt(r["join_quiet_mean_s"], 3)),
        ("join until joiner holds all details (s)", lambda r: fmt(r["settled_mean_s"], 3)),
        ("  the same, last fifth (s)", lambda r: fmt(r["settled_last_fifth_mean_s"], 3)),
        ("  joiners missing details after 10 s", lambda r: str(r["unsettled_joiners"])),
        (
            "  joins that failed (then retried once)",
            lambda r: f"{len(r['failed_joins'])} ({r['join_retries']})",
        ),
        ("first kv put reaches all (s)", lambda r: fmt(r["first_put_to_all_s"], 3)),
        ("warm kv put reaches all, p50 of 3 (s)", lambda r: fmt(r["warm_put_to_all_s"], 3)),
        ("RPC p50 through relay (ms)", lambda r: fmt(r["rpc"]["accord_p50_ms"], 2)),
        ("raw Zenoh query p50 through relay (ms)", lambda r: fmt(r["rpc"]["raw_p50_ms"], 2)),
        ("RPC / raw", lambda r: fmt_x(r["rpc"]["ratio"])),
        ("crash -> offline (s)", lambda r: fmt(r["crash_to_offline_s"], 3)),
        ("idle CPU, all nodes (% of one core)", lambda r: fmt(r["cpu_pct_all_nodes"], 1)),
        ("idle CPU, relay (% of one core)", lambda r: fmt(r["cpu_pct_relay"], 1)),
        ("idle CPU, N-1 raw Zenoh clients (%)", lambda r: fmt(r["raw_cpu_pct_all_clients"], 1)),
        ("RSS per node (MB)", lambda r: fmt(r["rss_mb_per_node"], 0)),
        (
            "  of it its own (USS) / fair share (PSS) (MB)",
            lambda r: f"{fmt(r.get('uss_mb_per_node'), 0)} / {fmt(r.get('pss_mb_per_node'), 0)}",
        ),
        ("RSS per raw Zenoh client (MB)", lambda r: fmt(r["raw_rss_mb_per_client"], 0)),
        ("RSS, interpreter + accord imports (MB)", lambda r: fmt(r["imports_rss_mb"], 0)),
        ("RSS of the relay (MB)", lambda r: fmt(r["rss_mb_relay"], 0)),
    ]
    for label, cell in lines:
        t.add_row(label, *[cell(r) for r in rows])
    return t


def goals(rows: list[dict[str, Any]]) -> dict[str, bool | None]:
    """Each goal judged at the largest size measured (None: a figure is missing)."""
    small, big = rows[0], rows[-1]

    def at_most(figure: Any, bound: Any) -> bool | None:
        return None if figure is None or bound is None else bool(figure <= bound)

    join_small, join_big = small.get("join_mean_s"), big.get("join_mean_s")
    ratios = [r["rpc"]["ratio"] for r in rows]
    return {
        "join_cost_largest_at_most_2x_smallest": (
            at_most(join_big, None if join_small is None else 2 * join_small)
            if big is not small
            else None
        ),
        "quiet_join_cost_largest_at_most_2x_smallest": (
            at_most(
                big.get("join_quiet_mean_s"),
                None if small.get("join_quiet_mean_s") is None else 2 * small["join_quiet_mean_s"],
            )
            if big is not small
            else None
        ),
        "warm_put_reaches_all_within_1s": at_most(big.get("warm_put_to_all_s"), 1.0),
        "idle_cpu_all_nodes_under_10pct": at_most(big.get("cpu_pct_all_nodes"), 9.999),
        "rpc_at_most_1_5x_raw": (None if None in ratios else all(at_most(r, 1.5) for r in ratios)),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = BenchParser("scale", __doc__)
    parser.add_argument("--nodes", default=None, help="circle sizes, comma-separated (10,50,100)")
    parser.count("--calls", "RPC and raw calls per size", 300, 60)
    parser.add_argument("--idle-s", type=float, default=None, help="idle window, s (10)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 nodes")
    parser.add_argument("--json-out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse(argv)
    args.idle_s = args.idle_s or (3.0 if args.quick else 10.0)
    sizes = args.nodes or ("10" if args.quick else "10,50,100")
    try:
        args.sizes = sorted({int(n) for n in sizes.split(",")})
    except ValueError:
        parser.error("--nodes is a comma-separated list of numbers")
    if args.sizes[0] < 3 or args.sizes[-1] > 256:
        parser.error("circle sizes go from 3 to 256")
    return args


async def run(args: argparse.Namespace, console: Console, root: Path) -> int:
    began = time.monotonic()
    info = machine("psutil")
    rows = []
    for size in args.sizes:  # written after each size: a larger one may not finish
        rows.append(await one_size(root, size, args, console))
        console.print(table(rows))
        judged = goals(rows)
        data = {**result_header("scale", info, args.argv), "sizes": rows, "goals": judged}
        write_results(args.json_out, data, console, time.monotonic() - began, one_line_numbers=True)
    for name, ok in judged.items():
        console.print(f"{name}: {'-' if ok is None else verdict(ok)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda console, root: run(args, console, root), prefix="accscale-", width=120)


if __name__ == "__main__":
    sys.exit(main())
