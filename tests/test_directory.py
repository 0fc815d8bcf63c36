"""The device directory: joins, leaves and updates as events, on a manual clock, with
persistence through DirectoryDB."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import aclosing
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.bus.directory import MAX_STRANGERS, DeviceDirectory, DeviceRecord, DirectoryEvent
from accord.bus.directory_db import DirectoryDB
from accord.clock import ManualClock
from accord.device.identity import Identity
from accord.errors import HomeError
from accord.profile import load_builtin
from accord.wire import PROTOCOL_VERSION, Announcement
from accord.wire.messages import PublicAnnouncement, sign_public

T0 = 1_700_000_000.0


def _announcement(seed: int, profile: str = "nokia-x60", name: str | None = None) -> Announcement:
    identity = Identity(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))
    p = load_builtin(profile)
    return Announcement(
        v=PROTOCOL_VERSION,
        device_id=identity.device_id,
        name=name or p.name,
        public_key=identity.public_bytes,
        profile=p,
        started_at=T0,
        capabilities=p.capabilities(),
    )


PHONE = _announcement(1, "nokia-x60", "Phone")
FRIDGE = _announcement(2, "midea-fridge", "Fridge")
TV = _announcement(3, "tv", "Alpha TV")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall=T0)


@pytest.fixture
def directory(clock: ManualClock) -> DeviceDirectory:
    return DeviceDirectory(clock)


# --- joins, updates, leaves ---------------------------------------------------------------


def test_seen_is_a_join(directory: DeviceDirectory) -> None:
    event = directory.seen(PHONE)
    assert event.kind == "joined"
    assert event.at == T0
    rec = event.device
    assert rec.device_id == PHONE.device_id
    assert rec.name == "Phone"
    assert rec.type == "phone"
    assert rec.vendor == "Nokia"
    assert rec.model == "X60"
    assert rec.security_level == "SL4"
    assert rec.capabilities == PHONE.profile.capabilities()
    assert rec.summary == PHONE.profile.summary()
    assert rec.online
    assert rec.first_seen == rec.last_seen == T0
    assert not rec.is_self
    assert rec.profile == PHONE.profile
    assert directory.get(PHONE.device_id) == rec
    assert directory.online_ids() == {PHONE.device_id}


def test_seen_again_while_online_is_an_update(
    directory: DeviceDirectory, clock: ManualClock
) -> None:
    directory.seen(PHONE)
    clock.advance(5)
    renamed = _announcement(1, "nokia-x60", "Renamed phone")
    event = directory.seen(renamed)
    assert event.kind == "updated"
    assert event.at == T0 + 5
    assert event.device.name == "Renamed phone"
    assert event.device.first_seen == T0
    assert event.device.last_seen == T0 + 5


def test_lost_is_a_leave(directory: DeviceDirectory, clock: ManualClock) -> None:
    directory.seen(PHONE)
    clock.advance(7)
    event = directory.lost(PHONE.device_id)
    assert event is not None
    assert event.kind == "left"
    assert event.at == T0 + 7
    assert not event.device.online
    assert event.device.last_seen == T0 + 7
    assert event.device.first_seen == T0
    assert directory.online_ids() == set()
    rec = directory.get(PHONE.device_id)
    assert rec is not None
    assert not rec.online


def test_lost_of_unknown_or_offline_is_none(directory: DeviceDirectory, clock: ManualClock) -> None:
    assert directory.lost(PHONE.device_id) is None
    assert directory.lost("not-even-an-id") is None
    directory.seen(PHONE)
    assert directory.lost(PHONE.device_id) is not None
    clock.advance(1)
    assert directory.lost(PHONE.device_id) is None
    rec = directory.get(PHONE.device_id)
    assert rec is not None
    assert rec.last_seen == T0  # the second lost() changed nothing


def test_first_seen_survives_offline_and_online(
    directory: DeviceDirectory, clock: ManualClock
) -> None:
    directory.seen(PHONE)
    clock.advance(10)
    directory.lost(PHONE.device_id)
    clock.advance(10)
    event = directory.seen(PHONE)
    assert event.kind == "joined"  # back online after a leave is a join, not an update
    assert event.device.first_seen == T0
    assert event.device.last_seen == T0 + 20


def test_get_unknown_is_none(directory: DeviceDirectory) -> None:
    assert directory.get(PHONE.device_id) is None
    assert directory.records() == []


# --- records ------------------------------------------------------------------------------


def test_records_sorting_and_last_seen(directory: DeviceDirectory, clock: ManualClock) -> None:
    me = _announcement(9, "laptop", "Zulu laptop")
    offline = _announcement(4, "tablet", "Aaa tablet")
    directory.seen(PHONE)
    directory.seen(offline)
    directory.seen(me, is_self=True)
    directory.seen(TV)
    clock.advance(3)
    directory.lost(offline.device_id)
    clock.advance(30)

    records = directory.records()
    assert [r.name for r in records] == ["Zulu laptop", "Alpha TV", "Phone", "Aaa tablet"]
    assert records[0].is_self
    assert [r.online for r in records] == [True, True, True, False]
    for r in records[:3]:
        assert r.last_seen == T0 + 33  # online: seen now
        assert r.first_seen == T0
    assert records[3].last_seen == T0 + 3  # offline: when it left
    # The stored records keep the time they were last updated.
    stored = directory.get(PHONE.device_id)
    assert stored is not None
    assert stored.last_seen == T0


def test_records_ties_sort_by_device_id(directory: DeviceDirectory) -> None:
    a = _announcement(5, "tv", "Same")
    b = _announcement(6, "tv", "Same")
    directory.seen(a)
    directory.seen(b)
    assert [r.device_id for r in directory.records()] == sorted([a.device_id, b.device_id])


# --- listeners ----------------------------------------------------------------------------


def test_subscribe_and_undo(directory: DeviceDirectory) -> None:
    got: list[DirectoryEvent] = []
    undo = directory.subscribe(got.append)
    directory.seen(PHONE)
    directory.seen(PHONE)
    directory.lost(PHONE.device_id)
    assert [e.kind for e in got] == ["joined", "updated", "left"]
    undo()
    undo()  # idempotent
    directory.seen(PHONE)
    assert len(got) == 3


def test_failing_listener_does_not_break_others(
    directory: DeviceDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    before: list[str] = []
    after: list[str] = []

    def boom(event: DirectoryEvent) -> None:
        raise RuntimeError("listener bug")

    directory.subscribe(lambda e: before.append(e.kind))
    directory.subscribe(boom)
    directory.subscribe(lambda e: after.append(e.kind))
    with caplog.at_level(logging.ERROR, logger="accord.bus.directory"):
        event = directory.seen(PHONE)
    assert event.kind == "joined"
    assert before == after == ["joined"]
    assert "directory listener failed" in caplog.text
    assert directory.online_ids() == {PHONE.device_id}


def test_listener_may_unsubscribe_itself(directory: DeviceDirectory) -> None:
    got: list[str] = []

    def once(event: DirectoryEvent) -> None:
        got.append(event.kind)
        undo()

    undo = directory.subscribe(once)
    directory.seen(PHONE)
    directory.seen(PHONE)
    assert got == ["joined"]


# --- async events -------------------------------------------------------------------------


async def test_events_iterator(directory: DeviceDirectory) -> None:
    async with aclosing(directory.events()) as events:
        # Subscribed from the call on: events before the first await are not missed.
        directory.seen(PHONE)
        directory.seen(PHONE)
        directory.lost(PHONE.device_id)
        got = [await anext(events) for _ in range(3)]
    assert [(e.kind, e.device.device_id) for e in got] == [
        ("joined", PHONE.device_id),
        ("updated", PHONE.device_id),
        ("left", PHONE.device_id),
    ]


async def test_events_with_async_for(directory: DeviceDirectory) -> None:
    got: list[str] = []
    async with aclosing(directory.events()) as events:
        directory.seen(PHONE)
        directory.seen(FRIDGE)
        async for event in events:
            got.append(event.device.name)
            if len(got) == 2:
                break
    assert got == ["Phone", "Fridge"]


async def test_events_wait_for_the_next_event(directory: DeviceDirectory) -> None:
    async with aclosing(directory.events()) as events:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        assert not pending.done()
        directory.seen(TV)
        event = await pending
    assert (event.kind, event.device.name) == ("joined", "Alpha TV")


async def test_events_drop_oldest_when_full(directory: DeviceDirectory) -> None:
    names = [f"Device {i}" for i in range(6)]
    anns = [_announcement(10 + i, "tv", n) for i, n in enumerate(names)]
    async with aclosing(directory.events(maxsize=2)) as events:
        for ann in anns[:5]:
            directory.seen(ann)
        # Five events into a queue of two: the three oldest are gone.
        assert events.dropped == 3
        got = [await anext(events), await anext(events)]
        assert [e.device.name for e in got] == names[3:5]
        directory.seen(anns[5])
        assert (await anext(events)).device.name == names[5]
        assert events.dropped == 3


async def test_events_unsubscribe_on_close(directory: DeviceDirectory) -> None:
    events = directory.events(maxsize=1)
    directory.seen(PHONE)
    assert (await anext(events)).kind == "joined"
    await events.aclose()
    for _ in range(5):
        directory.seen(PHONE)
    assert events.dropped == 0  # no longer subscribed: nothing queued, nothing dropped
    counter: list[DirectoryEvent] = []
    directory.subscribe(counter.append)
    directory.lost(PHONE.device_id)
    assert len(counter) == 1


async def test_two_streams_each_see_every_event(directory: DeviceDirectory) -> None:
    async with aclosing(directory.events()) as a, aclosing(directory.events()) as b:
        directory.seen(PHONE)
        assert (await anext(a)).device.device_id == PHONE.device_id
        assert (await anext(b)).device.device_id == PHONE.device_id


# --- persistence --------------------------------------------------------------------------


def test_persistence_loads_records_offline(short_tmp: Path, clock: ManualClock) -> None:
    path = short_tmp / "directory.db"
    db = DirectoryDB(path)
    try:
        d1 = DeviceDirectory(clock, load=db.load, save=db.save)
        d1.seen(PHONE, is_self=True)
        d1.seen(FRIDGE)
        clock.advance(4)
        d1.lost(FRIDGE.device_id)
        clock.advance(4)
        d1.seen(PHONE)  # update: last_seen T0 + 8
        saved = {r.device_id: r for r in d1.records()}
    finally:
        db.close()

    clock.advance(100)
    db2 = DirectoryDB(path)
    try:
        d2 = DeviceDirectory(clock, load=db2.load, save=db2.save)
        assert d2.online_ids() == set()
        records = {r.device_id: r for r in d2.records()}
        assert set(records) == {PHONE.device_id, FRIDGE.device_id}
        for device_id, rec in records.items():
            assert not rec.online
            assert rec == msgspec.structs.replace(saved[device_id], online=False)
        assert records[PHONE.device_id].first_seen == T0
        assert records[PHONE.device_id].last_seen == T0 + 8
        assert records[FRIDGE.device_id].last_seen == T0 + 4
        assert records[FRIDGE.device_id].profile == FRIDGE.profile

        event = d2.seen(FRIDGE)
        assert event.kind == "joined"
        assert event.device.first_seen == T0  # first seen in the earlier run
        assert event.device.last_seen == T0 + 108
    finally:
        db2.close()


def test_persistence_drops_unreadable_records(
    short_tmp: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = short_tmp / "directory.db"
    db = DirectoryDB(path)
    try:
        db.save(DeviceDirectory(clock).seen(PHONE).device)
    finally:
        db.close()
    raw = sqlite3.connect(path)
    try:
        with raw:
            raw.execute("INSERT INTO devices VALUES ('junk', ?)", (b"\xc1not msgpack",))
    finally:
        raw.close()
    db = DirectoryDB(path)
    try:
        with caplog.at_level(logging.WARNING, logger="accord.bus.directory_db"):
            loaded = db.load()
    finally:
        db.close()
    assert [r.device_id for r in loaded] == [PHONE.device_id]
    assert "junk" in caplog.text


def test_failing_save_does_not_break_the_directory(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_save(rec: DeviceRecord) -> None:
        raise OSError("disk full")

    got: list[str] = []
    directory = DeviceDirectory(clock, save=broken_save)
    directory.subscribe(lambda e: got.append(e.kind))
    with caplog.at_level(logging.ERROR, logger="accord.bus.directory"):
        assert directory.seen(PHONE).kind == "joined"
    assert got == ["joined"]
    assert "cannot persist" in caplog.text


def test_directory_db_in_unwritable_place(short_tmp: Path) -> None:
    blocker = short_tmp / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HomeError, match="cannot open"):
        DirectoryDB(blocker / "directory.db")


async def test_closing_a_stream_ends_a_waiting_iteration(directory: DeviceDirectory) -> None:
    stream = directory.events()
    waiter = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1.0)
    directory.seen(_announcement(7))  # no longer subscribed: nothing queues up
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


# --- strangers: bounded, in memory only; members named by their details (issue 12 §7) ---


def _public(
    seed: int, name: str = "Stranger", *, seq: int = 1, pairing: bool = False
) -> PublicAnnouncement:
    identity = Identity(Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big")))
    return sign_public(
        PublicAnnouncement(
            v=PROTOCOL_VERSION,
            device_id=identity.device_id,
            name=name,
            type="tv",
            public_key=identity.public_bytes,
            pairing=pairing,
            seq=seq,
        ),
        identity.sign,
    )


def test_stranger_records_are_bounded_and_least_recently_seen_go_first(
    directory: DeviceDirectory, clock: ManualClock
) -> None:
    anns = [_public(1000 + i) for i in range(MAX_STRANGERS + 344)]  # 600 strangers
    left: list[str] = []
    directory.subscribe(lambda e: left.append(e.device.device_id) if e.kind == "left" else None)
    directory.seen(PHONE, is_self=True, standing="self")
    directory.seen(FRIDGE, standing="member")
    for ann in anns:
        clock.advance(0.01)
        directory.announced(ann, "stranger")
    assert directory.strangers() == MAX_STRANGERS
    assert len(directory.records()) == MAX_STRANGERS + 2  # self and the member stay
    kept = {r.device_id for r in directory.records()}
    assert {PHONE.device_id, FRIDGE.device_id} <= kept
    assert {a.device_id for a in anns[-MAX_STRANGERS:]} <= kept  # the newest stay
    # an evicted online stranger is reported as gone, so watchers do not hold it forever
    assert left == [a.device_id for a in anns[:344]]


def test_offline_strangers_are_evicted_before_online_ones(directory: DeviceDirectory) -> None:
    anns = [_public(2000 + i) for i in range(MAX_STRANGERS)]
    for ann in anns:
        directory.announced(ann, "stranger")
    directory.lost(anns[-1].device_id)  # the newest, but offline
    directory.announced(_public(3000), "stranger")
    assert directory.get(anns[-1].device_id) is None
    assert directory.get(anns[0].device_id) is not None


def test_strangers_are_never_persisted(short_tmp: Path, clock: ManualClock) -> None:
    db = DirectoryDB(short_tmp / "directory.db")
    try:
        d = DeviceDirectory(clock, load=db.load, save=db.save)
        d.seen(PHONE, is_self=True, standing="self")
        d.seen(FRIDGE, standing="member")
        for i in range(50):
            d.announced(_public(4000 + i), "stranger")
        d.announced(_public(5000), "revoked")
        assert sorted(db.ids()) == sorted([PHONE.device_id, FRIDGE.device_id])
        # a member that becomes a stranger (e.g. after `trust leave`) is deleted
        d.set_standing(FRIDGE.device_id, "stranger")
        assert db.ids() == [PHONE.device_id]
    finally:
        db.close()


def test_strangers_stored_by_an_older_version_are_dropped(
    short_tmp: Path, clock: ManualClock
) -> None:
    path = short_tmp / "directory.db"
    raw = sqlite3.connect(path)
    try:
        with raw:
            raw.execute("CREATE TABLE devices (device_id TEXT PRIMARY KEY, record BLOB NOT NULL)")
            for i in range(600):  # what 600 fake announcements left on disk before
                rec = DeviceDirectory(clock).announced(_public(6000 + i), "stranger")
                assert rec is not None
                raw.execute(
                    "INSERT INTO devices VALUES (?, ?)",
                    (rec.device.device_id, msgspec.msgpack.encode(rec.device)),
                )
            member = DeviceDirectory(clock).seen(FRIDGE, standing="member").device
            raw.execute(
                "INSERT INTO devices VALUES (?, ?)",
                (member.device_id, msgspec.msgpack.encode(member)),
            )
    finally:
        raw.close()
    db = DirectoryDB(path)
    try:
        d = DeviceDirectory(clock, load=db.load, save=db.save)
        assert [r.device_id for r in d.records()] == [FRIDGE.device_id]
        assert db.ids() == [FRIDGE.device_id]
    finally:
        db.close()


def test_a_public_announcement_never_renames_a_member(directory: DeviceDirectory) -> None:
    directory.seen(PHONE, standing="member")  # sealed details: "Phone"
    identity = Identity(Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
    renamed = sign_public(
        PublicAnnouncement(
            v=PROTOCOL_VERSION,
            device_id=identity.device_id,
            name="Fridge",
            type="refrigerator",
            public_key=identity.public_bytes,
            pairing=True,
            seq=5,
        ),
        identity.sign,
    )
    event = directory.announced(renamed, "member")
    assert event is not None
    assert (event.device.name, event.device.type) == ("Phone", "phone")
    assert event.device.pairing  # what only the public announcement says is taken


def test_an_older_announcement_is_ignored_while_the_device_stays_online(
    directory: DeviceDirectory,
) -> None:
    assert directory.announced(_public(7000, seq=10, pairing=True), "stranger") is not None
    assert directory.announced(_public(7000, seq=9, pairing=False), "stranger") is None
    rec = directory.get(_public(7000).device_id)
    assert rec is not None
    assert rec.pairing
    directory.lost(rec.device_id)  # after a restart its clock may have gone back
    event = directory.announced(_public(7000, seq=3), "stranger")
    assert event is not None
    assert event.kind == "joined"
