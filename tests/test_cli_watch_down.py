"""``accord devices --watch`` streams joins and leaves; ``accord down`` stops a node
and returns only once it has left."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accord.sim.household import Household
from tests.helpers import accord, online_ids, wait_for


def test_watch_streams_joins_and_leaves_then_down_stops(short_tmp: Path) -> None:
    house = Household(["tv"], short_tmp / "house")
    house.start()
    watcher = None
    try:
        tv = house.devices[0]
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accord",
                "devices",
                "--watch",
                "--json",
                "--home",
                str(tv.home),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert watcher.stdout is not None
        present = json.loads(watcher.stdout.readline())  # subscribed from here on
        assert (present["kind"], present["device"]["is_self"]) == ("present", True)
        laptop = short_tmp / "laptop"
        assert accord("init", "--home", str(laptop), "--profile", "laptop").returncode == 0
        with open(laptop / "node.log", "wb") as log:
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "accord",
                    "up",
                    "--home",
                    str(laptop),
                    "--no-multicast",
                    "--listen",
                    "tcp/127.0.0.1:0",
                    "--connect",
                    tv.endpoint,
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: len(online_ids(tv.home)) == 2, 10.0, "laptop to join")
        down = accord("down", "--home", str(laptop))
        assert (down.returncode, down.stdout) == (0, "Laptop stopped\n"), down.stderr
        assert node.wait(10) == 0
        joined = json.loads(watcher.stdout.readline())
        left = json.loads(watcher.stdout.readline())
        assert (joined["kind"], joined["device"]["type"]) == ("joined", "laptop")
        assert (left["kind"], left["device"]["type"]) == ("left", "laptop")
        assert left["device"]["online"] is False
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()
            if watcher.stdout is not None:
                watcher.stdout.close()
        house.stop()


# A stand-in for a node that takes its time to leave: it answers ``status`` and
# ``stop`` on the control socket like a node, removes the socket, and then holds the
# home lock for DELAY more seconds before it exits (as a node that is still closing
# its links would).
FAKE_NODE = """
import fcntl, json, os, socket, sys, time
home, delay = sys.argv[1], float(sys.argv[2])
run = os.path.join(home, "run")
os.makedirs(run, exist_ok=True)
lock = os.open(os.path.join(run, "node.lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(lock, fcntl.LOCK_EX)
path = os.path.join(run, "control.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
print("ready", flush=True)
method = ""
while method != "stop":
    conn, _ = server.accept()
    with conn, conn.makefile("rwb") as f:
        req = json.loads(f.readline())
        method = req["method"]
        result = {"name": "Slow TV", "pid": os.getpid()} if method == "status" else {}
        f.write(json.dumps({"id": req["id"], "result": result}).encode() + b"\\n")
server.close()
os.unlink(path)
time.sleep(delay)
"""


@contextmanager
def _slow_node(home: Path, delay: float) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_NODE, str(home), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _lock_is_free(home: Path) -> bool:
    fd = os.open(home / "run" / "node.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_down_waits_until_the_node_has_left(short_tmp: Path) -> None:
    home = short_tmp / "tv"
    with _slow_node(home, delay=1.0) as node:
        start = time.monotonic()
        down = accord("down", "--home", str(home))
        took = time.monotonic() - start
        assert (down.returncode, down.stdout) == (0, "Slow TV stopped\n"), down.stderr
        assert _lock_is_free(home)  # gone, not "stopping"
        assert took >= 1.0
        assert node.wait(5) == 0


def test_down_says_so_when_the_node_does_not_leave_in_time(short_tmp: Path) -> None:
    home = short_tmp / "tv"
    with _slow_node(home, delay=60.0) as node:
        down = accord("down", "--timeout", "0.5", "--home", str(home))
        assert down.returncode == 1
        assert f"Slow TV (pid {node.pid}) did not stop within 0.5 s" in down.stderr
        assert f"kill {node.pid}" in down.stderr
        assert not _lock_is_free(home)


def test_down_with_no_node_says_how_to_start_one(short_tmp: Path) -> None:
    down = accord("down", "--home", str(short_tmp / "nothing"))
    assert down.returncode == 1
    assert "no node is running on" in down.stderr
