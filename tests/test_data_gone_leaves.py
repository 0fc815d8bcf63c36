"""A batch written or pushed whole is kept without its leaves (provenance.Material
``rows``): its rows are its leaves. What must not be lost is the leaf of a row that
leaves the store, so the rest of the batch can still be proven when relayed: a row
replaced by a newer write, a pushed row that lost to a newer stored one on arrival,
and a tombstone collected. Pure: replicas in memory with real identities, and the
relayed rows checked by a third member, which takes them only with a proof that
checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from accord.data import Page, Replica
from accord.data.loopback import pull
from accord.data.model import DATA_VERSION, Pull
from accord.data.provenance import Material
from accord.device.identity import Identity
from accord.errors import StoreError
from tests.test_data_provenance import House as ProvenanceHouse

PHONE, TABLET, FRIDGE, LAPTOP = (Identity.generate() for _ in range(4))
IDS = {i.device_id: i for i in (PHONE, TABLET, FRIDGE, LAPTOP)}
P, T, F, L = PHONE.device_id, TABLET.device_id, FRIDGE.device_id, LAPTOP.device_id


class House(ProvenanceHouse):
    def relayed(self, via: str, to: str) -> Page:
        """The page ``via`` would send ``to`` for everything."""
        page = self.r[via].receive(to, Pull(DATA_VERSION, "bank", {}, 99))[0]
        assert isinstance(page, Page)
        return page


@pytest.fixture
def house() -> Iterator[House]:
    h = House(IDS)
    yield h
    h.close()


def _material(replica: Replica, origin: str, seq: int) -> Material:
    blob = replica._file.material(origin, seq)
    assert blob is not None
    return msgspec.msgpack.decode(blob, type=Material)


def _write(replica: Replica, value: bytes, keys: range) -> None:
    with replica.batch() as b:
        for i in keys:
            b.put(f"k{i}", value)


def _tablet_takes_from_fridge(house: House, index: list[int], values: list[bytes], vv: int) -> None:
    """The fridge relays the phone's first batch with a proof of its rows at ``index``,
    and the tablet, catching up from the fridge alone, ends with ``values`` for k0,
    k1, ... and the phone's version ``vv``."""
    page = house.relayed(F, T)
    group = next(g for g in page.groups if page.ids[g.origin] == P and g.seq == 1)
    assert group.proof is not None
    assert list(group.proof.index) == index
    pull(house.r, T, F)
    assert [house.r[T].get(f"k{i}") for i in range(len(values))] == values
    assert house.r[T].version_vector()[P] == vv


def test_a_pushed_batch_keeps_its_signature_alone_and_proves_what_is_left_of_it(
    house: House,
) -> None:
    _write(house.r[P], b"first", range(6))
    with house.r[P].batch() as b:  # a later batch replaces two rows and deletes one
        b.put("k1", b"second")
        b.put("k3", b"second")
        b.delete("k4")
    house.push(P, F)
    kept = _material(house.r[F], P, 1)
    assert kept.rows
    assert kept.leaves == b""
    assert kept.n == 6
    assert _material(house.r[P], P, 1).rows  # the writer keeps its own the same way
    page = house.relayed(F, T)
    partial = next(g for g in page.groups if g.seq == 1)
    assert partial.proof is not None
    assert sorted(partial.proof.index) == [0, 2, 5]
    pull(house.r, T, F)  # the phone is away: the fridge relays, the tablet checks
    assert [house.r[T].get(f"k{i}") for i in range(6)] == [
        b"first", b"second", b"first", b"second", None, b"first",
    ]  # fmt: skip
    assert house.r[T].version_vector()[P] == 2


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
def test_a_pushed_row_that_lost_on_arrival_keeps_its_leaf(house: House, watched: bool) -> None:
    """The fridge wrote k2 after the phone's batch was made but before it arrived:
    the phone's k2 never goes in, and its leaf is kept, so the fridge can still prove
    the rest of the phone's batch (set-based and, with a watcher, row by row)."""
    _write(house.r[P], b"phone", range(5))
    house.clock.advance(1.0)
    house.r[F].put("k2", b"fridge")
    if watched:
        house.r[F].subscribe(lambda _changes: None)
    house.push(P, F)
    assert house.r[F].get("k2") == b"fridge"
    assert house.r[F].get("k0") == b"phone"
    _tablet_takes_from_fridge(
        house, [0, 1, 3, 4], [b"phone", b"phone", b"fridge", b"phone", b"phone"], 1
    )


def test_a_row_a_catch_up_replaces_keeps_its_leaf(house: House) -> None:
    """The tablet holds the phone's batch (pushed); a catch-up from the fridge brings
    a newer k1. The laptop, catching up from the tablet alone, still gets the rest
    of the phone's batch, proven with the replaced row's kept leaf."""
    _write(house.r[P], b"phone", range(3))
    house.push(P, T)
    house.clock.advance(1.0)
    house.r[F].put("k1", b"fridge")
    pull(house.r, T, F)
    assert house.r[T].get("k1") == b"fridge"
    pull(house.r, L, T)
    assert [house.r[L].get(f"k{i}") for i in range(3)] == [b"phone", b"fridge", b"phone"]
    assert house.r[L].version_vector()[P] == 1


def test_a_collected_tombstone_keeps_its_leaf(house: House) -> None:
    with house.r[P].batch() as b:
        b.put("k0", b"kept")
        b.delete("k1")
        b.put("k2", b"kept")
    house.push(P, F)
    file = house.r[F]._file
    (lseq,) = [lseq for lseq, origin, _seq in file.tombstones(10**15) if origin == P]
    with file.transaction():  # as collect_garbage removes an acknowledged tombstone
        file.delete_row(lseq)
    pull(house.r, T, F)
    assert house.r[T].get("k0") == b"kept"
    assert house.r[T].get("k2") == b"kept"
    assert house.r[T].version_vector()[P] == 1


def test_without_the_kept_leaf_the_rest_is_not_relayed_as_proven(house: House) -> None:
    """The kept leaf is what proves the rest: without it (a row removed behind the
    store's back), the fridge sends the group without a proof, and the tablet does
    not take the phone's rows from it."""
    _write(house.r[P], b"phone", range(3))
    house.push(P, F)
    file = house.r[F]._file
    with file.transaction():
        file._db.execute("DELETE FROM gone")  # what the trigger kept ...
        file._db.execute("DROP TRIGGER temp.gone_removed")  # ... and keeps
        file._db.execute("DELETE FROM rows WHERE key = ?", (b"k1",))
    group = next(g for g in house.relayed(F, T).groups if g.seq == 1)
    assert group.proof is None
    pull(house.r, T, F)
    assert house.r[T].get("k0") is None
    assert house.r[T].version_vector().get(P, 0) == 0


def test_forgetting_a_batch_forgets_the_leaves_kept_of_it(house: House) -> None:
    _write(house.r[P], b"first", range(2))
    _write(house.r[P], b"second", range(2))  # replaces both rows of the first
    house.push(P, F)
    file = house.r[F]._file
    count = "SELECT count(*) FROM gone WHERE seq = 1"
    assert file._db.execute(count).fetchone() == (2,)
    with file.transaction():
        assert file.drop_unused_batches() == 1
    assert file._db.execute(count).fetchone() == (0,)
    assert file.material(P, 1) is None


def test_rewriting_the_same_keys_keeps_leaves_per_batch_not_per_row(house: House) -> None:
    """While a file replaces rows, a batch keeps its leaves in its material, so its
    rows, replaced in turn, keep none; once batches of new keys come again, the file
    goes back to keeping batches whole (trying every 16th batch)."""
    for i in range(20):
        _write(house.r[P], f"v{i}".encode(), range(4))
    house.push(P, F)
    db = house.r[F]._file._db
    assert db.execute("SELECT count(*) FROM batches WHERE whole").fetchone() == (1,)  # the first
    assert db.execute("SELECT count(*) FROM gone").fetchone() == (4,)  # its rows'
    assert not _material(house.r[F], P, 2).rows  # the others keep their leaves
    for i in range(20):
        _write(house.r[P], b"new", range(100 + 4 * i, 104 + 4 * i))
    house.push(P, F)
    (whole,) = db.execute("SELECT count(*) FROM batches WHERE whole").fetchone()
    assert whole >= 1 + 20 - 16
    pull(house.r, T, F)
    assert house.r[T].get("k3") == b"v19"
    assert house.r[T].get("k179") == b"new"
    assert house.r[T].version_vector()[P] == 40


def test_a_rollback_takes_the_trigger_it_made_and_the_next_write_makes_it_again(
    house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fridge's first write over the phone's whole batch fails after its rows
    went in: the rollback takes back the trigger made for it, and the next write
    makes it again, so the replaced row's leaf is kept."""
    _write(house.r[P], b"phone", range(3))
    house.push(P, F)
    fridge = house.r[F]
    file = fridge._file
    real = file.record_batches
    failures = [StoreError("disk gone")]

    def failing(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        real(*args, **kwargs)

    monkeypatch.setattr(file, "record_batches", failing)
    with pytest.raises(StoreError):
        fridge.put("k1", b"fridge")
    assert fridge.get("k1") == b"phone"
    fridge.put("k1", b"fridge")
    assert file._db.execute("SELECT seq, idx FROM gone").fetchall() == [(1, 1)]
    pull(house.r, T, F)
    assert house.r[T].get("k0") == b"phone"
    assert house.r[T].get("k1") == b"fridge"


def test_a_row_under_an_lseq_another_row_holds_is_refused_not_lost(house: House) -> None:
    """Rows go in with INSERT OR IGNORE first; one that could not go in because its
    lseq is taken (never a key's doing: a bug) must not pass for in."""
    _write(house.r[P], b"phone", range(2))
    house.push(P, F)
    file = house.r[F]._file
    (taken,) = file._db.execute("SELECT min(lseq) FROM rows").fetchone()
    row = (taken, "", bytearray(b"fresh"), bytearray(b"v"), 1, 0, P, 9, 0)
    with pytest.raises(StoreError), file.transaction():
        file.upsert([row], newer_only=True)
    assert house.r[F].get("fresh") is None
    assert house.r[F].get("k0") == b"phone"


def test_a_batch_caught_up_from_its_writer_keeps_its_signature_alone(house: House) -> None:
    """The fridge was away while the phone wrote: it catches up from the phone itself,
    keeps the batch as a push's (no leaf hashed), and, after a row of it is
    replaced, still proves the rest to the tablet."""
    _write(house.r[P], b"first", range(5))
    pull(house.r, F, P)
    kept = _material(house.r[F], P, 1)
    assert kept.rows
    assert kept.leaves == b""
    with house.r[P].batch() as b:
        b.put("k1", b"second")
    house.push(P, F)
    _tablet_takes_from_fridge(
        house, [0, 2, 3, 4], [b"first", b"second", b"first", b"first", b"first"], 2
    )


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
def test_a_caught_up_row_that_lost_keeps_its_batch_provable(house: House, watched: bool) -> None:
    """The fridge wrote k2 after the phone's batch: catching up from the phone, the
    phone's k2 loses, so the batch's leaves are hashed from the staged rows and kept,
    and the fridge still proves the rest of it to the tablet."""
    _write(house.r[P], b"phone", range(5))
    house.clock.advance(1.0)
    house.r[F].put("k2", b"fridge")
    if watched:
        house.r[F].subscribe(lambda _changes: None)
    pull(house.r, F, P)
    assert house.r[F].get("k2") == b"fridge"
    kept = _material(house.r[F], P, 1)
    assert not kept.rows
    assert len(kept.leaves) == 5 * 32
    _tablet_takes_from_fridge(
        house, [0, 1, 3, 4], [b"phone", b"phone", b"fridge", b"phone", b"phone"], 1
    )
