"""Trust benchmark: PIN pairing time, and sealed vs raw Zenoh pub/sub and queries.

Everything runs in one process on 127.0.0.1, multicast off, in one run:

1. **Pairing.** An in-process host :class:`accord.node.Node`; per trial a fresh joiner
   home and Node connected to it (a paired or revoked id cannot pair again). Once the
   joiner sees the host online: ``host.trust.pair_window`` then
   ``joiner.trust.pair_join``. The headline is ``pair_join`` alone, from the call to
   its return. Each joiner is stopped after its trial.
2. **Pub/sub throughput.** Two raw Zenoh sessions built with
   ``zenoh_config(BusSettings(...))`` (shared memory off), connected over TCP loopback.
   A declared Publisher (congestion control BLOCK) publishes N messages as fast as it
   can, once probes show the route is up; a subscriber callback counts them. Sealed:
   each message is ``circle_a.seal(key, payload)`` and the callback does
   ``circle_b.open(key, frame)``, where ``circle_a`` / ``circle_b`` belong to two
   in-process Nodes that have paired, so the real member lookup and replay window are
   in the path.
3. **Query round trip.** Sequential blocking ``session.get`` against a queryable on the
   other session. Raw: the payload is echoed. Sealed: the request is sealed by
   ``circle_a``, opened by ``circle_b`` in the queryable, the reply sealed by
   ``circle_b`` and opened by ``circle_a`` on receipt. Raw and sealed alternate in
   blocks so that both see the same machine. Usage::

    .venv/bin/python benchmarks/trust.py [--json-out PATH]
    .venv/bin/python benchmarks/trust.py --quick      # 5 pairings, fewer messages
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zenoh
from rich.console import Console
from rich.table import Table

from accord.bus.settings import BusSettings, zenoh_config
from accord.device.home import init_home
from accord.errors import AccordError
from accord.node import Node
from accord.sim.household import free_port
from accord.trust.circle import Circle
from common import (
    BenchError,
    BenchParser,
    endpoint,
    machine,
    new_table,
    result_header,
    run_main,
    sees,
    summary_ms,
    summary_us,
    verdict,
    wait_until,
    write_results,
)

PAIR_TARGET_MS = 1000.0  # the target for one pairing
OPENHARMONY_ESTIMATE_S = (30, 60)  # OpenHarmony maintainers' estimate for a device bind
RTT_GOAL_RATIO = 1.3  # sealed RPC within 1.3x of raw Zenoh's query round trip
SIZES = (64, 4096)
JOINER_PROFILES = ("tablet", "tv", "nokia-x60", "midea-fridge")

SEE_TIMEOUT_S = 10.0  # a new joiner sees the host online
JOIN_TIMEOUT_S = 15.0  # one pair_join (three queries of 2 s at most each)
DETAILS_TIMEOUT_S = 5.0
MATCH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
DELIVERY_DEADLINE_S = 30.0  # per throughput run, after the last put
QUERY_TIMEOUT_S = 2.0
QUERY_BLOCK = 100  # raw and sealed queries alternate in blocks of this many
# Zenoh 1.10 drops the first puts of a new publisher for a millisecond or two after
# ``matching_status`` turns true, so each run first sends probes until one arrives.
PROBE = b"probe"  # shorter than any payload or sealed frame, so never counted
KEY_PREFIX = "bench/trust"
POLL_S = 0.005  # waiting for the directory during pairing


@dataclass(frozen=True)
class Params:
    pairings: int
    messages: int  # per throughput run
    runs: int  # throughput runs per (payload, variant)
    queries: int  # per (payload, variant)
    query_sizes: tuple[int, ...] = SIZES

    def as_json(self) -> dict[str, Any]:
        return {
            "pairings": self.pairings,
            "messages_per_run": self.messages,
            "throughput_runs": self.runs,
            "queries": self.queries,
            "query_block": QUERY_BLOCK,
            "payload_sizes": list(SIZES),
            "query_sizes": list(self.query_sizes),
            "congestion_control": "BLOCK",
            "shared_memory": False,
            "multicast": False,
            "query_timeout_s": QUERY_TIMEOUT_S,
            "delivery_deadline_s": DELIVERY_DEADLINE_S,
        }


# -- helpers -------------------------------------------------------------------


def detailed(node: Node, other: Node) -> bool:
    return sees(node, other.home.device_id, details=True)


def circle_of(node: Node) -> Circle:
    if node.circle is None:
        raise BenchError(f"{node.name} has no circle")
    return node.circle


async def start_node(root: Path, name: str, profile: str, connect: tuple[str, ...]) -> Node:
    home = init_home(root / name, profile_name=profile, name=name)
    settings = BusSettings(listen=(endpoint(free_port()),), connect=connect, multicast=False)
    node = Node(home, settings)
    await node.start()  # stops what it started if it fails
    return node


def node_endpoint(node: Node) -> str:
    return node.settings.listen[0]


async def pair(host: Node, joiner: Node) -> dict[str, float]:
    """Pair ``joiner`` into ``host``'s circle; the timings of each step in ms."""
    t_wait = time.perf_counter()
    await wait_until(
        lambda: sees(joiner, host.home.device_id),
        SEE_TIMEOUT_S,
        "the joiner to see the host",
        step=POLL_S,
    )
    t0 = time.perf_counter()
    pin = (await host.trust.pair_window({"timeout": 30}))["pin"]
    t1 = time.perf_counter()
    result = await asyncio.wait_for(
        joiner.trust.pair_join({"device": host.home.device_id, "pin": pin}), JOIN_TIMEOUT_S
    )
    t2 = time.perf_counter()
    if result["device_id"] != host.home.device_id:
        raise BenchError(f"paired with {result['device_id']}, not the host")
    if not circle_of(host).is_member(joiner.home.device_id):
        raise BenchError("the host does not list the joiner after pairing")
    if not circle_of(joiner).is_member(host.home.device_id):
        raise BenchError("the joiner does not list the host after pairing")
    await wait_until(
        lambda: detailed(host, joiner) and detailed(joiner, host),
        DETAILS_TIMEOUT_S,
        "both sides to hold each other's details",
        step=POLL_S,
    )
    t3 = time.perf_counter()
    return {
        "wait_seen_ms": (t0 - t_wait) * 1000,
        "window_ms": (t1 - t0) * 1000,
        "join_ms": (t2 - t1) * 1000,
        "total_ms": (t2 - t0) * 1000,
        "details_ms": (t3 - t1) * 1000,
    }


# -- 1. pairing ------------------------------------------------------------------

PAIR_ROWS: list[tuple[str, str, float | None]] = [
    ("join_ms", "pair_join (joiner: call -> return)", PAIR_TARGET_MS),
    ("total_ms", "pair_window + pair_join", PAIR_TARGET_MS),
    ("window_ms", "pair_window alone (host)", None),
    ("details_ms", "pair_join call -> details both ways", None),
    ("start_ms", "joiner Node start (start -> running)", None),
    ("wait_seen_ms", "running -> joiner sees host online", None),
]


@dataclass
class PairingResult:
    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    circle_members: int = 0


async def bench_pairing(root: Path, trials: int, console: Console) -> PairingResult:
    res = PairingResult()
    host = await start_node(root, "host", "laptop", ())
    try:
        for i in range(trials):
            joiner: Node | None = None
            try:
                t_start = time.perf_counter()
                profile = JOINER_PROFILES[i % len(JOINER_PROFILES)]
                joiner = await start_node(root, f"j{i}", profile, (node_endpoint(host),))
                start_ms = (time.perf_counter() - t_start) * 1000
                timings = await pair(host, joiner)
                timings["start_ms"] = start_ms
                for key, ms in timings.items():
                    res.samples.setdefault(key, []).append(round(ms, 3))
            except (AccordError, BenchError, TimeoutError) as exc:
                res.failures.append(f"trial {i}: {type(exc).__name__}: {exc}")
                console.print(f"[yellow]pairing trial {i} failed: {exc}")
            finally:
                if joiner is not None:
                    await joiner.stop()
        res.circle_members = len(circle_of(host).members.active())
    finally:
        await host.stop()
    joins = res.samples.get("join_ms", [])
    if joins:
        console.print(
            f"pairing: {len(joins)}/{trials} ok, join p50 {statistics.median(joins):.0f} ms",
            highlight=False,
        )
    return res


# -- raw Zenoh sessions -------------------------------------------------------------


@dataclass
class Sessions:
    a: zenoh.Session
    b: zenoh.Session


def open_sessions() -> Sessions:
    """Session B listens; A listens too and connects to B. Blocks until connected."""
    ep_a, ep_b = endpoint(free_port()), endpoint(free_port())
    b = zenoh.open(zenoh_config(BusSettings(listen=(ep_b,), multicast=False)))
    try:
        a = zenoh.open(zenoh_config(BusSettings(listen=(ep_a,), connect=(ep_b,), multicast=False)))
    except BaseException:
        b.close()  # type: ignore[no-untyped-call]
        raise
    sessions = Sessions(a, b)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    zid_b = str(b.zid())
    while zid_b not in {str(z) for z in a.info.peers_zid()}:
        if time.monotonic() > deadline:
            close_sessions(sessions)
            raise BenchError("the two raw Zenoh sessions did not connect")
        time.sleep(0.01)
    return sessions


def close_sessions(sessions: Sessions) -> None:
    for session in (sessions.a, sessions.b):
        with contextlib.suppress(zenoh.ZError):
            session.close()  # type: ignore[no-untyped-call]


# -- 2. pub/sub throughput -------------------------------------------------------------


class Receiver:
    """The subscriber callback (on a Zenoh thread): count, and open if sealed."""

    def __init__(self, key: str, n: int, opener: Circle | None, sender: str) -> None:
        self.key = key
        self.n = n
        self.opener = opener
        self.sender = sender
        self.count = 0
        self.bad = 0  # frames that did not open (or opened as another sender)
        self.errors: list[str] = []
        self.t_last = 0.0
        self.done = threading.Event()
        self.ready = threading.Event()

    def __call__(self, sample: zenoh.Sample) -> None:
        try:
            key = str(sample.key_expr)
            data = sample.payload.to_bytes()
            if key != self.key:
                return
            if len(data) == len(PROBE):
                self.ready.set()
                return
            if self.opener is not None:
                try:
                    sender, _plain = self.opener.open(key, data)
                    if sender != self.sender:
                        self.bad += 1
                except AccordError:
                    self.bad += 1
            self.count += 1
            if self.count >= self.n:
                self.t_last = time.perf_counter()
                self.done.set()
        except Exception as exc:  # Zenoh would swallow it
            if len(self.errors) < 10:
                self.errors.append("".join(traceback.format_exception_only(exc)).strip())


def wait_ready(pub: zenoh.Publisher, receiver: Receiver) -> float:
    """Wait until the publisher matches and a probe gets through; ms from match."""
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while not pub.matching_status:
        if time.monotonic() > deadline:
            raise BenchError("the publisher never matched the subscriber")
        time.sleep(0.002)
    matched = time.perf_counter()
    while not receiver.ready.is_set():
        if time.monotonic() > deadline:
            raise BenchError("no probe reached the subscriber")
        pub.put(PROBE)
        receiver.ready.wait(0.001)
    return (time.perf_counter() - matched) * 1000


def throughput_run(
    s: Sessions,
    key: str,
    payload: bytes,
    n: int,
    seal: Circle | None,
    opener: Circle | None,
    sender: str,
) -> dict[str, Any]:
    """Publish ``n`` messages on ``key`` as fast as possible; time until all arrived."""
    receiver = Receiver(key, n, opener, sender)
    sub = s.b.declare_subscriber(key, receiver)
    try:
        pub = s.a.declare_publisher(key, congestion_control=zenoh.CongestionControl.BLOCK)
        try:
            probe_ms = wait_ready(pub, receiver)
            c0 = time.process_time()
            t0 = time.perf_counter()
            if seal is None:
                for _ in range(n):
                    pub.put(payload)
            else:
                for _ in range(n):
                    pub.put(seal.seal(key, payload))
            t_put = time.perf_counter()
            complete = receiver.done.wait(DELIVERY_DEADLINE_S)
            t_end = receiver.t_last if complete else time.perf_counter()
            cpu = time.process_time() - c0
        finally:
            pub.undeclare()  # type: ignore[no-untyped-call]
    finally:
        sub.undeclare()  # type: ignore[no-untyped-call]
    elapsed = t_end - t0
    received = receiver.count
    return {
        "received": received,
        "lost": n - received,
        "bad": receiver.bad,
        "errors": receiver.errors,
        "seconds": round(elapsed, 6),
        "publish_seconds": round(t_put - t0, 6),
        "cpu_us_per_msg": round(cpu / n * 1e6, 2),
        "probe_ms": round(probe_ms, 3),
        "msgs_per_s": round(received / elapsed, 1) if elapsed > 0 else 0.0,
        "mb_per_s": round(received * len(payload) / elapsed / 1e6, 3) if elapsed > 0 else 0.0,
    }


@dataclass
class Pair:
    circle_a: Circle
    circle_b: Circle
    id_a: str
    id_b: str


def seal_open_alone(peers: Pair, size: int, n: int, repeats: int = 3) -> float:
    """µs per ``circle_a.seal`` + ``circle_b.open`` in a tight loop, without Zenoh: the
    floor of what sealing adds per message (p50 over repeats)."""
    key = f"{KEY_PREFIX}/alone/{size}"
    payload = os.urandom(size)
    seal, open_ = peers.circle_a.seal, peers.circle_b.open
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            open_(key, seal(key, payload))
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def bench_throughput(
    s: Sessions, peers: Pair, params: Params, console: Console
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        payload = os.urandom(size)
        alone_us = seal_open_alone(peers, size, min(params.messages, 20000))
        runs: dict[str, list[dict[str, Any]]] = {"raw": [], "sealed": []}
        # One short warm-up of each, then raw and sealed alternate run by run.
        for run in range(-1, params.runs):
            n = max(100, params.messages // 10) if run < 0 else params.messages
            for variant in ("raw", "sealed") if run % 2 == 0 else ("sealed", "raw"):
                key = f"{KEY_PREFIX}/thr/{size}/{variant}/{run + 1}"
                is_sealed = variant == "sealed"
                result = throughput_run(
                    s,
                    key,
                    payload,
                    n,
                    peers.circle_a if is_sealed else None,
                    peers.circle_b if is_sealed else None,
                    peers.id_a,
                )
                if result["lost"] or result["bad"] or result["errors"]:
                    console.print(
                        f"[yellow]{size} B {variant} run {run}: lost {result['lost']}, "
                        f"bad {result['bad']}, errors {result['errors'][:2]}"
                    )
                if run >= 0:
                    runs[variant].append(result)
        for variant, results in runs.items():
            rates = [r["msgs_per_s"] for r in results]
            rows.append(
                {
                    "size": size,
                    "variant": variant,
                    "messages_per_run": params.messages,
                    "msgs_per_s_p50": round(statistics.median(rates), 1),
                    "msgs_per_s_min": round(min(rates), 1),
                    "msgs_per_s_max": round(max(rates), 1),
                    "mb_per_s_p50": round(statistics.median(r["mb_per_s"] for r in results), 3),
                    "cpu_us_per_msg_p50": round(
                        statistics.median(r["cpu_us_per_msg"] for r in results), 2
                    ),
                    "lost": sum(r["lost"] for r in results),
                    "bad": sum(r["bad"] for r in results),
                    "callback_errors": sum(len(r["errors"]) for r in results),
                    "seal_open_alone_us": round(alone_us, 2) if variant == "sealed" else None,
                    "runs": results,
                }
            )
        raw = next(r for r in rows if r["size"] == size and r["variant"] == "raw")
        sealed = next(r for r in rows if r["size"] == size and r["variant"] == "sealed")
        console.print(
            f"throughput {size} B: raw {raw['msgs_per_s_p50']:,.0f} msg/s, "
            f"sealed {sealed['msgs_per_s_p50']:,.0f} msg/s",
            highlight=False,
        )
    return rows


# -- 3. query round trip -----------------------------------------------------------------


class Responder:
    """The queryable callback (on a Zenoh thread): echo, or open and seal back."""

    def __init__(self, key: str, circle: Circle | None) -> None:
        self.key = key
        self.circle = circle
        self.errors: list[str] = []
        self.failed = 0

    def __call__(self, query: zenoh.Query) -> None:
        try:
            data = query.payload.to_bytes() if query.payload is not None else b""
            if self.circle is None:
                query.reply(self.key, data)
            else:
                _sender, plain = self.circle.open(self.key, data)
                query.reply(self.key, self.circle.seal(self.key, plain))
        except Exception as exc:  # Zenoh would swallow it
            self.failed += 1
            if len(self.errors) < 10:
                self.errors.append("".join(traceback.format_exception_only(exc)).strip())
        finally:
            query.drop()  # type: ignore[no-untyped-call]


def one_query(s: Sessions, key: str, payload: bytes, circle: Circle | None) -> float | None:
    """One round trip in µs, the sealing and opening included; None if it failed."""
    t0 = time.perf_counter()
    request = payload if circle is None else circle.seal(key, payload)
    got: bytes | None = None
    try:
        for reply in s.a.get(key, payload=request, timeout=QUERY_TIMEOUT_S):
            ok = reply.ok
            if ok is None:
                continue
            data = ok.payload.to_bytes()
            got = data if circle is None else circle.open(key, data)[1]
    except (AccordError, zenoh.ZError):
        return None
    t1 = time.perf_counter()
    return (t1 - t0) * 1e6 if got == payload else None


def bench_rtt(s: Sessions, peers: Pair, params: Params, console: Console) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in params.query_sizes:
        payload = os.urandom(size)
        keys = {v: f"{KEY_PREFIX}/rpc/{size}/{v}" for v in ("raw", "sealed")}
        responders = {
            "raw": Responder(keys["raw"], None),
            "sealed": Responder(keys["sealed"], peers.circle_b),
        }
        circles: dict[str, Circle | None] = {"raw": None, "sealed": peers.circle_a}
        queryables = [s.b.declare_queryable(keys[v], responders[v]) for v in responders]
        samples: dict[str, list[float]] = {"raw": [], "sealed": []}
        failed = {"raw": 0, "sealed": 0}
        try:
            for variant in ("raw", "sealed"):  # warm-up, and wait until the queryable is known
                deadline = time.monotonic() + MATCH_TIMEOUT_S
                while one_query(s, keys[variant], payload, circles[variant]) is None:
                    if time.monotonic() > deadline:
                        raise BenchError(f"no reply on {keys[variant]}")
                for _ in range(min(50, params.queries // 4)):
                    one_query(s, keys[variant], payload, circles[variant])
            block = 0
            while len(samples["sealed"]) + failed["sealed"] < params.queries:
                order = ("raw", "sealed") if block % 2 == 0 else ("sealed", "raw")
                for variant in order:
                    todo = params.queries - len(samples[variant]) - failed[variant]
                    for _ in range(min(QUERY_BLOCK, todo)):
                        us = one_query(s, keys[variant], payload, circles[variant])
                        if us is None:
                            failed[variant] += 1
                        else:
                            samples[variant].append(round(us, 2))
                block += 1
        finally:
            for q in queryables:
                q.undeclare()  # type: ignore[no-untyped-call]
        for variant in ("raw", "sealed"):
            vals = samples[variant]
            if failed[variant] or responders[variant].errors:
                console.print(
                    f"[yellow]rtt {size} B {variant}: {failed[variant]} failed, "
                    f"responder errors {responders[variant].errors[:2]}"
                )
            rows.append(
                {
                    "size": size,
                    "variant": variant,
                    "n": len(vals),
                    "failed": failed[variant],
                    "responder_errors": responders[variant].errors,
                    **summary_us(vals),
                    "samples_us": vals,
                }
            )
        raw = rows[-2]
        sealed = rows[-1]
        if raw["p50_us"] and sealed["p50_us"]:
            console.print(
                f"rtt {size} B: raw p50 {raw['p50_us']:.0f} µs, sealed p50 "
                f"{sealed['p50_us']:.0f} µs ({sealed['p50_us'] / raw['p50_us']:.2f}x)",
                highlight=False,
            )
    return rows


# -- parts 2 and 3 together: two paired nodes, two raw sessions -------------------------------


async def bench_wire(
    root: Path, params: Params, console: Console
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    node_a = await start_node(root, "a", "laptop", ())
    try:
        node_b = await start_node(root, "b", "tablet", (node_endpoint(node_a),))
        try:
            timings = await pair(node_a, node_b)  # waits until details went both ways
            peers = Pair(
                circle_of(node_a), circle_of(node_b), node_a.home.device_id, node_b.home.device_id
            )
            info = {
                "circle_members": len(peers.circle_a.members.active()),
                "pair_join_ms": round(timings["join_ms"], 3),
            }
            # The nodes stay up and their loop keeps running; after pairing they are idle,
            # so the circles are only used here (a Circle is not thread-safe).
            sessions = await loop.run_in_executor(None, open_sessions)
            try:
                thr = await loop.run_in_executor(
                    None, bench_throughput, sessions, peers, params, console
                )
                rtt = await loop.run_in_executor(None, bench_rtt, sessions, peers, params, console)
            finally:
                await loop.run_in_executor(None, close_sessions, sessions)
        finally:
            await node_b.stop()
    finally:
        await node_a.stop()
    return thr, rtt, info


# -- report --------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def pairing_table(res: PairingResult, trials: int) -> Table:
    table = new_table(
        f"Pairing: host + {trials} fresh joiners on 127.0.0.1 (ms)",
        ("measurement", "n", "p50", "max", "min", "target", "max within"),
        left=("measurement",),
        center=("max within",),
    )
    for key, label, target in PAIR_ROWS:
        vals = res.samples.get(key, [])
        p50 = statistics.median(vals) if vals else None
        mx = max(vals) if vals else None
        met = "-"
        if target is not None and mx is not None:
            met = verdict(mx <= target and not res.failures)
        table.add_row(
            label,
            f"{len(vals)}/{trials}",
            fmt_ms(p50),
            fmt_ms(mx),
            fmt_ms(min(vals) if vals else None),
            fmt_ms(target),
            met,
        )
    return table


def throughput_table(rows: list[dict[str, Any]], params: Params) -> Table:
    cols = ("payload", "variant", "msg/s", "MB/s", "CPU µs/msg", "lost", "sealed/raw")
    table = new_table(
        f"Pub/sub throughput over TCP loopback: {params.messages:,} messages x "
        f"{params.runs} runs (p50 over runs; MB/s of payload, 1 MB = 10^6 B)",
        (*cols, "seal+open alone µs"),
    )
    for size in SIZES:
        raw = next(r for r in rows if r["size"] == size and r["variant"] == "raw")
        for r in (raw, next(r for r in rows if r["size"] == size and r["variant"] == "sealed")):
            ratio = r["msgs_per_s_p50"] / raw["msgs_per_s_p50"] if raw["msgs_per_s_p50"] else 0
            lost = f"{r['lost']}" + (f" ({r['bad']} bad)" if r["bad"] else "")
            table.add_row(
                f"{size} B",
                r["variant"],
                f"{r['msgs_per_s_p50']:,.0f}",
                f"{r['mb_per_s_p50']:.2f}",
                f"{r['cpu_us_per_msg_p50']:.1f}",
                lost,
                "-" if r is raw else f"{ratio:.2f}x",
                "-" if r is raw else f"{r['seal_open_alone_us']:.1f}",
            )
    return table


def rtt_table(rows: list[dict[str, Any]], params: Params) -> Table:
    table = new_table(
        f"Query round trip: {params.queries:,} sequential queries each (µs)",
        (
            "payload",
            "raw p50",
            "raw p99",
            "sealed p50",
            "sealed p99",
            "added p50",
            "sealed/raw p50",
            "goal",
        ),
    )
    for size in params.query_sizes:
        raw = next(r for r in rows if r["size"] == size and r["variant"] == "raw")
        sealed = next(r for r in rows if r["size"] == size and r["variant"] == "sealed")
        if not raw["p50_us"] or not sealed["p50_us"]:
            table.add_row(f"{size} B", *["-"] * 7)
            continue
        ratio = sealed["p50_us"] / raw["p50_us"]
        colour = "green" if ratio <= RTT_GOAL_RATIO else "red"
        table.add_row(
            f"{size} B",
            f"{raw['p50_us']:.0f}",
            f"{raw['p99_us']:.0f}",
            f"{sealed['p50_us']:.0f}",
            f"{sealed['p99_us']:.0f}",
            f"{sealed['p50_us'] - raw['p50_us']:.0f}",
            f"[{colour}]{ratio:.2f}x",
            f"≤ {RTT_GOAL_RATIO:g}x",
        )
    return table


def rtt_ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for size in {r["size"] for r in rows}:
        raw = next(r for r in rows if r["size"] == size and r["variant"] == "raw")
        sealed = next(r for r in rows if r["size"] == size and r["variant"] == "sealed")
        ok = raw["p50_us"] and sealed["p50_us"]
        out[str(size)] = round(sealed["p50_us"] / raw["p50_us"], 3) if ok else None
    return out


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = BenchParser("trust", __doc__)
    parser.count("--pairings", "pairing trials", 20, 5)
    parser.count("--messages", "per throughput run", 50000, 5000)
    parser.count("--runs", "throughput runs per case", 5, 3)
    parser.count("--queries", "per payload and variant", 2000, 300)
    parser.add_argument("--quick", action="store_true", help="smoke test: 5 pairings, 300 queries")
    parser.add_argument("--json-out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse(argv)
    if parser.smallest_count(args) < 1:
        parser.error("every count must be at least 1")
    return args


async def run(args: argparse.Namespace, console: Console, root: Path) -> int:
    began = time.monotonic()
    params = Params(args.pairings, args.messages, args.runs, args.queries)
    info = machine("cryptography")
    console.print(
        f"trust benchmark: {params.pairings} pairings, {params.messages:,} messages x "
        f"{params.runs} runs, {params.queries:,} queries; {info['cpu_count']} CPUs, "
        f"zenoh {info['zenoh']}",
        highlight=False,
    )
    pairing = await bench_pairing(root / "pairing", params.pairings, console)
    t_pairing = time.monotonic() - began
    thr, rtt, wire_info = await bench_wire(root / "wire", params, console)
    seconds = time.monotonic() - began
    console.print(pairing_table(pairing, params.pairings))
    console.print(throughput_table(thr, params))
    console.print(rtt_table(rtt, params))
    thr_ratio = {}
    for size in SIZES:
        raw = next(r for r in thr if r["size"] == size and r["variant"] == "raw")
        sealed = next(r for r in thr if r["size"] == size and r["variant"] == "sealed")
        thr_ratio[str(size)] = (
            round(sealed["msgs_per_s_p50"] / raw["msgs_per_s_p50"], 3)
            if raw["msgs_per_s_p50"]
            else None
        )
    data = {
        **result_header("trust", info, args.argv),
        "parameters": params.as_json(),
        "targets": {
            "pair_join_ms": PAIR_TARGET_MS,
            "rtt_sealed_over_raw_p50": RTT_GOAL_RATIO,
            "openharmony_bind_estimate_s": list(OPENHARMONY_ESTIMATE_S),
        },
        "total_seconds": round(seconds, 1),
        "pairing": {
            "seconds": round(t_pairing, 1),
            "failures": pairing.failures,
            "host_circle_members_after": pairing.circle_members,
            "metrics": {
                key: {**summary_ms(pairing.samples.get(key, [])), "label": label}
                for key, label, _target in PAIR_ROWS
            },
            "samples_ms": pairing.samples,
        },
        "wire": wire_info,
        "throughput": {"sealed_over_raw_msgs_p50": thr_ratio, "rows": thr},
        "rtt": {"sealed_over_raw_p50": rtt_ratios(rtt), "rows": rtt},
    }
    write_results(args.json_out, data, console, seconds)
    lost = any(r["lost"] or r["bad"] or r["callback_errors"] for r in thr)
    failed = any(r["failed"] or r["responder_errors"] for r in rtt)
    return 1 if pairing.failures or lost or failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda console, root: run(args, console, root), prefix="acctrust-", width=140)


if __name__ == "__main__":
    sys.exit(main())
