"""RPC benchmark: sealed Accord calls and streams vs raw Zenoh and gRPC, callee in another process.

Every contender's callee runs in its own child process (``rpc.py --serve KIND``) on
127.0.0.1; the caller is this process. Every Zenoh session (Accord's and the raw
floor's) is built with ``zenoh_config(BusSettings(listen=..., connect=...,
multicast=False))``: shared memory off and multicast scouting off, so every byte
crosses the TCP socket. In one run:

1. **Unary round trip**, a 64-byte echo, sequential and with 16 concurrent callers:

   - ``accord``: ``node.rpc.call(callee, "bench", "echo", Echo(data), Echo)`` between
     two paired Nodes (sealed request and reply, msgpack, the callee's handler task);
   - ``zenoh`` (the floor): a blocking ``session.get`` (default consolidation, as
     ``Bus.get``) against a queryable that replies on Zenoh's own thread; concurrent
     callers are threads;
   - ``bus`` (a diagnostic between the two): ``accord.bus.Bus.get`` against
     ``Bus.serve``, unsealed, on the raw sessions: only the hand-offs between Zenoh's
     threads and asyncio on both sides;
   - ``grpc``: grpc.aio on both sides, a generic handler with bytes in and out (no
     serializers); concurrent callers are asyncio tasks on one channel.

   Contenders alternate in rounds so that all see the same machine.
2. **Stream throughput**: 64 MiB in 256 KiB items. ``accord``: ``node.rpc.stream``
   with its credit window. The floor is what Accord's streams stand on: one Zenoh query
   answered by many replies (``ConsolidationMode.NONE``), counted in a callback.
   ``bus`` is ``Bus.query`` against ``Bus.serve_query``; ``grpc`` a server-streaming
   call. Usage::

    .venv/bin/python benchmarks/rpc.py [--json-out PATH]
    .venv/bin/python benchmarks/rpc.py --quick      # fewer calls, 8 MiB streams
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import msgspec
import psutil
import zenoh
from rich.console import Console
from rich.table import Table

from accord.bus.session import Bus, Replier
from accord.bus.settings import BusSettings, zenoh_config
from accord.device.home import init_home
from accord.errors import AccordError
from accord.node import Node
from accord.rpc.messages import DEFAULT_WINDOW, MAX_WINDOW
from accord.sim.household import die_with_parent, free_port
from common import (
    BenchError,
    BenchParser,
    endpoint,
    fmt,
    fmt_x,
    log_tail,
    machine,
    new_table,
    ratio,
    result_header,
    run_main,
    sees,
    signal_group,
    summary_us,
    wait_until,
    write_results,
)

SCRIPT = str(Path(__file__).resolve())

GOAL_RATIO = 1.3  # sealed RPC p50 within 1.3x of raw Zenoh's query round trip
PAYLOAD = 64  # bytes echoed by every unary call
CONCURRENCY = 16
ITEM = 256 * 1024  # bytes per stream item
MIB = 1024 * 1024

SERVICE = "bench"
KEY_ECHO = "bench/rpc/echo"
KEY_BLOB = "bench/rpc/blob"
KEY_BUS_ECHO = "bench/bus/echo"
KEY_BUS_BLOB = "bench/bus/blob"
GRPC_ECHO = "/bench.Bench/Echo"
GRPC_BLOB = "/bench.Bench/Blob"
BLOB_REQUEST = struct.Struct("<II")  # item count, item size

CALL_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0  # a child's cold start on a loaded 2-core machine
CONNECT_TIMEOUT_S = 10.0
PAIR_TIMEOUT_S = 15.0
PAIR_WINDOW_S = 120
STOP_TIMEOUT_S = 5.0
CHILD_MAX_LIFE_S = 900.0  # children end on their own even if everything else fails

UNARY = ("accord", "zenoh", "bus", "grpc")
STREAMS = ("accord", "zenoh", "bus", "grpc")
LABELS = {
    "accord": "Accord sealed RPC",
    "zenoh": "raw Zenoh (floor)",
    "bus": "accord.bus, unsealed",
    "grpc": "gRPC (grpc.aio)",
}


class Echo(msgspec.Struct, frozen=True):
    data: bytes


class Blob(msgspec.Struct, frozen=True):
    count: int
    size: int


def blob_of(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def settings_for(listen: str, connect: list[str]) -> BusSettings:
    return BusSettings(listen=(listen,), connect=tuple(connect), multicast=False)


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# -- the callees (child processes) -------------------------------------------------


def ready(info: dict[str, Any]) -> None:
    """Tell the parent the callee is serving: one JSON line, the only stdout output."""
    sys.stdout.write(json.dumps({"pid": os.getpid(), **info}) + "\n")
    sys.stdout.flush()


async def until_stopped(max_life: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_life)


async def serve_accord(spec: dict[str, Any]) -> None:
    home = init_home(Path(spec["home"]), profile_name="laptop", name="callee")
    blobs: dict[int, bytes] = {}

    async def echo(params: Echo, _caller: str) -> Echo:
        return params

    async def blob(params: Blob, _caller: str) -> AsyncIterator[bytes]:
        data = blobs.setdefault(params.size, blob_of(params.size))
        for _ in range(params.count):
            yield data

    async with Node(home, settings_for(spec["listen"], spec["connect"])) as node:
        node.services.register(SERVICE, "echo", echo, Echo)
        node.services.register_stream(SERVICE, "blob", blob, Blob)
        pin = (await node.trust.pair_window({"timeout": PAIR_WINDOW_S}))["pin"]
        ready({"device_id": node.home.device_id, "pin": pin})
        await until_stopped(spec["max_life"])


async def serve_zenoh(spec: dict[str, Any]) -> None:
    """Raw queryables that reply on Zenoh's thread (the floor), and the same two
    services through ``accord.bus.Bus`` (hand-off to asyncio, unsealed)."""
    loop = asyncio.get_running_loop()
    conf = zenoh_config(settings_for(spec["listen"], spec["connect"]))
    session = await loop.run_in_executor(None, zenoh.open, conf)
    bus = Bus(session, loop, "zenoh-callee")
    blobs: dict[int, bytes] = {}
    log = logging.getLogger("rpc.callee")

    def echo(query: zenoh.Query) -> None:
        try:
            payload = query.payload.to_bytes() if query.payload is not None else b""
            query.reply(KEY_ECHO, payload)
        except Exception:
            log.exception("echo failed")
        finally:
            query.drop()  # type: ignore[no-untyped-call]

    def blob(query: zenoh.Query) -> None:
        try:
            count, size = BLOB_REQUEST.unpack(query.payload.to_bytes() if query.payload else b"")
            data = blobs.setdefault(size, blob_of(size))
            for _ in range(count):
                query.reply(KEY_BLOB, data)
        except Exception:
            log.exception("blob failed")
        finally:
            query.drop()  # type: ignore[no-untyped-call]

    async def bus_echo(_key: str, payload: bytes) -> bytes | None:
        return payload

    async def bus_blob(_key: str, payload: bytes, reply: Replier) -> None:
        count, size = BLOB_REQUEST.unpack(payload)
        data = blobs.setdefault(size, blob_of(size))
        for _ in range(count):
            await reply(data)

    queryables = [
        session.declare_queryable(k, cb) for k, cb in ((KEY_ECHO, echo), (KEY_BLOB, blob))
    ]
    undo = [bus.serve(KEY_BUS_ECHO, bus_echo), bus.serve_query(KEY_BUS_BLOB, bus_blob)]
    try:
        ready({"zid": bus.zid})
        await until_stopped(spec["max_life"])
    finally:
        for u in undo:
            u()
        for q in queryables:
            with contextlib.suppress(zenoh.ZError):
                q.undeclare()  # type: ignore[no-untyped-call]
        await bus.close()


async def serve_grpc(spec: dict[str, Any]) -> None:
    blobs: dict[int, bytes] = {}

    async def echo(request: bytes, _context: Any) -> bytes:
        return request

    async def blob(request: bytes, _context: Any) -> AsyncIterator[bytes]:
        count, size = BLOB_REQUEST.unpack(request)
        data = blobs.setdefault(size, blob_of(size))
        for _ in range(count):
            yield data

    handler = grpc.method_handlers_generic_handler(
        "bench.Bench",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Blob": grpc.unary_stream_rpc_method_handler(blob),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{spec['port']}")
    await server.start()
    try:
        ready({"port": port})
        await until_stopped(spec["max_life"])
    finally:
        await server.stop(0.5)


SERVERS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, None]]] = {
    "accord": serve_accord,
    "zenoh": serve_zenoh,
    "grpc": serve_grpc,
}


def serve(kind: str, spec_json: str) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(SERVERS[kind](json.loads(spec_json)))
    return 0


# -- spawning and stopping the callees ------------------------------------------------


@dataclass
class Child:
    kind: str
    proc: asyncio.subprocess.Process
    log: Path
    spec: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def cpu_s(self) -> float:
        """The callee's CPU time so far (user + system, every thread)."""
        try:
            times = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)


async def spawn(kind: str, spec: dict[str, Any], log: Path, children: list[Child]) -> Child:
    """Start ``rpc.py --serve KIND`` and wait for its ready line. The child is added to
    ``children`` at once, so that it is stopped whatever happens next."""
    cmd = [sys.executable, SCRIPT, "--serve", kind, "--spec"]
    cmd.append(json.dumps({**spec, "max_life": CHILD_MAX_LIFE_S}))
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # Ctrl-C reaches the benchmark only; it stops them
            preexec_fn=die_with_parent(),
        )
    child = Child(kind, proc, log, spec)
    children.append(child)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
    except TimeoutError:
        raise BenchError(f"the {kind} callee was not ready in {READY_TIMEOUT_S:g} s") from None
    if not line:
        raise BenchError(f"the {kind} callee exited at start:\n{log_tail(log)}")
    child.info = json.loads(line)
    return child


async def stop_child(child: Child) -> int | None:
    """SIGTERM (the callee closes its session), then SIGKILL after a while."""
    proc = child.proc
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode


# -- the callers (this process) ------------------------------------------------------------


class Contender:
    """One way of making the echo call and pulling the stream."""

    name = ""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.payload = os.urandom(PAYLOAD)

    async def one(self) -> bool:
        """One echo round trip; True if the echo came back intact."""
        raise NotImplementedError

    async def timed(self) -> float | None:
        t0 = time.perf_counter()
        try:
            ok = await self.one()
        except (AccordError, grpc.RpcError, TimeoutError):
            return None
        return (time.perf_counter() - t0) * 1e6 if ok else None

    async def sequential(self, n: int) -> list[float | None]:
        return [await self.timed() for _ in range(n)]

    async def concurrent(self, n: int, callers: int) -> list[float | None]:
        async def worker(count: int) -> list[float | None]:
            return [await self.timed() for _ in range(count)]

        parts = await asyncio.gather(*(worker(k) for k in split(n, callers)))
        return [x for part in parts for x in part]

    async def stream(self, count: int, size: int) -> int:
        """Pull ``count`` items of ``size`` bytes; the bytes received."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class AccordContender(Contender):
    name = "accord"

    def __init__(self, child: Child, node: Node, window: int) -> None:
        super().__init__(child)
        self.node = node
        self.device = str(child.info["device_id"])
        self.msg = Echo(self.payload)
        self.window = window

    async def one(self) -> bool:
        got = await self.node.rpc.call(
            self.device, SERVICE, "echo", self.msg, Echo, timeout=CALL_TIMEOUT_S
        )
        return got.data == self.payload

    async def stream(self, count: int, size: int) -> int:
        total = 0
        items = self.node.rpc.stream(
            self.device,
            SERVICE,
            "blob",
            Blob(count, size),
            bytes,
            timeout=CALL_TIMEOUT_S,
            window=self.window,
            max_duration=STREAM_TIMEOUT_S,
        )
        async for item in items:
            total += len(item)
        return total


class ZenohContender(Contender):
    """The floor, with zenoh-python's defaults and no asyncio on the path: a blocking
    ``get`` per call (concurrent callers are threads), a callback for the stream."""

    name = "zenoh"

    def __init__(self, child: Child, session: zenoh.Session) -> None:
        super().__init__(child)
        self.session = session

    def one_sync(self) -> float | None:
        t0 = time.perf_counter()
        got: bytes | None = None
        try:
            for reply in self.session.get(KEY_ECHO, payload=self.payload, timeout=CALL_TIMEOUT_S):
                ok = reply.ok
                if ok is not None:
                    got = ok.payload.to_bytes()
        except zenoh.ZError:
            return None
        return (time.perf_counter() - t0) * 1e6 if got == self.payload else None

    def run_threads(self, n: int, callers: int) -> list[float | None]:
        results: list[list[float | None]] = [[] for _ in range(callers)]

        def worker(slot: int, count: int) -> None:
            results[slot] = [self.one_sync() for _ in range(count)]

        threads = [
            threading.Thread(target=worker, args=(i, k), name=f"rpc-bench-{i}")
            for i, k in enumerate(split(n, callers))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [x for part in results for x in part]

    async def sequential(self, n: int) -> list[float | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: [self.one_sync() for _ in range(n)])

    async def concurrent(self, n: int, callers: int) -> list[float | None]:
        return await asyncio.get_running_loop().run_in_executor(None, self.run_threads, n, callers)

    def stream_sync(self, count: int, size: int) -> int:
        got = 0
        done = threading.Event()

        def on_reply(reply: zenoh.Reply) -> None:
            nonlocal got
            ok = reply.ok
            if ok is not None:
                got += len(ok.payload.to_bytes())  # what a consumer needs: the bytes

        self.session.get(
            KEY_BLOB,
            zenoh.handlers.Callback(on_reply, done.set),
            payload=BLOB_REQUEST.pack(count, size),
            consolidation=zenoh.ConsolidationMode.NONE,
            timeout=STREAM_TIMEOUT_S,
        )
        done.wait(STREAM_TIMEOUT_S + 5)
        return got

    async def stream(self, count: int, size: int) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.stream_sync, count, size)


class BusContender(Contender):
    """Accord's asyncio seam on the raw session, without RPC or sealing."""

    name = "bus"

    def __init__(self, child: Child, bus: Bus) -> None:
        super().__init__(child)
        self.bus = bus

    async def one(self) -> bool:
        replies = await self.bus.get(KEY_BUS_ECHO, CALL_TIMEOUT_S, payload=self.payload)
        return bool(replies) and replies[0][1] == self.payload

    async def stream(self, count: int, size: int) -> int:
        got = 0
        done = asyncio.Event()

        def on_reply(payload: bytes) -> None:
            nonlocal got
            got += len(payload)

        cancel = self.bus.query(
            KEY_BUS_BLOB, STREAM_TIMEOUT_S, BLOB_REQUEST.pack(count, size), on_reply, done.set
        )
        try:
            await asyncio.wait_for(done.wait(), STREAM_TIMEOUT_S + 5)
        finally:
            cancel()
        return got


class GrpcContender(Contender):
    name = "grpc"

    def __init__(self, child: Child) -> None:
        super().__init__(child)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{child.info['port']}")
        self.echo = self.channel.unary_unary(GRPC_ECHO)  # no serializers: bytes in and out
        self.blob = self.channel.unary_stream(GRPC_BLOB)

    async def one(self) -> bool:
        got = await self.echo(self.payload, timeout=CALL_TIMEOUT_S)
        return bool(got == self.payload)

    async def stream(self, count: int, size: int) -> int:
        total = 0
        async for item in self.blob(BLOB_REQUEST.pack(count, size), timeout=STREAM_TIMEOUT_S):
            total += len(item)
        return total

    async def close(self) -> None:
        await self.channel.close()


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Series:
    """Every sample of one contender in one mode, over all rounds."""

    latencies_us: list[float] = field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0
    caller_cpu_s: float = 0.0
    callee_cpu_s: float = 0.0

    def add(self, results: list[float | None], seconds: float, cpu: tuple[float, float]) -> None:
        self.latencies_us += [round(x, 1) for x in results if x is not None]
        self.failed += sum(1 for x in results if x is None)
        self.seconds += seconds
        self.caller_cpu_s += cpu[0]
        self.callee_cpu_s += cpu[1]

    def summary(self) -> dict[str, Any]:
        vals = self.latencies_us
        n = len(vals) + self.failed
        return {
            "n": n,
            "failed": self.failed,
            **summary_us(vals),
            "calls_per_s": round(len(vals) / self.seconds, 1) if self.seconds else None,
            "caller_cpu_us_per_call": round(self.caller_cpu_s / n * 1e6, 1) if n else None,
            "callee_cpu_us_per_call": round(self.callee_cpu_s / n * 1e6, 1) if n else None,
        }


async def measured(c: Contender, work: Awaitable[Any]) -> tuple[Any, float, tuple[float, float]]:
    """Await ``work`` (not started yet): its result, wall seconds, and the CPU seconds
    of caller and callee meanwhile."""
    cpu0, callee0 = time.process_time(), c.child.cpu_s()
    t0 = time.perf_counter()
    result = await work
    seconds = time.perf_counter() - t0
    return result, seconds, (time.process_time() - cpu0, c.child.cpu_s() - callee0)


async def wait_answering(c: Contender) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while (await c.sequential(1))[0] is None:
        if time.monotonic() > deadline:
            raise BenchError(f"{c.name}: no echo within {CONNECT_TIMEOUT_S:g} s")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Params:
    seq_calls: int
    conc_calls: int
    rounds: int
    warmup: int
    stream_mib: int
    stream_runs: int
    window: int
    item: int = ITEM  # bytes per stream item (--stream-item-kib)

    def as_json(self) -> dict[str, Any]:
        return {
            "payload_bytes": PAYLOAD,
            "sequential_calls": self.seq_calls,
            "concurrent_calls": self.conc_calls,
            "concurrency": CONCURRENCY,
            "rounds": self.rounds,
            "warmup_calls": self.warmup,
            "stream_mib": self.stream_mib,
            "stream_item_bytes": self.item,
            "stream_runs": self.stream_runs,
            "accord_window": self.window,
            "shared_memory": False,
            "multicast": False,
            "transport": "tcp/127.0.0.1",
            "raw_zenoh_unary": "blocking session.get, default consolidation (AUTO)",
            "raw_zenoh_stream": "one get, ConsolidationMode.NONE, callback handler",
            "grpc": "grpc.aio client and server, generic bytes handlers",
        }


async def bench_unary(
    contenders: list[Contender], p: Params, console: Console
) -> dict[str, dict[str, Series]]:
    out: dict[str, dict[str, Series]] = {
        c.name: {"seq": Series(), "conc": Series()} for c in contenders
    }
    for c in contenders:  # warm-up: connections, caches, the JIT-less interpreter's paths
        await c.sequential(p.warmup)
        await c.concurrent(max(p.warmup, CONCURRENCY * 4), CONCURRENCY)
    seq, conc = split(p.seq_calls, p.rounds), split(p.conc_calls, p.rounds)
    for r in range(p.rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            res, secs, cpu = await measured(c, c.sequential(seq[r]))
            out[c.name]["seq"].add(res, secs, cpu)
            res, secs, cpu = await measured(c, c.concurrent(conc[r], CONCURRENCY))
            out[c.name]["conc"].add(res, secs, cpu)
        console.print(f"unary round {r + 1}/{p.rounds} done", highlight=False)
    return out


@dataclass
class StreamRun:
    bytes: int
    seconds: float
    caller_cpu_s: float
    callee_cpu_s: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


async def bench_streams(
    contenders: list[Contender], p: Params, console: Console
) -> dict[str, list[StreamRun]]:
    count = p.stream_mib * MIB // p.item
    out: dict[str, list[StreamRun]] = {c.name: [] for c in contenders}
    for c in contenders:  # warm-up with a short transfer
        got = await c.stream(8, p.item)
        if got != 8 * p.item:
            raise BenchError(f"{c.name}: warm-up stream gave {got} of {8 * p.item} bytes")
    for r in range(p.stream_runs):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            got, secs, cpu = await measured(c, c.stream(count, p.item))
            out[c.name].append(StreamRun(got, secs, *cpu))
            if got != count * p.item:
                console.print(f"[yellow]{c.name}: stream gave {got} of {count * p.item} bytes")
        console.print(f"stream run {r + 1}/{p.stream_runs} done", highlight=False)
    return out


# -- setting up the contenders ---------------------------------------------------------------


async def open_session(settings: BusSettings, peer_zid: str) -> zenoh.Session:
    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(None, zenoh.open, zenoh_config(settings))
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while peer_zid not in {str(z) for z in session.info.peers_zid()}:
        if time.monotonic() > deadline:
            await loop.run_in_executor(None, session.close)
            raise BenchError("the raw Zenoh session did not connect to its callee")
        await asyncio.sleep(0.01)
    return session


class Setup:
    """The children and this side's sessions; ``close`` undoes whatever was done."""

    def __init__(self, root: Path, window: int) -> None:
        self.root = root
        self.window = window
        self.children: list[Child] = []
        self.node: Node | None = None
        self.bus: Bus | None = None
        self.contenders: dict[str, Contender] = {}
        self.exit_codes: dict[str, int | None] = {}
        self.pair_ms = 0.0

    async def start(self, kinds: set[str]) -> None:
        # Every child first, before this process has any Zenoh or gRPC threads to fork.
        ports = {k: free_port() for k in ("accord", "zenoh", "grpc")}
        spawned: dict[str, Child] = {}
        needed = {"zenoh" if k == "bus" else k for k in kinds}  # bus shares the zenoh callee
        for kind in ("accord", "zenoh", "grpc"):
            if kind not in needed:
                continue
            spec: dict[str, Any] = {"listen": endpoint(ports[kind]), "connect": []}
            if kind == "accord":
                spec["home"] = str(self.root / "callee")
            if kind == "grpc":
                spec = {"port": ports[kind]}
            spawned[kind] = await spawn(kind, spec, self.root / f"{kind}.log", self.children)
        if "accord" in spawned:
            await self._start_accord(spawned["accord"])
        if "zenoh" in spawned:
            await self._start_zenoh(spawned["zenoh"], kinds)
        if "grpc" in spawned:
            self.contenders["grpc"] = GrpcContender(spawned["grpc"])
        for c in self.contenders.values():
            await wait_answering(c)

    async def _start_accord(self, child: Child) -> None:
        home = init_home(self.root / "caller", profile_name="laptop", name="caller")
        settings = settings_for(endpoint(free_port()), [child.spec["listen"]])
        node = Node(home, settings)
        await node.start()  # stops what it started if it fails
        self.node = node
        callee = str(child.info["device_id"])
        await wait_until(lambda: sees(node, callee), PAIR_TIMEOUT_S, "the callee to be seen")
        t0 = time.perf_counter()
        await node.trust.pair_join({"device": callee, "pin": child.info["pin"]})
        self.pair_ms = (time.perf_counter() - t0) * 1000
        await wait_until(
            lambda: sees(node, callee, details=True), PAIR_TIMEOUT_S, "the callee's details"
        )
        self.contenders["accord"] = AccordContender(child, node, self.window)

    async def _start_zenoh(self, child: Child, kinds: set[str]) -> None:
        settings = settings_for(endpoint(free_port()), [child.spec["listen"]])
        session = await open_session(settings, str(child.info["zid"]))
        self.bus = Bus(session, asyncio.get_running_loop(), "caller")
        if "zenoh" in kinds:
            self.contenders["zenoh"] = ZenohContender(child, session)
        if "bus" in kinds:
            self.contenders["bus"] = BusContender(child, self.bus)

    async def close(self) -> None:
        for c in self.contenders.values():
            with contextlib.suppress(Exception):
                await c.close()
        if self.node is not None:
            await self.node.stop()
        if self.bus is not None:
            await self.bus.close()
        for child in self.children:
            self.exit_codes[child.kind] = await stop_child(child)


# -- report ---------------------------------------------------------------------------------


def unary_table(rows: dict[str, dict[str, dict[str, Any]]], p: Params) -> Table:
    cols = ("contender", "callers", "n", "fail", "p50", "p99", "calls/s")
    table = new_table(
        f"Unary {PAYLOAD} B echo, callee in another process: {p.seq_calls:,} sequential "
        f"and {p.conc_calls:,} calls by {CONCURRENCY} concurrent callers each (µs)",
        (*cols, "caller CPU/call", "callee CPU/call", "p50 / zenoh", "p50 / gRPC"),
        left=("contender",),
    )
    for name, modes in rows.items():
        for mode, s in modes.items():
            zenoh_p50 = rows.get("zenoh", {}).get(mode, {}).get("p50_us")
            grpc_p50 = rows.get("grpc", {}).get(mode, {}).get("p50_us")
            vs_zenoh = ratio(s["p50_us"], zenoh_p50, 3)
            shown = fmt_x(vs_zenoh)
            if name == "accord" and vs_zenoh:
                shown = f"[{'green' if vs_zenoh <= GOAL_RATIO else 'red'}]{shown}"
            vs_grpc = ratio(s["p50_us"], grpc_p50, 3)
            table.add_row(
                LABELS[name],
                "1" if mode == "seq" else str(CONCURRENCY),
                f"{s['n']:,}",
                str(s["failed"]),
                fmt(s["p50_us"]),
                fmt(s["p99_us"]),
                fmt(s["calls_per_s"]),
                fmt(s["caller_cpu_us_per_call"]),
                fmt(s["callee_cpu_us_per_call"]),
                shown,
                fmt_x(vs_grpc),
            )
    return table


def stream_rows(
    runs: dict[str, list[StreamRun]], count: int, item: int = ITEM
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        rates = [r.mb_per_s for r in rs]
        secs = sum(r.seconds for r in rs)
        out[name] = {
            "runs": len(rs),
            "complete": sum(1 for r in rs if r.bytes == count * item),
            "mb_per_s_p50": round(statistics.median(rates), 1) if rates else None,
            "mb_per_s_min": round(min(rates), 1) if rates else None,
            "mb_per_s_max": round(max(rates), 1) if rates else None,
            "caller_cpu_pct": round(sum(r.caller_cpu_s for r in rs) / secs * 100) if secs else None,
            "callee_cpu_pct": round(sum(r.callee_cpu_s for r in rs) / secs * 100) if secs else None,
            "runs_detail": [
                {
                    "bytes": r.bytes,
                    "seconds": round(r.seconds, 4),
                    "mb_per_s": round(r.mb_per_s, 1),
                    "caller_cpu_s": round(r.caller_cpu_s, 3),
                    "callee_cpu_s": round(r.callee_cpu_s, 3),
                }
                for r in rs
            ],
        }
    return out


def stream_table(rows: dict[str, dict[str, Any]], p: Params) -> Table:
    table = new_table(
        f"Stream: {p.stream_mib} MiB in {p.item // 1024} KiB items, {p.stream_runs} runs "
        f"(MB/s, 1 MB = 10^6 B; Accord window {p.window}; CPU: % of one core)",
        ("contender", "complete", "MB/s p50", "min", "max", "caller CPU", "callee CPU", "/ zenoh"),
        left=("contender",),
    )
    floor = rows.get("zenoh", {}).get("mb_per_s_p50")
    for name, r in rows.items():
        vs = ratio(r["mb_per_s_p50"], floor, 3)
        table.add_row(
            LABELS[name],
            f"{r['complete']}/{r['runs']}",
            fmt(r["mb_per_s_p50"]),
            fmt(r["mb_per_s_min"]),
            fmt(r["mb_per_s_max"]),
            f"{fmt(r['caller_cpu_pct'])}%",
            f"{fmt(r['callee_cpu_pct'])}%",
            fmt_x(vs),
        )
    return table


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = BenchParser("rpc", __doc__)
    parser.count("--seq-calls", "sequential calls", 4000, 400)
    parser.count("--conc-calls", "concurrent calls", 8000, 800)
    parser.count("--rounds", "rounds to alternate in", 5, 2)
    parser.count("--warmup", "warm-up calls", 300, 50)
    parser.count("--stream-mib", "MiB per stream", 64, 8)
    parser.count("--stream-runs", "runs per stream", 7, 2)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="Accord stream window")
    parser.add_argument(
        "--stream-item-kib", type=int, default=ITEM // 1024, help="KiB per stream item"
    )
    parser.add_argument("--only", choices=("unary", "stream"), help="run one part only")
    parser.add_argument(
        "--contenders", default=",".join(UNARY), help=f"comma-separated subset of {','.join(UNARY)}"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: few calls, 8 MiB")
    parser.add_argument("--json-out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    args = parser.parse(argv)
    if args.serve:
        return args
    if parser.smallest_count(args) < 1:
        parser.error("every count must be at least 1")
    if not 1 <= args.window <= MAX_WINDOW:
        parser.error(f"--window must be in [1, {MAX_WINDOW}]")
    args.contenders = [c for c in UNARY if c in args.contenders.split(",")]
    if not args.contenders:
        parser.error(f"--contenders: choose from {','.join(UNARY)}")
    return args


async def run(args: argparse.Namespace, console: Console, root: Path) -> int:
    began = time.monotonic()
    p = Params(
        args.seq_calls,
        args.conc_calls,
        args.rounds,
        args.warmup,
        args.stream_mib,
        args.stream_runs,
        args.window,
        args.stream_item_kib * 1024,
    )
    info = machine("msgspec", "grpcio", "cryptography")
    console.print(
        f"rpc benchmark: {', '.join(args.contenders)}; {p.seq_calls:,} sequential + "
        f"{p.conc_calls:,} concurrent calls, {p.stream_runs} x {p.stream_mib} MiB streams; "
        f"{info['cpu_count']} CPUs, zenoh {info['zenoh']}, grpcio {info['grpcio']}",
        highlight=False,
    )
    setup = Setup(root, p.window)
    unary: dict[str, dict[str, Series]] = {}
    streams: dict[str, list[StreamRun]] = {}
    try:
        await setup.start(set(args.contenders))
        contenders = [setup.contenders[n] for n in args.contenders]
        console.print(f"callees up in {time.monotonic() - began:.1f} s", highlight=False)
        if args.only != "stream":
            unary = await bench_unary(contenders, p, console)
        if args.only != "unary":
            streams = await bench_streams([c for c in contenders if c.name in STREAMS], p, console)
    finally:
        await setup.close()
    seconds = time.monotonic() - began
    unary_rows = {n: {m: s.summary() for m, s in modes.items()} for n, modes in unary.items()}
    count = p.stream_mib * MIB // p.item
    srows = stream_rows(streams, count, p.item)
    if unary_rows:
        console.print(unary_table(unary_rows, p))
    if srows:
        console.print(stream_table(srows, p))
    ratios: dict[str, float | None] = {}
    for mode in ("seq", "conc"):
        acc = unary_rows.get("accord", {}).get(mode, {})
        for other in ("zenoh", "bus", "grpc"):
            ref = unary_rows.get(other, {}).get(mode, {})
            ratios[f"unary_{mode}_p50_accord_over_{other}"] = ratio(
                acc.get("p50_us"), ref.get("p50_us"), 3
            )
    for other in ("zenoh", "bus", "grpc"):
        ratios[f"stream_mb_per_s_accord_over_{other}"] = ratio(
            srows.get("accord", {}).get("mb_per_s_p50"), srows.get(other, {}).get("mb_per_s_p50"), 3
        )
    for mode, label in (("seq", "sequential"), ("conc", f"{CONCURRENCY} concurrent")):
        r = ratios[f"unary_{mode}_p50_accord_over_zenoh"]
        if r is not None:
            verdict = "meets" if r <= GOAL_RATIO else "misses"
            console.print(
                f"Accord / raw Zenoh p50, {label}: {r:.2f}x ({verdict} the {GOAL_RATIO}x goal)",
                highlight=False,
            )
    data = {
        **result_header("rpc", info, args.argv),
        "parameters": p.as_json(),
        "goal": {"unary_p50_accord_over_zenoh": GOAL_RATIO},
        "total_seconds": round(seconds, 1),
        "pair_join_ms": round(setup.pair_ms, 1),
        "child_exit_codes": setup.exit_codes,
        "ratios": ratios,
        "unary": {
            name: {
                mode: {**unary_rows[name][mode], "samples_us": s.latencies_us}
                for mode, s in modes.items()
            }
            for name, modes in unary.items()
        },
        "stream": srows,
    }
    write_results(args.json_out, data, console, seconds, one_line_numbers=True)
    failed = any(s["failed"] for modes in unary_rows.values() for s in modes.values())
    incomplete = any(r["complete"] != r["runs"] for r in srows.values())
    unclean = any(code != 0 for code in setup.exit_codes.values())
    if unclean:
        console.print(f"[yellow]callee exit codes: {setup.exit_codes}")
    return 1 if failed or incomplete or unclean else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve, args.spec)
    return run_main(lambda console, root: run(args, console, root), prefix="accrpc-", width=160)


if __name__ == "__main__":
    sys.exit(main())
