"""`accord kv` as a user meets it: one clear size error at every size, checked before
anything is sent; `kv watch` lines with time, device name and distinct deletes;
`kv get` ending with a newline on a terminal only; replies that fit the control
socket whatever the values."""

from __future__ import annotations

import base64
import json
import os
import pty
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.control.client import ControlClient
from accord.control.protocol import MAX_LINE
from accord.data.limits import MAX_VALUE_BYTES
from accord.device.home import SOCKET_NAME
from accord.sim.household import Household, SimDevice
from tests.helpers import accord, accord_json, device, running_household, wait_for

# -- no node needed: the checks come before the node is asked ----------------------


def test_the_cli_knows_the_stores_value_limit() -> None:
    from accord.cli.kv_cmds import VALUE_LIMIT, VALUE_LIMIT_TEXT
    from accord.data.control import REPLY_BUDGET

    assert VALUE_LIMIT == MAX_VALUE_BYTES
    assert f"{MAX_VALUE_BYTES // 2**20} MiB" == VALUE_LIMIT_TEXT
    assert REPLY_BUDGET + 64 * 1024 < MAX_LINE
    assert len(base64.b64encode(bytes(MAX_VALUE_BYTES))) + 64 * 1024 < REPLY_BUDGET
    helped = accord("kv", "put", "--help")
    assert helped.returncode == 0, helped.stderr
    assert f"at most {VALUE_LIMIT_TEXT}" in " ".join(helped.stdout.split())


def one_error_line(proc: subprocess.CompletedProcess[Any]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("size", [MAX_VALUE_BYTES + 1, 6_500_000, 12_000_000])
def test_kv_put_refuses_an_oversized_value_before_sending(tmp_path: Path, size: int) -> None:
    home = tmp_path / "home"  # no node runs here: the size must be checked first
    big = tmp_path / "big.bin"
    big.write_bytes(b"v" * size)
    line = one_error_line(accord("kv", "put", "notes", "k", f"@{big}", "--home", str(home)))
    assert f"is {size} bytes, over the 4 MiB ({MAX_VALUE_BYTES} byte) limit" in line
    piped = subprocess.run(
        [sys.executable, "-m", "accord", "kv", "put", "notes", "k", "@-", "--home", str(home)],
        input=b"v" * size,
        capture_output=True,
        timeout=30,
    )
    assert f"over the 4 MiB ({MAX_VALUE_BYTES} byte) limit" in one_error_line(piped)


def test_kv_put_of_a_value_at_the_limit_goes_to_the_node(tmp_path: Path) -> None:
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"v" * MAX_VALUE_BYTES)
    proc = accord("kv", "put", "notes", "k", f"@{exact}", "--home", str(tmp_path / "home"))
    assert "no node is running" in one_error_line(proc)


# -- with nodes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def house() -> Iterator[Household]:
    yield from running_household(["laptop", "nokia-x60"], "acc-kvc-")


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_threads() -> None:
    return  # the household outlives each test on purpose: it is shared by the module


def _client(dev: SimDevice) -> ControlClient:
    return ControlClient(dev.home / "run" / SOCKET_NAME, timeout=10)


class Watcher:
    """`accord kv watch` in a child process; its output lines in a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "accord", "kv", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 15) -> str:
        return self.lines.get(timeout=timeout)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _watching(watcher: Watcher, dev: SimDevice, store: str, probe: str) -> None:
    """Wait until the watch is subscribed (local probes under it start to show)."""

    def seen() -> bool:
        _client(dev).call("kv_put", store=store, key=probe, value="1")
        try:
            return probe in watcher.next_line(timeout=0.5)
        except queue.Empty:
            return False

    wait_for(seen, 20, "the watch to start")


def test_kv_watch_shows_time_device_name_and_distinct_deletes(house: Household) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    lt, ph = ("--home", str(laptop.home)), ("--home", str(phone.home))
    assert accord("kv", "put", "watched", "probe", "0", *lt).returncode == 0
    text = Watcher("watched", "t", *lt)
    as_json = Watcher("watched", "t", "--json", *lt)
    try:
        _watching(text, laptop, "watched", "t-probe")
        _watching(as_json, laptop, "watched", "t-probe2")
        while not text.lines.empty():
            text.next_line()
        assert accord("kv", "put", "watched", "todo", "deleted", *ph).returncode == 0
        assert accord("kv", "del", "watched", "todo", *ph).returncode == 0
        put_line = text.next_line()
        while "t-probe2" in put_line:
            put_line = text.next_line()
        del_line = text.next_line()
        events: list[dict[str, Any]] = []
        while len(events) < 2:
            event = json.loads(as_json.next_line())
            if event["changes"][0]["key"] == "todo":
                events.append(event)
    finally:
        text.stop()
        as_json.stop()
    # "12:03:04.123  Nokia X60  todo = deleted", then the delete, unmistakably
    stamp, rest = put_line.split(maxsplit=1)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", stamp), put_line
    assert rest.startswith(phone.name), put_line
    assert phone.device_id[:10] not in put_line
    assert put_line.endswith("todo = deleted"), put_line
    assert phone.name in del_line
    assert del_line.endswith("todo (deleted)"), del_line
    assert " = " not in del_line
    put_change, del_change = (e["changes"][0] for e in events)
    assert (put_change["op"], put_change["text"]) == ("put", "deleted")
    assert del_change["op"] == "delete"
    assert "text" not in del_change
    assert "value_b64" not in del_change
    for change in (put_change, del_change):
        assert change["origin"] == phone.device_id
        assert change["origin_name"] == phone.name
        assert abs(change["at"] - time.time()) < 60


def _run_on_a_terminal(*args: str) -> bytes:
    """Run accord with its standard output on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "accord", *args],
            stdout=follower,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        follower = -1
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, "no output from accord within 30 s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr is not None:
            proc.stderr.close()
        return output
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_kv_get_ends_with_a_newline_on_a_terminal_only(house: Household) -> None:
    laptop = device(house, "laptop")
    lt = ("--home", str(laptop.home))
    assert accord("kv", "put", "plain", "word", "milk", *lt).returncode == 0
    assert accord("kv", "put", "plain", "line", "milk\n", *lt).returncode == 0
    piped = subprocess.run(
        [sys.executable, "-m", "accord", "kv", "get", "plain", "word", *lt],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert piped.stdout == b"milk"  # raw bytes when redirected
    # a terminal turns "\n" into "\r\n"
    assert _run_on_a_terminal("kv", "get", "plain", "word", *lt) == b"milk\r\n"
    assert _run_on_a_terminal("kv", "get", "plain", "line", *lt) == b"milk\r\n"


def test_replies_fit_the_control_socket_at_the_largest_values(
    house: Household, tmp_path: Path
) -> None:
    laptop = device(house, "laptop")
    lt = ("--home", str(laptop.home))
    text = tmp_path / "text.txt"
    text.write_bytes(b"\x01" * MAX_VALUE_BYTES)  # text whose JSON escapes are 6x longer
    for key in ("a", "b", "c"):
        assert accord("kv", "put", "large", key, f"@{text}", *lt).returncode == 0
    got = subprocess.run(
        [sys.executable, "-m", "accord", "kv", "get", "large", "a", *lt],
        capture_output=True,
        timeout=30,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == text.read_bytes()
    found = accord_json("kv", "get", "large", "a", *lt)
    assert base64.b64decode(found["value_b64"]) == text.read_bytes()
    assert "text" not in found  # over TEXT_MAX: base64 only
    listing = accord_json("kv", "ls", "large", "--values", *lt)
    assert 1 <= len(listing["entries"]) < 3
    assert listing["truncated"] is True
    table = accord("kv", "ls", "large", "--values", *lt)
    assert table.returncode == 0, table.stderr
    assert "narrow it with a prefix" in table.stdout
    from accord.data.control import TEXT_MAX

    small = b"\x01" * TEXT_MAX
    assert _client(laptop).call(
        "kv_put", store="large", key="s", value_b64=base64.b64encode(small).decode()
    )
    assert accord_json("kv", "get", "large", "s", *lt)["text"] == small.decode()


def test_keys_and_values_print_as_typed_never_as_markup(house: Household) -> None:
    laptop = device(house, "laptop")
    lt = ("--home", str(laptop.home))
    put = accord("kv", "put", "marked", "[/b]k", "[red]v[/]", *lt)
    assert put.returncode == 0, put.stderr
    assert put.stdout == "marked/[/b]k: 9 bytes written\n"
    listing = accord("kv", "ls", "marked", "--values", *lt)
    assert listing.returncode == 0, listing.stderr
    assert "[/b]k" in listing.stdout
    assert "[red]v[/]" in listing.stdout
    deleted = accord("kv", "del", "marked", "[/b]k", *lt)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == "marked/[/b]k: deleted\n"
