"""A catch-up page's whole batches go into the store as the page comes, as pushes of
them would (receiving.CatchingUp._take_whole): each batch whole, in the page's
transaction, which syncs to disk; the version vector moves only when the catch-up
completes. Groups of partial batches (relayed rows some of which lost) still wait
in staging for the last page. Pure: replicas with real identities, page by page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import Page, Replica, StaticPeers
from accord.data.faultnet import SimulatedCrash
from accord.data.loopback import deliver_all
from accord.data.model import DATA_VERSION, Pull
from accord.data.sqlite_store import StoreFile
from accord.device.identity import Identity

PHONE, TABLET, FRIDGE = Identity.generate(), Identity.generate(), Identity.generate()
IDS = {i.device_id: i for i in (PHONE, TABLET, FRIDGE)}
P, T, F = PHONE.device_id, TABLET.device_id, FRIDGE.device_id


class House:
    """Replicas of store "bank" with small pages; the tablet's in a file it can be
    reopened from."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock()
        self.path = tmp_path / "tablet.db"
        self.peers = StaticPeers(IDS, keys={d: i.public_bytes for d, i in IDS.items()})
        self.r = {d: self._open(d) for d in IDS}

    def _open(self, device: str) -> Replica:
        return Replica.open(
            self.path if device == T else None,
            name="bank",
            device_id=device,
            hlc=HybridClock(self.clock),
            peers=self.peers,
            signer=IDS[device].sign,
            page_bytes=512,
            synchronous="NORMAL",
            tombstone_grace_s=0.0,
        )

    def reopen_tablet(self) -> None:
        self.r[T].close()
        self.r[T] = self._open(T)

    def step(self, pull: Pull, source: str = P) -> list[Any]:
        """One page from ``source`` for ``pull``, handled by the tablet: its replies."""
        one = msgspec.structs.replace(pull, ahead=0)
        (page,) = self.r[source].receive(T, one)
        assert isinstance(page, Page)
        return self.r[T].receive(source, page)

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def house(tmp_path: Path) -> Iterator[House]:
    h = House(tmp_path)
    yield h
    h.close()


def _write_batches(replica: Replica, count: int, size: int = 3) -> None:
    for i in range(count):
        with replica.batch() as b:
            for j in range(size):
                b.put(f"k{i:02}-{j}", bytes(40))


def _staged_rows(replica: Replica) -> int:
    (n,) = replica._file._db.execute("SELECT count(*) FROM staged").fetchone()
    return int(n)


def test_whole_batches_go_in_as_their_page_comes_and_the_version_at_the_end(
    house: House,
) -> None:
    _write_batches(house.r[P], 12)
    replies = house.step(house.r[T].pull_from(P))
    (nxt,) = replies
    assert isinstance(nxt, Pull)  # more to come
    first = {row.key for row in house.r[T].scan()}
    assert first
    assert len(first) < 36
    assert len(first) % 3 == 0  # whole batches only
    assert _staged_rows(house.r[T]) == 0
    assert house.r[T].version_vector() == {}  # moves when the catch-up completes
    while isinstance(nxt, Pull):
        (nxt,) = house.step(nxt)
    assert house.r[T].scan() == house.r[P].scan()
    assert house.r[T].version_vector() == house.r[P].version_vector()


def test_the_claim_counts_batches_that_went_in_before_a_restart(house: House) -> None:
    """The source's claim for a relayed origin is believed as far as the proven rows
    of this catch-up reach, those that went in as pages came included, across a
    restart of the receiver in the middle."""
    _write_batches(house.r[P], 12)
    for push in house.r[P].take_pushes():
        deliver_all(house.r, [(P, F, push)])
    (nxt,) = house.step(house.r[T].pull_from(F), F)
    house.reopen_tablet()
    resumed = house.r[T].pull_from(F)
    assert resumed.after == nxt.after  # only the rest is asked for
    while isinstance(resumed, Pull):
        (resumed,) = house.step(resumed, F)
    assert house.r[T].scan() == house.r[P].scan()
    assert house.r[T].version_vector()[P] == 12


def test_a_crash_inside_a_pages_whole_batches_leaves_none_of_that_page(
    house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_batches(house.r[P], 12)
    (nxt,) = house.step(house.r[T].pull_from(P))
    before = house.r[T].scan()
    file: StoreFile = house.r[T]._file
    real = file.upsert

    def dies_midway(params: Any, *, newer_only: bool) -> None:
        real(params[: len(params) // 2], newer_only=newer_only)
        raise SimulatedCrash("killed mid-transaction")

    monkeypatch.setattr(file, "upsert", dies_midway)
    with pytest.raises(SimulatedCrash):
        house.step(nxt)
    monkeypatch.undo()
    assert house.r[T].scan() == before
    house.reopen_tablet()
    resumed = house.r[T].pull_from(P)
    assert resumed.after == nxt.after  # the page that died is asked for again
    while isinstance(resumed, Pull):
        (resumed,) = house.step(resumed)
    assert house.r[T].scan() == house.r[P].scan()
    assert house.r[T].version_vector() == house.r[P].version_vector()


def _note_durability(monkeypatch: pytest.MonkeyPatch, file: StoreFile) -> list[bool]:
    """Each transaction the file begins from now on: durable or not."""
    noted: list[bool] = []
    real = file.transaction

    def transaction(*, durable: bool = True) -> Any:
        noted.append(durable)
        return real(durable=durable)

    monkeypatch.setattr(file, "transaction", transaction)
    return noted


def test_a_partial_batch_waits_in_staging_and_only_such_a_page_skips_the_sync(
    house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fridge relays what is left of the phone's first batch (its later batch
    replaced half of it): those rows wait in staging for the last page, so the
    tablet never holds part of a batch the rest of which is still to come; that
    page need not survive a power cut (it is fetched again). A page whose whole
    batches went in syncs: its rows took lseqs pullers of ours may be promised."""
    with house.r[P].batch() as b:
        for j in range(6):
            b.put(f"k{j}", bytes(40))
    with house.r[P].batch() as b:
        for j in range(3):
            b.put(f"k{j}", b"later" + bytes(40))
    for push in house.r[P].take_pushes():
        deliver_all(house.r, [(P, F, push)])
    noted = _note_durability(monkeypatch, house.r[T]._file)
    (nxt,) = house.step(house.r[T].pull_from(F), F)
    assert isinstance(nxt, Pull)
    assert house.r[T].scan() == []
    assert _staged_rows(house.r[T]) == 3  # k3, k4, k5 of the first batch
    assert noted[-1] is False
    noted.clear()
    while isinstance(nxt, Pull):
        (nxt,) = house.step(nxt, F)
    assert house.r[T].scan() == house.r[P].scan()
    assert house.r[T].version_vector() == house.r[P].version_vector()
    assert noted
    assert all(noted)


def test_a_whole_batch_already_reflected_here_is_not_revived(house: House) -> None:
    """The fridge kept a page of the phone's first batch (k = v) and, after the phone
    deleted k and the tablet collected the tombstone, relays it to the tablet with
    the phone's valid proof, beside the phone's next batch: the tablet's version
    covers the first, so only the next one goes in."""
    house.r[P].put("k", b"v")
    old = house.r[P].receive(F, Pull(DATA_VERSION, "bank", {}, 99))[0]
    assert isinstance(old, Page)
    assert len(old.groups) == 1
    house.r[P].delete("k")
    for push in house.r[P].take_pushes():
        deliver_all(house.r, [(P, T, push), (P, F, push)])
    for member in (P, F):
        house.r[T].receive(member, house.r[member].summary())
    house.clock.advance(1)
    assert house.r[T].collect_garbage() == 1
    house.r[P].put("j", b"w")
    new = house.r[P].receive(F, Pull(DATA_VERSION, "bank", {P: 2}, 98))[0]
    assert isinstance(new, Page)
    assert new.ids == old.ids == (P,)
    pull = house.r[T].pull_from(F)
    replay = msgspec.structs.replace(
        new, session=pull.session, epoch=house.r[F].epoch, after=0, vv={P: 3},
        groups=old.groups + new.groups,
    )  # fmt: skip
    house.r[T].receive(F, replay)
    assert house.r[T].get("k") is None
    assert house.r[T].get("j") == b"w"
    assert house.r[T].version_vector()[P] == 3
