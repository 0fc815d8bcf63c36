"""Data-store benchmark: local puts, fan-in and catch-up between node processes, pycrdt.

Every figure stands beside its floor, measured in the same run (the ratio is what
counts). Values are 100 random bytes; every SQLite file, Accord's and the floor's, is
in WAL mode with ``synchronous=FULL`` (a commit that returned survives a power cut).

1. **Local puts** on one store file (``Stores(...).open("bench")``, in this process,
   signing each batch as a node does):
   single puts, one commit each, and batches of 100 keys (``replica.batch()``). Floor:
   raw ``sqlite3`` inserts into ``(k TEXT PRIMARY KEY, v BLOB)``, single autocommit
   inserts and 100-row transactions (``executemany``). Rounds alternate; median ops/s.
2. **Fan-in**: a household of N real ``accord up`` processes (``Household``, multicast
   off, default settings; ``--set anti_entropy_ms=1000`` changes one). Every node
   writes K keys into store "bench" through ``kv_batch`` in batches of 500, all at
   once (one thread each); the clock runs from the first write until every node's
   ``kv_stores`` reports N*K keys (polled about every 100 ms). Floor: raw sqlite
   inserting the N*K rows in 500-row transactions in this process (every node must at
   least store them once); also shown against N such inserts spread over this
   machine's CPUs (every node must store them).
3. **Catch-up**: SIGKILL one node, let another write C new keys (``kv_batch`` of 1000),
   wait until every running node holds them, restart the stopped node
   (``Household.restart``) and time until it holds them all; bytes are the sum of
   "received" over its ``kv_stores`` traffic (its counters start at zero). Floors: the
   payload (keys + values) for bytes; for time, raw sqlite inserting the C rows in one
   transaction plus a raw TCP transfer of the payload over 127.0.0.1.
4. **pycrdt (Yjs)**, in this process and in memory: N docs each set their K keys in a
   ``Map`` in transactions of 500; every transaction's update is applied to every
   other doc until all converge. Catch-up: a converged doc that missed C sets gets
   ``source.get_update(behind.get_state())``. Usage::

    .venv/bin/python benchmarks/kv.py [--json-out PATH]
    .venv/bin/python benchmarks/kv.py --quick      # 4 nodes x 2,000 keys, 10,000 catch-up
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pycrdt
from rich.console import Console
from rich.table import Table

from accord.clock import HybridClock, SystemClock
from accord.control.client import ControlClient
from accord.data import Replica, StaticPeers, Stores
from accord.device.identity import Identity
from accord.errors import AccordError
from accord.sim.household import Household, SimDevice
from common import (
    BenchError,
    BenchParser,
    control_client,
    fmt,
    fmt_x,
    machine,
    new_table,
    ratio,
    result_header,
    run_main,
    write_results,
)

PROFILES = ("nokia-x60", "tablet", "laptop", "tv", "nokia-x20")
SETTINGS: list[str] = []  # the product's defaults (anti-entropy every 30 s)
PARTS = ("local", "pycrdt", "nodes")
STORE = "bench"
VALUE_BYTES = 100
LOCAL_BATCH = 100
FANIN_BATCH = 500
CATCHUP_BATCH = 1000
CRDT_TXN = 500
LOCAL_ROUNDS = 3
POLL_S = 0.1
CALL_TIMEOUT_S = 60.0
POLL_TIMEOUT_S = 10.0
MESH_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 240.0
TCP_CHUNK = 1 << 20


@dataclass(frozen=True)
class Params:
    single: int
    batched: int
    nodes: int
    keys_per_node: int
    catchup_keys: int

    @property
    def fanin_keys(self) -> int:
        return self.nodes * self.keys_per_node


Rows = list[tuple[str, bytes]]


def make_rows(prefix: str, count: int) -> Rows:
    return [(f"{prefix}{i:06d}", os.urandom(VALUE_BYTES)) for i in range(count)]


def payload_bytes(rows: Rows) -> int:
    return sum(len(k.encode()) + len(v) for k, v in rows)


def chunks(rows: Rows, size: int) -> Iterator[Rows]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


# -- the floors: raw sqlite3 and raw TCP ----------------------------------------------


def raw_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)")
    return db


def raw_insert(path: Path, rows: Rows, per_txn: int) -> float:
    """Seconds to insert ``rows`` into a fresh file; ``per_txn`` 1 is autocommit."""
    db = raw_db(path)
    try:
        t0 = time.perf_counter()
        if per_txn == 1:
            for row in rows:
                db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", row)
        else:
            for part in chunks(rows, per_txn):
                db.execute("BEGIN")
                db.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", part)
                db.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        db.close()


def tcp_transfer(data: bytes) -> float:
    """Seconds for ``data`` to cross a TCP connection on 127.0.0.1 (connection set up
    beforehand; clock from the first send until the receiver holds every byte)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        done_at: list[float] = []

        def receive() -> None:
            conn, _ = server.accept()
            with conn:
                got = 0
                while got < len(data):
                    part = conn.recv(TCP_CHUNK)
                    if not part:
                        break
                    got += len(part)
                done_at.append(time.perf_counter())

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            view = memoryview(data)
            t0 = time.perf_counter()
            for i in range(0, len(data), TCP_CHUNK):
                conn.sendall(view[i : i + TCP_CHUNK])
            thread.join(60)
    if not done_at:
        raise BenchError("the TCP floor did not complete")
    return done_at[0] - t0


# -- 1. local puts ---------------------------------------------------------------------


@contextlib.contextmanager
def accord_store(directory: Path) -> Iterator[Replica]:
    identity = Identity.generate()  # a node signs every batch (write provenance)
    me = identity.device_id
    stores = Stores(
        directory,
        device_id=me,
        hlc=HybridClock(SystemClock()),
        peers=StaticPeers([me], keys={me: identity.public_bytes}),
        synchronous="FULL",
        signer=identity.sign,
    )
    try:
        yield stores.open(STORE)
    finally:
        stores.close()


def accord_single(directory: Path, rows: Rows) -> float:
    with accord_store(directory) as replica:
        t0 = time.perf_counter()
        for key, value in rows:
            replica.put(key, value)
        return time.perf_counter() - t0


def accord_batched(directory: Path, rows: Rows, size: int) -> float:
    with accord_store(directory) as replica:
        t0 = time.perf_counter()
        for part in chunks(rows, size):
            with replica.batch() as b:
                for key, value in part:
                    b.put(key, value)
        return time.perf_counter() - t0


def bench_local(p: Params, root: Path, console: Console) -> dict[str, Any]:
    single_rows = make_rows("s", p.single)
    batched_rows = make_rows("b", p.batched)
    runs: dict[str, list[float]] = {k: [] for k in ("accord_single", "raw_single")}
    runs.update({k: [] for k in ("accord_batched", "raw_batched")})
    cases: list[tuple[str, int, Callable[[Path], float]]] = [
        ("raw_single", p.single, lambda d: raw_insert(d / "raw.sqlite", single_rows, 1)),
        ("accord_single", p.single, lambda d: accord_single(d, single_rows)),
        (
            "raw_batched",
            p.batched,
            lambda d: raw_insert(d / "raw.sqlite", batched_rows, LOCAL_BATCH),
        ),
        ("accord_batched", p.batched, lambda d: accord_batched(d, batched_rows, LOCAL_BATCH)),
    ]
    for r in range(LOCAL_ROUNDS):
        for name, n, fn in cases:
            directory = root / f"local-{name}-{r}"
            directory.mkdir(parents=True)
            runs[name].append(n / fn(directory))
            shutil.rmtree(directory, ignore_errors=True)
    out = {name: round(statistics.median(rates)) for name, rates in runs.items()}
    console.print(
        f"local puts: single {out['accord_single']:,}/s (raw {out['raw_single']:,}/s), "
        f"batched {out['accord_batched']:,}/s (raw {out['raw_batched']:,}/s)",
        highlight=False,
    )
    return {
        "ops_per_s": out,
        "runs_ops_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
    }


# -- 4. pycrdt ---------------------------------------------------------------------------


def bench_crdt(p: Params, writes: list[Rows], catchup: Rows, console: Console) -> dict[str, Any]:
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc() for _ in range(p.nodes)]
    maps = [doc.get(STORE, type=pycrdt.Map) for doc in docs]
    updates: list[list[bytes]] = [[] for _ in docs]
    t0 = time.perf_counter()
    for i, (doc, ymap) in enumerate(zip(docs, maps, strict=True)):
        sub = doc.observe(lambda event, i=i: updates[i].append(event.update))
        for part in chunks(writes[i], CRDT_TXN):
            with doc.transaction():
                for key, value in part:
                    ymap[key] = value
        doc.unobserve(sub)
    written = time.perf_counter() - t0
    for i, ups in enumerate(updates):
        for j, doc in enumerate(docs):
            if j != i:
                for update in ups:
                    doc.apply_update(update)
    total = time.perf_counter() - t0
    if any(len(m) != p.fanin_keys for m in maps):
        raise BenchError(f"pycrdt did not converge: {[len(m) for m in maps]}")
    key, value = writes[-1][-1]
    if any(bytes(m[key]) != value for m in maps):
        raise BenchError("pycrdt docs disagree")
    update_bytes = sum(len(u) for ups in updates for u in ups)

    source, behind = docs[0], docs[-1]
    for part in chunks(catchup, CATCHUP_BATCH):
        with source.transaction():
            for k, v in part:
                maps[0][k] = v
    t1 = time.perf_counter()
    state = behind.get_state()
    update = source.get_update(state)
    behind.apply_update(update)
    catchup_s = time.perf_counter() - t1
    if len(maps[-1]) != p.fanin_keys + len(catchup):
        raise BenchError("the pycrdt doc did not catch up")
    out = {
        "fanin_write_s": round(written, 4),
        "fanin_s": round(total, 4),
        "fanin_update_bytes": update_bytes,
        "fanin_bytes_received": update_bytes * (p.nodes - 1),
        "catchup_s": round(catchup_s, 4),
        "catchup_bytes": len(state) + len(update),
        "state_vector_bytes": len(state),
    }
    console.print(
        f"pycrdt: fan-in {total:.2f} s, catch-up {catchup_s * 1000:.0f} ms "
        f"({out['catchup_bytes']:,} B)",
        highlight=False,
    )
    return out


# -- 2 and 3. node processes -----------------------------------------------------------------


def label(dev: SimDevice) -> str:
    """A unique name: two devices of one profile share their display name."""
    return dev.home.name


def client_of(dev: SimDevice, timeout: float = CALL_TIMEOUT_S) -> ControlClient:
    return control_client(dev.home, timeout)


def batches_json(rows: Rows, size: int) -> list[list[dict[str, str]]]:
    return [
        [{"key": k, "value_b64": base64.b64encode(v).decode()} for k, v in part]
        for part in chunks(rows, size)
    ]


def wait_mesh(devices: list[SimDevice], timeout: float = MESH_TIMEOUT_S) -> None:
    """Until every device sees every other online and knows the whole circle."""
    everyone = {d.device_id for d in devices}
    deadline = time.monotonic() + timeout
    for dev in devices:
        client = client_of(dev, POLL_TIMEOUT_S)
        while True:
            with contextlib.suppress(AccordError):
                online = {r["device_id"] for r in client.call("devices") if r["online"]}
                members = int(client.call("status")["circle_members"])
                if everyone <= online and members >= len(everyone):
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"{label(dev)} does not see the whole household")
            time.sleep(0.05)


def wait_offline(devices: list[SimDevice], gone: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for dev in devices:
        client = client_of(dev, POLL_TIMEOUT_S)
        while True:
            with contextlib.suppress(AccordError):
                online = {r["device_id"] for r in client.call("devices") if r["online"]}
                if gone not in online:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"{label(dev)} still sees the stopped node online")
            time.sleep(0.02)


def store_stats(client: ControlClient) -> tuple[int, dict[str, dict[str, int]]]:
    """Keys in the bench store (0 if absent) and the node's sync traffic per peer."""
    result = client.call("kv_stores")
    keys = next((int(s["keys"]) for s in result["stores"] if s["name"] == STORE), 0)
    return keys, result["traffic"]


@dataclass
class Watch:
    """When each device first reported ``want`` keys, polled every POLL_S."""

    reached: dict[str, float]
    polls: int
    poll_ms_p50: float | None
    last_counts: dict[str, int]


def wait_keys(devices: list[SimDevice], want: int, t0: float, timeout: float) -> Watch:
    clients = {label(d): client_of(d, POLL_TIMEOUT_S) for d in devices}
    reached: dict[str, float] = {}
    counts: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.perf_counter() + timeout
    while len(reached) < len(devices) and time.perf_counter() < deadline:
        begun = time.perf_counter()
        for dev in devices:
            name = label(dev)
            if name in reached:
                continue
            t = time.perf_counter()
            try:
                counts[name], _ = store_stats(clients[name])
            except AccordError:
                continue
            now = time.perf_counter()
            latencies.append(now - t)
            if counts[name] >= want:
                reached[name] = now - t0
        time.sleep(max(0.0, POLL_S - (time.perf_counter() - begun)))
    p50 = round(statistics.median(latencies) * 1000, 1) if latencies else None
    return Watch(reached, len(latencies), p50, counts)


def write_all(devices: list[SimDevice], batches: list[list[list[dict[str, str]]]]) -> list[str]:
    """Each device writes its batches in its own thread; the errors, if any."""
    errors: list[str] = []

    def write(dev: SimDevice, mine: list[list[dict[str, str]]]) -> None:
        client = client_of(dev)
        try:
            for ops in mine:
                client.call("kv_batch", store=STORE, ops=ops)
        except AccordError as exc:
            errors.append(f"{label(dev)}: {exc}")

    threads = [
        threading.Thread(target=write, args=(d, b), daemon=True)
        for d, b in zip(devices, batches, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def received(traffic: dict[str, dict[str, int]]) -> tuple[int, int]:
    return (
        sum(t["received"] for t in traffic.values()),
        sum(t["messages_received"] for t in traffic.values()),
    )


def bench_nodes(
    p: Params,
    writes: list[Rows],
    catchup: Rows,
    root: Path,
    settings: list[str],
    console: Console,
) -> dict[str, Any]:
    profiles = [PROFILES[i % len(PROFILES)] for i in range(p.nodes)]
    house = Household(profiles, root / "h", settings=settings)
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        house.start()
        wait_mesh(house.devices)
        out["household_start_s"] = round(time.perf_counter() - t, 1)
        console.print(
            f"{p.nodes} nodes up and paired in {out['household_start_s']} s", highlight=False
        )
        out["fanin"] = fanin(house, p, writes, console)
        out["catchup"] = catch_up(house, p, catchup, console)
    finally:
        house.stop()
    out["exit_codes"] = {label(d): d.proc.returncode if d.proc else None for d in house.devices}
    return out


def fanin(house: Household, p: Params, writes: list[Rows], console: Console) -> dict[str, Any]:
    batches = [batches_json(rows, FANIN_BATCH) for rows in writes]
    acked: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()

    def writers() -> None:
        errors.extend(write_all(house.devices, batches))
        acked.append(time.perf_counter() - t0)

    thread = threading.Thread(target=writers, daemon=True)
    thread.start()
    watch = wait_keys(house.devices, p.fanin_keys, t0, CONVERGE_TIMEOUT_S)
    thread.join(CONVERGE_TIMEOUT_S)
    if not acked:
        raise BenchError("the writers did not finish")
    if errors:
        raise BenchError(f"writes failed: {errors[:3]}")
    if len(watch.reached) < len(house.devices):
        raise BenchError(f"fan-in did not converge: {watch.last_counts}")
    total_rx = total_msgs = 0
    for dev in house.devices:
        rx, msgs = received(store_stats(client_of(dev))[1])
        total_rx += rx
        total_msgs += msgs
    converged = max(watch.reached.values())
    console.print(
        f"fan-in: writes acked after {acked[0]:.2f} s, every node holds "
        f"{p.fanin_keys:,} keys after {converged:.2f} s",
        highlight=False,
    )
    return {
        "converged_s": round(converged, 3),
        "writes_acked_s": round(acked[0], 3),
        "per_node_s": {k: round(v, 3) for k, v in sorted(watch.reached.items())},
        "bytes_received_all_nodes": total_rx,
        "messages_received_all_nodes": total_msgs,
        "polls": watch.polls,
        "poll_ms_p50": watch.poll_ms_p50,
    }


def catch_up(house: Household, p: Params, rows: Rows, console: Console) -> dict[str, Any]:
    writer, victim = house.devices[0], house.devices[-1]
    others = [d for d in house.devices if d is not victim]
    want = p.fanin_keys + len(rows)
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    wait_offline(others, victim.device_id)

    t0 = time.perf_counter()
    errors = write_all([writer], [batches_json(rows, CATCHUP_BATCH)])
    if errors:
        raise BenchError(f"catch-up writes failed: {errors}")
    written = time.perf_counter() - t0
    watch = wait_keys(others, want, t0, CONVERGE_TIMEOUT_S)
    if len(watch.reached) < len(others):
        raise BenchError(f"the running nodes did not get the new keys: {watch.last_counts}")
    spread = max(watch.reached.values())

    t1 = time.perf_counter()
    house.restart(victim)
    ready = time.perf_counter() - t1
    watch = wait_keys([victim], want, t1, CONVERGE_TIMEOUT_S)
    if label(victim) not in watch.reached:
        raise BenchError(f"the restarted node did not catch up: {watch.last_counts}")
    took = watch.reached[label(victim)]
    traffic = store_stats(client_of(victim))[1]
    rx, msgs = received(traffic)
    source = max(traffic, key=lambda peer: traffic[peer]["received"], default=None)
    console.print(
        f"catch-up: {len(rows):,} keys written in {written:.2f} s, on {len(others) - 1} "
        f"running peers after {spread:.2f} s; the restarted node (ready after "
        f"{ready:.2f} s) holds them {took:.2f} s after the restart, {rx:,} B received",
        highlight=False,
    )
    return {
        "writer_s": round(written, 3),
        "running_peers_s": round(spread, 3),
        "restart_ready_s": round(ready, 3),
        "caught_up_s": round(took, 3),
        "caught_up_after_ready_s": round(took - ready, 3),
        "bytes_received": rx,
        "messages_received": msgs,
        "received_per_peer": {peer[:10]: t["received"] for peer, t in traffic.items()},
        # The member that sent most: the writer itself, or one relaying its rows.
        "source_was_writer": source == writer.device_id,
    }


# -- report ------------------------------------------------------------------------------------


def report_rows(res: dict[str, Any], p: Params) -> list[dict[str, Any]]:
    """One row per figure: its value, its floor and the cost ratio (>1 = slower/more)."""
    local = res.get("local", {}).get("ops_per_s", {})
    fl = res["floors"]
    rows: list[dict[str, Any]] = [
        {
            "measurement": "local put, 1 commit each",
            "unit": "ops/s",
            "value": local.get("accord_single"),
            "floor": local.get("raw_single"),
            "floor_is": "sqlite autocommit insert",
            "cost": ratio(local.get("raw_single"), local.get("accord_single")),
        },
        {
            "measurement": f"local put, batches of {LOCAL_BATCH}",
            "unit": "ops/s",
            "value": local.get("accord_batched"),
            "floor": local.get("raw_batched"),
            "floor_is": f"sqlite {LOCAL_BATCH}-row txns",
            "cost": ratio(local.get("raw_batched"), local.get("accord_batched")),
        },
    ]
    nodes = res.get("nodes", {})
    fanin = nodes.get("fanin", {})
    crdt = res.get("pycrdt", {})
    label = f"{p.nodes} x {p.keys_per_node:,} keys"
    floor_fanin = fl["fanin_sqlite_s"]
    cpus = os.cpu_count() or 1
    floor_spread = floor_fanin * p.nodes / min(cpus, p.nodes)
    fanin_bytes_floor = fl["fanin_payload_bytes"] * (p.nodes - 1)
    rows += [
        {
            "measurement": f"fan-in {label}: all nodes hold all",
            "unit": "s",
            "value": fanin.get("converged_s"),
            "floor": floor_fanin,
            "floor_is": f"sqlite {p.fanin_keys:,} rows, {FANIN_BATCH}-row txns",
            "cost": ratio(fanin.get("converged_s"), floor_fanin),
        },
        {
            "measurement": f"fan-in {label}: all nodes hold all",
            "unit": "s",
            "value": fanin.get("converged_s"),
            "floor": round(floor_spread, 3),
            "floor_is": f"same x {p.nodes} nodes / {cpus} CPUs",
            "cost": ratio(fanin.get("converged_s"), floor_spread),
        },
        {
            "measurement": f"fan-in {label}: writes acked",
            "unit": "s",
            "value": fanin.get("writes_acked_s"),
            "floor": floor_fanin,
            "floor_is": "same",
            "cost": ratio(fanin.get("writes_acked_s"), floor_fanin),
        },
        {
            "measurement": f"fan-in {label}: bytes received, all nodes",
            "unit": "MB",
            "value": mb(fanin.get("bytes_received_all_nodes")),
            "floor": mb(fanin_bytes_floor),
            "floor_is": f"payload x {p.nodes - 1} receivers",
            "cost": ratio(fanin.get("bytes_received_all_nodes"), fanin_bytes_floor),
        },
        {
            "measurement": f"pycrdt fan-in {label}: all docs converged",
            "unit": "s",
            "value": crdt.get("fanin_s"),
            "floor": floor_fanin,
            "floor_is": "same as fan-in",
            "cost": ratio(crdt.get("fanin_s"), floor_fanin),
        },
        {
            "measurement": f"pycrdt fan-in {label}: update bytes received",
            "unit": "MB",
            "value": mb(crdt.get("fanin_bytes_received")),
            "floor": mb(fanin_bytes_floor),
            "floor_is": f"payload x {p.nodes - 1} receivers",
            "cost": ratio(crdt.get("fanin_bytes_received"), fanin_bytes_floor),
        },
    ]
    catch = nodes.get("catchup", {})
    c_floor = fl["catchup_sqlite_s"] + fl["catchup_tcp_s"]
    c_bytes = fl["catchup_payload_bytes"]
    c_label = f"catch-up {p.catchup_keys:,} keys"
    rows += [
        {
            "measurement": f"{c_label}: restart -> holds all",
            "unit": "s",
            "value": catch.get("caught_up_s"),
            "floor": round(c_floor, 3),
            "floor_is": "sqlite 1 txn + TCP of payload",
            "cost": ratio(catch.get("caught_up_s"), c_floor),
        },
        {
            "measurement": f"{c_label}: ready -> holds all",
            "unit": "s",
            "value": catch.get("caught_up_after_ready_s"),
            "floor": round(c_floor, 3),
            "floor_is": "same",
            "cost": ratio(catch.get("caught_up_after_ready_s"), c_floor),
        },
        {
            "measurement": f"{c_label}: bytes received",
            "unit": "MB",
            "value": mb(catch.get("bytes_received")),
            "floor": mb(c_bytes),
            "floor_is": "payload (keys + values)",
            "cost": ratio(catch.get("bytes_received"), c_bytes),
        },
        {
            "measurement": f"pycrdt {c_label}: time",
            "unit": "s",
            "value": crdt.get("catchup_s"),
            "floor": round(c_floor, 3),
            "floor_is": "same as catch-up",
            "cost": ratio(crdt.get("catchup_s"), c_floor),
        },
        {
            "measurement": f"pycrdt {c_label}: bytes",
            "unit": "MB",
            "value": mb(crdt.get("catchup_bytes")),
            "floor": mb(c_bytes),
            "floor_is": "payload (keys + values)",
            "cost": ratio(crdt.get("catchup_bytes"), c_bytes),
        },
    ]
    return rows


def mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 2)


def table_of(rows: list[dict[str, Any]]) -> Table:
    table = new_table(
        "Data stores (cost = floor rate / rate, or value / floor: >1 is slower)",
        ("measurement", "unit", "value", "floor", "floor is", "cost"),
        left=("measurement", "floor is"),
    )
    for r in rows:
        digits = 0 if r["unit"] == "ops/s" else 2 if r["unit"] == "MB" else 3
        table.add_row(
            r["measurement"],
            r["unit"],
            fmt(r["value"], digits),
            fmt(r["floor"], digits),
            r["floor_is"],
            fmt_x(r["cost"]),
        )
    return table


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = BenchParser("kv", __doc__)
    parser.count("--single", "single local puts", 2000, 300)
    parser.count("--batched", "batched local puts", 20000, 2000)
    parser.count("--nodes", "node processes", 10, 4)
    parser.count("--keys", "keys each node writes", 10000, 2000)
    parser.count("--catchup", "keys to catch up", 100000, 10000)
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        metavar="KEY=VALUE",
        help=f"a node setting (default: {' '.join(SETTINGS)})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 nodes x 2000 keys")
    parser.add_argument(
        "--json-out", "--json", dest="json_out", type=Path, default=None, help="JSON path"
    )
    args = parser.parse(argv)
    if parser.smallest_count(args) < 1 or args.nodes < 2:
        parser.error("every count must be at least 1, and --nodes at least 2")
    if args.settings is None:
        args.settings = list(SETTINGS)
    return args


def run(args: argparse.Namespace, console: Console, root: Path) -> int:
    began = time.monotonic()
    p = Params(args.single, args.batched, args.nodes, args.keys, args.catchup)
    info = machine("pycrdt")
    console.print(
        f"kv benchmark: local {p.single:,} single + {p.batched:,} batched puts; "
        f"{p.nodes} nodes x {p.keys_per_node:,} keys; catch-up {p.catchup_keys:,} keys; "
        f"{info['cpu_count']} CPUs, pycrdt {info['pycrdt']}",
        highlight=False,
    )
    parts = set(args.only or PARTS)
    res: dict[str, Any] = {}
    if "local" in parts:
        res["local"] = bench_local(p, root, console)
    writes = [make_rows(f"n{i:02d}-", p.keys_per_node) for i in range(p.nodes)]
    catchup = make_rows("c-", p.catchup_keys)
    everything = [row for rows in writes for row in rows]
    payload = b"".join(k.encode() + v for k, v in catchup)
    res["floors"] = {
        "fanin_sqlite_s": round(raw_insert(root / "fanin.sqlite", everything, FANIN_BATCH), 4),
        "fanin_payload_bytes": payload_bytes(everything),
        "catchup_sqlite_s": round(raw_insert(root / "catchup.sqlite", catchup, len(catchup)), 4),
        "catchup_tcp_s": round(tcp_transfer(payload), 4),
        "catchup_payload_bytes": len(payload),
    }
    console.print(f"floors: {res['floors']}", highlight=False)
    if "pycrdt" in parts:
        res["pycrdt"] = bench_crdt(p, writes, catchup, console)
    if "nodes" in parts:
        res["nodes"] = bench_nodes(p, writes, catchup, root, args.settings, console)
    seconds = time.monotonic() - began
    rows = report_rows(res, p)
    console.print(table_of(rows))
    data = {
        **result_header("kv", info, args.argv),
        "parameters": {
            **asdict(p),
            "value_bytes": VALUE_BYTES,
            "local_batch": LOCAL_BATCH,
            "fanin_batch": FANIN_BATCH,
            "catchup_batch": CATCHUP_BATCH,
            "crdt_txn": CRDT_TXN,
            "node_settings": args.settings,
            "synchronous": "FULL",
        },
        "total_seconds": round(seconds, 1),
        "rows": rows,
        **res,
    }
    write_results(args.json_out, data, console, seconds)
    codes = res.get("nodes", {}).get("exit_codes", {})
    unclean = {k: v for k, v in codes.items() if v not in (0, -signal.SIGKILL)}
    if unclean:
        console.print(f"[yellow]node exit codes: {unclean}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda console, root: run(args, console, root), prefix="acckv-", width=160)


if __name__ == "__main__":
    sys.exit(main())
