"""Continuity: file send, its resume, and the clipboard, between two node processes
on 127.0.0.1, against raw Zenoh and raw TCP moving the same bytes in the same chunks.

The nodes are a laptop and a Nokia X60 (`accord up` processes of a simulated
household, paired by PIN). Each floor's sender is a child process too: raw Zenoh is
one `get` (consolidation NONE) answered by a queryable with the file's bytes in
ITEM_BYTES replies (and once more in the old 1000 KiB items); raw TCP is one socket
the child writes them to. Default file:
256 MiB (`--gib` sends 1 GiB).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
import zenoh
from rich.console import Console

from accord.bus.settings import BusSettings, zenoh_config
from accord.continuity.service import HASH_CACHE_DIR
from accord.continuity.transfer.messages import ITEM_BYTES
from accord.continuity.transfer.partial import PartialState
from accord.control.client import ControlClient
from accord.sim.household import Household, free_port
from common import (
    BenchParser,
    fmt,
    fmt_x,
    machine,
    new_table,
    result_header,
    run_main,
    verdict,
    write_results,
)

MIB = 1024 * 1024
KEY = "bench/continuity/blob"
OLD_ITEM_BYTES = 1000 * 1024  # the item size before 2026-12-02: a second floor, to compare

ZENOH_SERVER = """
import sys, threading, zenoh, json
from accord.bus.settings import BusSettings, zenoh_config
port, path, chunk = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = zenoh.open(zenoh_config(BusSettings(listen=(f"tcp/127.0.0.1:{port}",), multicast=False)))
def serve(q):
    with open(path, "rb") as f:
        while data := f.read(chunk):
            q.reply(q.key_expr, data)
    q.drop()
s.declare_queryable("bench/continuity/blob", serve)
print("ready", flush=True)
sys.stdin.read()
"""

TCP_SERVER = """
import socket, sys
port, path, chunk = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
srv = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
conn, _ = srv.accept()
with open(path, "rb") as f:
    while data := f.read(chunk):
        conn.sendall(data)
conn.close()
"""


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        block = os.urandom(MIB)
        for i in range(size // MIB):
            f.write(hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:])


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("a floor's child did not start")
    return proc


def raw_zenoh(path: Path, size: int, chunk: int = ITEM_BYTES) -> float:
    port = free_port()
    child = _child(ZENOH_SERVER, str(port), str(path), str(chunk))
    try:
        conf = BusSettings(connect=(f"tcp/127.0.0.1:{port}",), multicast=False)
        session = zenoh.open(zenoh_config(conf))
        try:
            time.sleep(0.5)  # the link is up
            got = 0
            done = threading.Event()

            def on_reply(reply: zenoh.Reply) -> None:
                nonlocal got
                if reply.ok is not None:
                    got += len(reply.ok.payload.to_bytes())

            started = time.perf_counter()
            session.get(
                KEY, zenoh.handlers.Callback(on_reply, done.set),
                consolidation=zenoh.ConsolidationMode.NONE, timeout=600,
            )  # fmt: skip
            done.wait(600)
            seconds = time.perf_counter() - started
            if got != size:
                raise RuntimeError(f"raw zenoh moved {got} of {size} bytes")
            return size / seconds / 1e6
        finally:
            session.close()  # type: ignore[no-untyped-call]
    finally:
        child.kill()
        child.wait()


def raw_tcp(path: Path, size: int) -> float:
    port = free_port()
    child = _child(TCP_SERVER, str(port), str(path), str(ITEM_BYTES))
    try:
        started = time.perf_counter()
        got = 0
        with socket.create_connection(("127.0.0.1", port)) as conn:
            while data := conn.recv(4 * MIB):
                got += len(data)
        seconds = time.perf_counter() - started
        if got != size:
            raise RuntimeError(f"raw tcp moved {got} of {size} bytes")
        return size / seconds / 1e6
    finally:
        child.wait()


def send(client: ControlClient, paths: list[Path]) -> dict[str, Any]:
    """The sender's ``done`` event, with ``hash_s``: when its ``start`` event came (the
    sender hashes every file before it offers them, and nothing overlaps that)."""
    done: dict[str, Any] = {}
    started = time.perf_counter()
    hashed = 0.0
    for event in client.stream("send", device="Nokia X60", paths=[str(p) for p in paths]):
        if event["kind"] == "start":
            hashed = time.perf_counter() - started
        if event["kind"] == "done":
            done = event
    return {**done, "hash_s": hashed}


def clear_inbox(home: Path) -> None:
    subprocess.run(["rm", "-rf", str(home / "inbox")], check=True)


def cpu_seconds(house: Household) -> dict[str, float]:
    """User + system CPU seconds each node process has used so far."""
    out = {}
    for dev in house.devices:
        assert dev.proc is not None
        times = psutil.Process(dev.proc.pid).cpu_times()
        out[dev.profile] = times.user + times.system
    return out


def clear_hash_cache(home: Path) -> None:
    subprocess.run(["rm", "-rf", str(home / "data" / HASH_CACHE_DIR)], check=True)


def held_fraction(home: Path) -> float:
    best = 0.0
    for path in (home / "inbox" / ".accord-partial").glob("*.state"):
        try:
            state = msgspec.msgpack.decode(path.read_bytes(), type=PartialState)
        except (OSError, msgspec.DecodeError):
            continue
        best = max(best, sum(bin(b).count("1") for b in state.have) * state.block_size / state.size)
    return best


def resume_at_half(house: Household, big: Path, size: int) -> dict[str, Any]:
    laptop, phone = house.devices
    clear_inbox(phone.home)
    cmd = [sys.executable, "-m", "accord", "send", str(big), "--to", "Nokia X60", "--json",
           "--home", str(laptop.home)]  # fmt: skip
    sending = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while held_fraction(phone.home) < 0.5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert phone.proc is not None
    phone.proc.send_signal(signal.SIGKILL)
    phone.proc.wait()
    sending.wait(60)
    held = held_fraction(phone.home)
    house.restart(phone)
    _wait_pair(house)
    started = time.perf_counter()
    done = send(_client(laptop.home), [big])
    return {
        "held_before": round(held, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "bytes_sent": done["bytes_sent"],
        "bytes_skipped": done["bytes_skipped"],
        "bytes_total": size,
    }


def _client(home: Path, timeout: float = 60.0) -> ControlClient:
    return ControlClient(home / "run" / "control.sock", timeout=timeout)


def _wait_pair(house: Household) -> None:
    ids = {d.device_id for d in house.devices}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = [{r["device_id"] for r in _client(d.home).call("devices") if r["online"]}
                for d in house.devices]  # fmt: skip
        if all(s >= ids for s in seen):
            return
        time.sleep(0.05)
    raise RuntimeError("the household did not see each other again")


def clipboard(house: Household, size: int, runs: int) -> dict[str, Any]:
    laptop, phone = house.devices
    copy_ms, paste_ms = [], []
    data = os.urandom(size)
    src = laptop.home / "run" / "clip.bin"
    src.write_bytes(data)
    for _ in range(runs):
        started = time.perf_counter()
        _client(laptop.home).call("clip_copy", path=str(src))
        copy_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        got = sum(1 for _ in _client(phone.home).stream("clip_paste", device=""))
        paste_ms.append((time.perf_counter() - started) * 1000)
        assert got >= 1
    return {
        "bytes": size,
        "runs": runs,
        "copy_announced_ms_p50": round(statistics.median(copy_ms), 2),
        "paste_ms_p50": round(statistics.median(paste_ms), 2),
        "copy_ms": [round(x, 2) for x in copy_ms],
        "paste_ms": [round(x, 2) for x in paste_ms],
    }


def body(console: Console, root: Path) -> int:
    parser = BenchParser("continuity", __doc__)
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 run each")
    parser.add_argument("--gib", action="store_true", help="send 1 GiB instead of 256 MiB")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.count("--runs", "runs per contender", 3, 1)
    args = parser.parse(None)
    size = (1024 if args.gib else 64 if args.quick else 256) * MIB
    started_all = time.monotonic()
    big = root / "movie.bin"
    _write_random(big, size)
    small = root / "small"
    small.mkdir()
    for i in range(1000):
        (small / f"f{i:04d}.txt").write_bytes(os.urandom(4096))

    zen = [raw_zenoh(big, size) for _ in range(args.runs)]
    zen_1000k = [raw_zenoh(big, size, OLD_ITEM_BYTES) for _ in range(args.runs)]
    tcp = [raw_tcp(big, size) for _ in range(args.runs)]
    house = Household(["laptop", "nokia-x60"], root / "h")
    house.start()
    try:
        _wait_pair(house)
        laptop, phone = house.devices
        accord_mbs, hash_s, after_hash_mbs = [], [], []
        again_mbs, again_hash_s = [], []
        cpu: list[dict[str, float]] = []  # per cold send: each node's CPU seconds
        for _ in range(args.runs):
            # Cold: the sender's hash cache is emptied, so it reads and hashes the
            # file before the offer (and keeps the hashes: the file is settled).
            clear_hash_cache(laptop.home)
            clear_inbox(phone.home)
            cpu_before = cpu_seconds(house)
            t = time.perf_counter()
            done = send(_client(laptop.home), [big])
            seconds = time.perf_counter() - t
            cpu_after = cpu_seconds(house)
            cpu.append({k: cpu_after[k] - cpu_before[k] for k in cpu_after} | {"wall": seconds})
            accord_mbs.append(size / seconds / 1e6)
            hash_s.append(done["hash_s"])
            after_hash_mbs.append(size / (seconds - done["hash_s"]) / 1e6)
            assert done["bytes_sent"] == size
            # The same file again (to a receiver that lacks it): the hashes come
            # from the cache, the bytes all move.
            clear_inbox(phone.home)
            t = time.perf_counter()
            done = send(_client(laptop.home), [big])
            again_mbs.append(size / (time.perf_counter() - t) / 1e6)
            again_hash_s.append(done["hash_s"])
            assert done["bytes_sent"] == size
        many = []
        for _ in range(args.runs):
            clear_inbox(phone.home)
            t = time.perf_counter()
            send(_client(laptop.home), [small])
            many.append(time.perf_counter() - t)
        resume = resume_at_half(house, big, size)
        clip_small = clipboard(house, 1024, 5 if args.quick else 20)
        clip_big = clipboard(house, 10 * MIB, 2 if args.quick else 5)
    finally:
        house.stop()
    p50 = statistics.median
    ratio = p50(accord_mbs) / p50(zen)
    full_s = size / p50(accord_mbs) / 1e6
    table = new_table("file send", ["contender", "MB/s p50", "min", "max", "/ raw zenoh"],
                      left=["contender"])  # fmt: skip
    for name, xs in (
        ("accord send", accord_mbs),
        ("  its offer onwards (after hashing)", after_hash_mbs),
        ("accord send, same file again (hash cache)", again_mbs),
        ("raw zenoh (floor)", zen),
        ("raw zenoh, 1000 KiB chunks", zen_1000k),
        ("raw tcp", tcp),
    ):
        table.add_row(name, fmt(p50(xs)), fmt(min(xs)), fmt(max(xs)), fmt_x(p50(xs) / p50(zen)))
    console.print(table)
    other = new_table("goals", ["measure", "value", "goal", "met"], left=["measure"])
    other.add_row("send / raw zenoh", fmt_x(ratio), ">= 0.80x", verdict(ratio >= 0.8))
    again = p50(again_mbs) / p50(zen)
    other.add_row("same file again / raw zenoh", fmt_x(again), ">= 0.80x", verdict(again >= 0.8))
    other.add_row("1000 files of 4 KiB", f"{p50(many):.2f} s", "< 2 s", verdict(p50(many) < 2))
    other.add_row(
        f"resume at {resume['held_before']:.0%}",
        f"{resume['seconds']:.2f} s, {resume['bytes_sent'] / 1e6:.0f} MB moved",
        f"vs {full_s:.2f} s full", verdict(resume["bytes_sent"] <= size * 0.55),
    )  # fmt: skip
    for clip in (clip_small, clip_big):
        other.add_row(
            f"clipboard {clip['bytes']} B: copy announced / paste",
            f"{clip['copy_announced_ms_p50']:.1f} / {clip['paste_ms_p50']:.1f} ms", "-", "-",
        )  # fmt: skip
    console.print(other)
    used = new_table(
        "CPU per cold send (both nodes' processes)", ["measure", "p50"], left=["measure"]
    )
    for label, key in (("sender (laptop)", "laptop"), ("receiver (nokia-x60)", "nokia-x60")):
        used.add_row(f"{label}: ns per byte", f"{p50([c[key] / size * 1e9 for c in cpu]):.2f}")
    busy = p50([(c["laptop"] + c["nokia-x60"]) / c["wall"] for c in cpu])
    used.add_row("cores busy (both CPU seconds / wall)", f"{busy:.2f} of {os.cpu_count()}")
    console.print(used)
    result = {
        **result_header("continuity", machine("eclipse-zenoh", "msgspec"), args.argv),
        "file_bytes": size,
        "item_bytes": ITEM_BYTES,
        "send_mbs": accord_mbs,
        "raw_zenoh_mbs": zen,
        "raw_zenoh_1000k_mbs": zen_1000k,
        "send_hash_s": hash_s,
        "send_after_hash_mbs": after_hash_mbs,
        "send_again_mbs": again_mbs,
        "send_cpu_s": cpu,
        "send_again_hash_s": again_hash_s,
        "send_again_over_zenoh": round(p50(again_mbs) / p50(zen), 3),
        "raw_tcp_mbs": tcp,
        "send_over_zenoh": round(ratio, 3),
        "thousand_small_files_s": many,
        "resume_at_half": resume,
        "clipboard": [clip_small, clip_big],
    }
    write_results(args.json_out, result, console, time.monotonic() - started_all)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(body, prefix="acc-bc-", width=110))
