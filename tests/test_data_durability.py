"""What is acknowledged is on disk: kill -9, and crashes in the middle of a transaction."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import Op, Pull, Replica, StaticPeers
from accord.data.faultnet import SimulatedCrash
from accord.data.loopback import deliver_all, device_id
from accord.data.sqlite_store import StoreFile
from accord.data.stores import Stores

A, B = device_id(0), device_id(1)

WRITER = r"""
import sys
from pathlib import Path
from accord.clock import HybridClock, SystemClock
from accord.data import Replica, StaticPeers

device = sys.argv[2]
store = Replica.open(
    Path(sys.argv[1]), name="s", device_id=device,
    hlc=HybridClock(SystemClock()), peers=StaticPeers([device]),
)
i = 0
while True:
    with store.batch() as b:
        b.put(f"k{i:06}", str(i).encode() * 10)
        b.put("last", str(i).encode())
    print(i, flush=True)  # acknowledged: the commit returned
    i += 1
"""


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "s.kv.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), A],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked = int(line)
            if acked >= 60:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert acked >= 60, "the writer never got going"
    store = Replica.open(
        path, name="s", device_id=A, hlc=HybridClock(ManualClock()), peers=StaticPeers([A])
    )
    try:
        last = int(store.get("last") or b"-1")
        assert last >= acked
        entries = {e.key: e.value for e in store.scan("k")}
        # Every acknowledged batch is there, and every batch there is whole.
        assert all(f"k{i:06}" in entries for i in range(acked + 1))
        assert len(entries) == last + 1
        assert store.version_vector() == {A: last + 1}
    finally:
        store.close()


SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def durability_of(file: StoreFile) -> tuple[str, str]:
    """(journal mode, synchronous) of a store file, as its own connection reports them."""
    db = file._db
    journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    return journal, SYNCHRONOUS[db.execute("PRAGMA synchronous").fetchone()[0]]


def test_a_commit_is_synced_to_disk_before_it_returns(tmp_path: Path) -> None:
    """What the kill -9 test above cannot show: that a commit survives a power cut.
    A killed process leaves its writes in the kernel's page cache, so that test passes
    even with ``synchronous=OFF``; only a fsync before the commit returns makes an
    acknowledged write durable when the machine itself stops. We cannot cut the power
    here, so this checks the setting that asks SQLite for that fsync: WAL with
    ``synchronous=FULL`` (fsync of the log on every commit) by default, as the node
    opens its stores, and NORMAL only when a caller asks for it. It cannot prove that
    the disk honours the fsync, nor that SQLite's own fsync is correct."""
    path = tmp_path / "s.kv.sqlite"
    store = Replica.open(
        path, name="s", device_id=A, hlc=HybridClock(ManualClock()), peers=StaticPeers([A])
    )
    try:
        assert durability_of(store._file) == ("wal", "FULL")
        store.put("k", b"v")  # and still after a commit
        assert durability_of(store._file) == ("wal", "FULL")
    finally:
        store.close()
    reopened = StoreFile(path)  # a second connection sets its own: FULL too
    try:
        assert durability_of(reopened) == ("wal", "FULL")
    finally:
        reopened.close()
    fast = StoreFile(tmp_path / "fast.sqlite", synchronous="NORMAL")
    try:
        assert durability_of(fast) == ("wal", "NORMAL")  # only on request
    finally:
        fast.close()


def _fail_inside(file: StoreFile) -> None:
    with file.transaction(durable=False):
        file.set_meta("y", b"2")
        raise RuntimeError("the process fails mid-page")


def test_only_a_staged_catch_up_page_commits_without_waiting_for_the_disk(
    tmp_path: Path,
) -> None:
    """A staged page may be lost to a power cut (it is fetched again: the session's
    cursor goes back with it, in the same transaction), so its commit does not wait
    for a fsync; every other commit still does, and a failed relaxed transaction
    leaves nothing behind and the file back at FULL."""
    file = StoreFile(tmp_path / "s.kv.sqlite")
    seen: list[str] = []
    try:
        with file.transaction(durable=False):
            seen.append(durability_of(file)[1])
            file.set_meta("x", b"1")
        assert durability_of(file) == ("wal", "FULL")
        with pytest.raises(RuntimeError):
            _fail_inside(file)
        assert file.get_meta("x") == b"1"
        assert file.get_meta("y") is None
        assert durability_of(file) == ("wal", "FULL")
        with file.transaction():
            seen.append(durability_of(file)[1])
    finally:
        file.close()
    assert seen == ["NORMAL", "FULL"]


def test_a_nodes_stores_are_synced_to_disk(tmp_path: Path) -> None:
    """The node's stores come from :class:`Stores` with its defaults: FULL as well."""
    stores = Stores(
        tmp_path / "stores", device_id=A, hlc=HybridClock(ManualClock()), peers=StaticPeers([A])
    )
    try:
        notes = stores.open("notes")
        notes.put("k", b"v")
        assert durability_of(notes._file) == ("wal", "FULL")
    finally:
        stores.close()


class Faults:
    """Arm a store file so that its n-th row write dies, as a killed process would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, file: StoreFile) -> None:
        self._real: Callable[..., int] = file.write_row
        self._real_upsert: Callable[..., None] = file.upsert
        self._left: int | None = None
        monkeypatch.setattr(file, "write_row", self._write)
        monkeypatch.setattr(file, "upsert", self._upsert)
        self._real_apply: Callable[..., int] = file.apply_staged
        monkeypatch.setattr(file, "apply_staged", self._apply_staged)

    def arm(self, nth: int) -> None:
        self._left = nth

    def _write(self, row: Any, old_lseq: int | None) -> int:
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                self._left = None
                raise SimulatedCrash("killed mid-transaction")
        return self._real(row, old_lseq)

    def _apply_staged(self, source: str, wanted: Any, *, find_batches: bool) -> int:
        """A catch-up's rows move in one statement: it runs, then the process dies
        before the commit (the armed count is spent at once)."""
        first = self._real_apply(source, wanted, find_batches=find_batches)
        if self._left is not None:
            self._left = None
            raise SimulatedCrash("killed mid-transaction")
        return first

    def _upsert(self, params: Any, *, newer_only: bool) -> None:
        """A set-based write: the first rows go in, then the process dies."""
        if self._left is not None and self._left <= len(params):
            self._real_upsert(params[: self._left - 1], newer_only=newer_only)
            self._left = None
            raise SimulatedCrash("killed mid-transaction")
        if self._left is not None:
            self._left -= len(params)
        self._real_upsert(params, newer_only=newer_only)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[dict[str, Replica], StoreFile]]:
    peers = StaticPeers([A, B])
    clock = ManualClock()
    a = Replica.open(
        tmp_path / "a.db",
        name="s",
        device_id=A,
        hlc=HybridClock(clock),
        peers=peers,
        page_bytes=512,
        synchronous="NORMAL",
    )
    file = StoreFile(tmp_path / "b.db", synchronous="NORMAL")
    b = Replica(file, name="s", device_id=B, hlc=HybridClock(clock), peers=peers, page_bytes=512)
    try:
        yield {A: a, B: b}, file
    finally:
        a.close()
        b.close()


def test_a_crash_inside_a_pushed_batch_applies_none_of_it(
    pair: tuple[dict[str, Replica], StoreFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas, file = pair
    a, b = replicas[A], replicas[B]
    faults = Faults(monkeypatch, file)
    a.commit(Op(f"k{i}", b"v") for i in range(5))
    (push,) = a.take_pushes()
    faults.arm(3)
    with pytest.raises(SimulatedCrash):
        b.receive(A, push)
    assert b.scan() == []
    assert b.version_vector() == {}
    assert b.receive(A, push) == []  # the retry (a resent push, or a pull) applies it whole
    assert len(b.scan()) == 5


def test_a_crash_inside_a_local_commit_leaves_nothing(
    pair: tuple[dict[str, Replica], StoreFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas, file = pair
    b = replicas[B]
    faults = Faults(monkeypatch, file)
    faults.arm(2)
    with pytest.raises(SimulatedCrash):
        b.commit([Op("x", b"1"), Op("y", b"2")])
    assert b.scan() == []
    assert b.take_pushes() == []
    assert b.put("z", b"3").seq == 1  # the seq was not used up


def test_a_crash_while_applying_a_catch_up_resumes_cleanly(
    pair: tuple[dict[str, Replica], StoreFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas, file = pair
    a, b = replicas[A], replicas[B]
    faults = Faults(monkeypatch, file)
    for i in range(30):
        a.put(f"k{i:02}", bytes(40))
    faults.arm(10)  # dies in the middle of applying the staged catch-up
    with pytest.raises(SimulatedCrash):
        deliver_all(replicas, [(B, A, b.pull_from(A))])
    assert b.scan() == []
    assert b.version_vector() == {}
    resume = b.pull_from(A)
    assert resume.after > 0  # only the end is asked for again
    traffic = deliver_all(replicas, [(B, A, resume)])
    assert traffic.messages == 3  # pull, the last (empty) page, summary
    assert b.scan() == a.scan()
    assert b.version_vector() == a.version_vector()


def test_a_restart_in_the_middle_of_a_catch_up_resumes_from_disk(tmp_path: Path) -> None:
    peers = StaticPeers([A, B])
    clock = ManualClock()

    def open_b() -> Replica:
        return Replica.open(
            tmp_path / "b.db",
            name="s",
            device_id=B,
            hlc=HybridClock(clock),
            peers=peers,
            synchronous="NORMAL",
        )

    a = Replica.open(
        None, name="s", device_id=A, hlc=HybridClock(clock), peers=peers, page_bytes=512
    )
    b = open_b()
    try:
        for i in range(30):
            a.put(f"k{i:02}", bytes(40))
        one_page = msgspec.structs.replace(b.pull_from(A), ahead=0)  # step by step
        page = a.receive(B, one_page)[0]
        nxt = b.receive(A, page)[0]
        assert isinstance(nxt, Pull)
        b.close()
        b = open_b()
        resumed = b.pull_from(A)
        assert (resumed.session, resumed.after) == (nxt.session, nxt.after)
        deliver_all({A: a, B: b}, [(B, A, resumed)])
        assert b.scan() == a.scan()
    finally:
        a.close()
        b.close()


def _catch_up_across_a_restart(tmp_path: Path, *, old_pages: bool) -> list[tuple[str, int, int]]:
    """B catches up from A page by page, restarts after the first, and finishes; with
    ``old_pages`` its staged page is first rewritten as an older Accord staged it
    (without the notes of where each batch's rows start). B's batches after."""
    tmp_path.mkdir()
    peers = StaticPeers([A, B])
    clock = ManualClock()

    def open_b() -> Replica:
        return Replica.open(
            tmp_path / "b.db", name="s", device_id=B, hlc=HybridClock(clock), peers=peers,
            synchronous="NORMAL",
        )  # fmt: skip

    a = Replica.open(
        None, name="s", device_id=A, hlc=HybridClock(clock), peers=peers, page_bytes=512
    )
    b = open_b()
    try:
        for i in range(12):
            with a.batch() as batch:
                for j in range(3):
                    batch.put(f"k{i:02}-{j}", bytes(40))
        one_page = msgspec.structs.replace(b.pull_from(A), ahead=0)
        b.receive(A, a.receive(B, one_page)[0])
        b.close()
        if old_pages:
            with sqlite3.connect(tmp_path / "b.db") as db:
                for source, page, data in db.execute("SELECT * FROM pages").fetchall():
                    fields = msgspec.msgpack.decode(data)
                    assert fields[2] is not None  # this Accord notes where groups start
                    old = msgspec.msgpack.encode(fields[:2])
                    db.execute("UPDATE pages SET data = ? WHERE source = ? AND page = ?",
                               (old, source, page))  # fmt: skip
        b = open_b()
        deliver_all({A: a, B: b}, [(B, A, b.pull_from(A))])
        assert b.scan() == a.scan()
        assert b.version_vector() == a.version_vector()
        return b._file._db.execute(
            "SELECT origin, seq, first_lseq FROM batches ORDER BY origin, seq"
        ).fetchall()
    finally:
        a.close()
        b.close()


def test_a_catch_up_staged_by_an_older_accord_finds_its_batches_the_same(
    tmp_path: Path,
) -> None:
    """Staging notes each group's batch, time and first row, so finishing needs no
    pass over the staged rows (for their origins' tops, the newest time, where each
    batch starts); pages staged before those notes existed take those passes
    instead, and end the same: same rows, versions and batches."""
    noted = _catch_up_across_a_restart(tmp_path / "new", old_pages=False)
    found = _catch_up_across_a_restart(tmp_path / "old", old_pages=True)
    assert len(noted) == 12
    assert noted == found
