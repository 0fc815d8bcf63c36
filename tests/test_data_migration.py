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
    assert msgspec.msgpack.decode(version) == 2
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
