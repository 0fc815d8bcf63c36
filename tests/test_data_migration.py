"""A store file written by Accord before schema 2 (tests/fixtures/schema1, made by the
code of commit 09af144): it opens, keeps every row and version, goes on numbering
changes past the old ones, and its rows still travel with their proofs."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.clock import HybridClock, ManualClock
from accord.data import Replica, StaticPeers
from accord.data.loopback import pull
from accord.data.schema import SCHEMA_VERSION
from accord.device.identity import Identity

FIXTURE = Path(__file__).parent / "fixtures" / "schema1"


def _identity(name: str) -> Identity:
    # git keeps no file modes but the executable bit, and Identity.load refuses a key
    # others may read: read the fixture's raw key directly.
    raw = (FIXTURE / f"{name}.key").read_bytes()
    return Identity(Ed25519PrivateKey.from_private_bytes(raw))


IDS = {name: _identity(name) for name in ("phone", "fridge", "tablet")}
P, F, T = (IDS[n].device_id for n in ("phone", "fridge", "tablet"))
PEERS = StaticPeers(
    [i.device_id for i in IDS.values()], keys={i.device_id: i.public_bytes for i in IDS.values()}
)


def _open(path: Path, name: str) -> Replica:
    ident = IDS[name]
    return Replica.open(
        path,
        name="bank",
        device_id=ident.device_id,
        hlc=HybridClock(ManualClock()),
        peers=PEERS,
        signer=ident.sign,
        synchronous="NORMAL",
    )


@pytest.fixture
def fridge(tmp_path: Path) -> Iterator[Replica]:
    path = tmp_path / "fridge.kv.sqlite"
    shutil.copy(FIXTURE / "fridge.kv.sqlite", path)
    replica = _open(path, "fridge")
    yield replica
    replica.close()


def test_an_old_file_opens_with_every_row_and_version(fridge: Replica) -> None:
    assert fridge.version_vector() == {F: 1, P: 3}
    assert [(e.key, e.value) for e in fridge.scan()] == [
        ("balance", b"62"),
        ("door", b"open"),
        ("k0", b"0"),
        ("k1", b"1"),
        ("k2", b"2"),
        ("k3", b"3"),
    ]
    assert fridge.tombstones() == 1  # the phone's delete of k4
    row = fridge.row("k2")
    assert row is not None
    assert row.dots == {P: 2}


def test_it_is_migrated_once_and_numbers_changes_past_the_old_ones(
    fridge: Replica, tmp_path: Path
) -> None:
    path = tmp_path / "fridge.kv.sqlite"
    with sqlite3.connect(path) as db:
        (old_top,) = db.execute("SELECT max(lseq) FROM rows").fetchone()
        (version,) = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
    assert msgspec.msgpack.decode(version) == SCHEMA_VERSION
    fridge.put("door", b"closed")
    fridge.close()
    again = _open(path, "fridge")
    try:
        assert again.get("door") == b"closed"
        with sqlite3.connect(path) as db:
            (lseq,) = db.execute("SELECT lseq FROM rows WHERE key = ?", (b"door",)).fetchone()
        assert lseq > old_top
    finally:
        again.close()


def test_its_rows_are_relayed_with_the_proofs_they_were_stored_with(
    fridge: Replica, tmp_path: Path
) -> None:
    """The tablet catches up from the fridge while the phone is away: the phone's rows
    carry the per-row proofs the old format kept, and the tablet checks them."""
    tablet = _open(tmp_path / "tablet.db", "tablet")
    try:
        pull({F: fridge, T: tablet}, T, F)
        assert tablet.scan() == fridge.scan()
        assert tablet.version_vector() == {F: 1, P: 3}
    finally:
        tablet.close()


def test_a_schema_2_file_with_a_catch_up_in_progress_starts_it_again(
    fridge: Replica, tmp_path: Path
) -> None:
    """Schema 2 staged rows with ids spelled out (``staged_rows``); schema 3 numbers
    them. A file of schema 2 opens with its rows and versions, and the catch-up it had
    in progress starts again from nothing (its staged rows and pages are dropped)."""
    path = tmp_path / "fridge.kv.sqlite"
    vv = fridge.version_vector()
    fridge.close()
    with sqlite3.connect(path) as db:  # make it the file schema-2 code left
        db.execute("DROP TABLE staged")
        db.execute("DROP TABLE origins")
        db.execute(
            "CREATE TABLE staged_rows (source TEXT NOT NULL, n INTEGER NOT NULL, "
            "ns TEXT NOT NULL, key BLOB NOT NULL, value BLOB, wall_ms INTEGER NOT NULL, "
            "counter INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, "
            "idx INTEGER, PRIMARY KEY (source, n)) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO staged_rows VALUES (?, 0, '', ?, ?, 1, 0, ?, 9, 0)",
            (T, b"stale", b"x", T),
        )
        db.execute("INSERT INTO sessions VALUES (?, 7, 'e', 3)", (T,))
        db.execute("INSERT INTO pages VALUES (?, 0, x'00')", (T,))
        db.execute("UPDATE meta SET v = ? WHERE k = 'schema'", (msgspec.msgpack.encode(2),))
    again = _open(path, "fridge")
    try:
        assert again.version_vector() == vv
        assert again.get("stale") is None
        with sqlite3.connect(path) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            assert "staged_rows" not in tables
            assert {"staged", "origins"} <= tables
            assert db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM pages").fetchone() == (0,)
            (version,) = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        assert msgspec.msgpack.decode(version) == SCHEMA_VERSION
    finally:
        again.close()


def test_a_schema_3_file_opens_with_the_table_of_kept_leaves(
    fridge: Replica, tmp_path: Path
) -> None:
    """Schema 4 added ``gone`` (the leaves of rows replaced or removed) and
    ``batches.whole``: a file of schema 3 opens with its rows and versions, gains
    both, and is schema 4."""
    path = tmp_path / "fridge.kv.sqlite"
    rows, vv = fridge.scan(), fridge.version_vector()
    fridge.close()
    with sqlite3.connect(path) as db:  # make it the file schema-3 code left
        db.execute("DROP TABLE gone")
        db.execute("ALTER TABLE batches DROP COLUMN whole")
        db.execute("UPDATE meta SET v = ? WHERE k = 'schema'", (msgspec.msgpack.encode(3),))
    again = _open(path, "fridge")
    try:
        assert again.scan() == rows
        assert again.version_vector() == vv
        with sqlite3.connect(path) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            (version,) = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
        assert "gone" in tables
        assert "whole" in columns
        assert msgspec.msgpack.decode(version) == SCHEMA_VERSION == 4
    finally:
        again.close()
