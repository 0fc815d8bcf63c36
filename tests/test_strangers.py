"""Unpaired hostile devices (issue 12 §7), played by a raw Zenoh session (not Accord's
code) against in-process nodes and a real node process: a flood of fake devices stays
bounded and is never written to disk, members keep being served, and no unsigned or
forged announcement renames a device."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zenoh

from accord.bus import keys
from accord.bus.directory import MAX_STRANGERS
from accord.bus.presence import MAX_STRANGER_FETCHES, MAX_WAITING
from accord.bus.settings import BusSettings, zenoh_config
from accord.device.identity import Identity
from accord.node import Node
from accord.sim.household import free_port
from accord.wire.messages import PROTOCOL_VERSION, PublicAnnouncement, encode, sign_public
from tests.helpers import accord, online_ids, wait_for
from tests.nodes import Mesh, circle_of, detailed, pair, sees, wait_until

FLOOD = 600


def _announcement(identity: Identity, name: str, *, signed: bool = True, seq: int = 1) -> bytes:
    ann = PublicAnnouncement(
        v=PROTOCOL_VERSION,
        device_id=identity.device_id,
        name=name,
        type="tv",
        public_key=identity.public_bytes,
        pairing=True,
        seq=seq,
    )
    return encode(sign_public(ann, identity.sign) if signed else ann)


class Flood:
    """A raw Zenoh session that pretends to be FLOOD devices: a liveliness token each,
    and one queryable answering their announcements (two thirds validly signed, the
    rest unsigned or garbage)."""

    def __init__(self, endpoints: list[str]) -> None:
        conf = zenoh_config(BusSettings(connect=tuple(endpoints), multicast=False))
        self.session = zenoh.open(conf)
        self.answers: dict[str, bytes] = {}
        self.signed: set[str] = set()
        for i in range(FLOOD):
            identity = Identity.generate()
            if i % 3 == 0:
                payload = _announcement(identity, f"Unsigned {i}", signed=False)
            elif i % 6 == 1:
                payload = b"\xc1garbage" * (i % 7)
            else:
                payload = _announcement(identity, f"Fake {i}")
                self.signed.add(identity.device_id)
            self.answers[identity.device_id] = payload
        self.entities: list[object] = [
            self.session.declare_queryable(f"{keys.ANNOUNCE_PREFIX}/*", self._answer)
        ]
        for device_id in self.answers:
            self.entities.append(
                self.session.liveliness().declare_token(keys.presence_key(device_id))
            )

    def _answer(self, query: zenoh.Query) -> None:
        payload = self.answers.get(str(query.key_expr).rsplit("/", 1)[-1])
        if payload is not None:
            query.reply(query.key_expr, payload)

    def close(self) -> None:
        self.session.close()  # type: ignore[no-untyped-call]


def _stored_ids(node: Node) -> set[str]:
    """What the node's directory database holds on disk (read beside the running node)."""
    db = sqlite3.connect(node.home.data_dir / "directory.sqlite3")
    try:
        return {d for (d,) in db.execute("SELECT device_id FROM devices")}
    finally:
        db.close()


async def test_a_flood_of_600_fake_devices_stays_bounded_and_is_never_stored(
    mesh: Mesh,
) -> None:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    await pair(a, b)
    await wait_until(detailed(a, b), 5, "a to hold b's details")
    directory = a.directory
    assert directory is not None
    flood = await asyncio.get_running_loop().run_in_executor(None, Flood, mesh.endpoints)
    try:
        await wait_until(lambda: directory.strangers() == MAX_STRANGERS, 60, "the cap")
        presence = a._presence
        assert presence is not None
        for _ in range(20):  # while the flood is being worked through
            assert directory.strangers() <= MAX_STRANGERS
            assert len(presence._stranger_fetches) <= MAX_STRANGER_FETCHES
            assert len(presence._waiting) <= MAX_WAITING
            await asyncio.sleep(0.05)
        records = directory.records()
        assert len(records) <= MAX_STRANGERS + 2
        assert {r.device_id for r in records if r.standing == "stranger"} <= flood.signed
        # nothing of the flood reached the disk: only this device and its member
        assert _stored_ids(a) == {a.home.device_id, b.home.device_id}
        # members keep being served: b is listed by its own name, and a still
        # exchanges sealed details with it
        rec = directory.get(b.home.device_id)
        assert rec is not None
        assert rec.online
        assert rec.standing == "member"
        assert rec.name == "b"
        assert await a.sync._try_fetch(b.home.device_id)
    finally:
        flood.close()
    await wait_until(
        lambda: directory.online_ids() == {a.home.device_id, b.home.device_id},
        10,
        "the flood to go",
    )
    assert _stored_ids(a) == {a.home.device_id, b.home.device_id}
    # a real stranger still finds a and pairs afterwards
    c = await mesh.start("c", "tv")
    await pair(a, c)
    assert circle_of(a).is_member(c.home.device_id)


async def test_a_stranger_dropped_for_room_is_found_again_after_the_flood(
    mesh: Mesh,
) -> None:
    a = await mesh.start("a", "laptop")
    c = await mesh.start("c", "tv")  # a real device that has not paired yet
    await wait_until(lambda: sees(a, c), 5, "a to see c")
    directory = a.directory
    assert directory is not None
    flood = await asyncio.get_running_loop().run_in_executor(None, Flood, mesh.endpoints)
    try:
        # 400 newer strangers push c (the least recently seen) out of a's directory
        await wait_until(lambda: directory.get(c.home.device_id) is None, 60, "c dropped")
        assert directory.strangers() == MAX_STRANGERS
    finally:
        flood.close()
    # once the fakes leave, a replays the live tokens and finds c again
    await wait_until(lambda: sees(a, c), 20, "a to find c again")
    await pair(a, c)
    assert circle_of(a).is_member(c.home.device_id)


class Marker:
    """A stranger of the raw session's own, whose pairing flag it flips after its other
    puts: once the node shows the flip, it has handled every earlier put."""

    def __init__(self, session: zenoh.Session) -> None:
        self.session = session
        self.identity = Identity.generate()
        self.seq = 1
        self.current = self._bytes(pairing=False)
        self.entities = [
            session.declare_queryable(
                keys.announce_key(self.identity.device_id),
                lambda q: q.reply(q.key_expr, self.current),
            ),
            session.liveliness().declare_token(keys.presence_key(self.identity.device_id)),
        ]

    def _bytes(self, *, pairing: bool) -> bytes:
        ann = PublicAnnouncement(
            v=PROTOCOL_VERSION,
            device_id=self.identity.device_id,
            name="Marker",
            type="tv",
            public_key=self.identity.public_bytes,
            pairing=pairing,
            seq=self.seq,
        )
        return encode(sign_public(ann, self.identity.sign))

    async def flush(self, node: Node) -> None:
        directory = node.directory
        assert directory is not None
        rec = directory.get(self.identity.device_id)
        assert rec is not None
        flag = not rec.pairing
        self.seq += 1
        self.current = self._bytes(pairing=flag)
        self.session.put(keys.announce_key(self.identity.device_id), self.current)
        await wait_until(
            lambda: bool((r := directory.get(self.identity.device_id)) and r.pairing == flag),
            5,
            "the marker",
        )


async def test_no_unsigned_or_forged_announcement_renames_a_device(mesh: Mesh) -> None:
    phone = await mesh.start("Phone", "nokia-x60")
    tablet = await mesh.start("Tablet", "tablet")
    tv = await mesh.start("TV", "tv")  # stays a stranger to the others
    await pair(phone, tablet)
    await wait_until(detailed(tablet, phone), 5, "tablet to hold the phone's details")
    await wait_until(lambda: sees(tablet, tv), 5, "tablet to see the TV")
    directory = tablet.directory
    assert directory is not None
    conf = zenoh_config(BusSettings(connect=tuple(mesh.endpoints), multicast=False))
    session = zenoh.open(conf)
    try:
        marker = Marker(session)
        await wait_until(
            lambda: directory.get(marker.identity.device_id) is not None, 5, "the marker"
        )
        forger = Identity.generate()
        loop = asyncio.get_running_loop()

        def captured(device_id: str) -> bytes:
            replies = list(session.get(keys.announce_key(device_id), timeout=2.0))
            return next(r.ok.payload.to_bytes() for r in replies if r.ok is not None)

        genuine = {}
        for node in (phone, tv):
            device_id = node.home.device_id
            genuine[device_id] = await loop.run_in_executor(None, captured, device_id)
            real = msgspec.msgpack.decode(genuine[device_id], type=PublicAnnouncement)
            unsigned = msgspec.structs.replace(
                real, name="Fridge", type="refrigerator", seq=real.seq + 1, sig=b""
            )
            forged = sign_public(
                msgspec.structs.replace(real, name="Fridge", seq=real.seq + 2, sig=b""),
                forger.sign,
            )
            for payload in (encode(unsigned), encode(forged)):
                session.put(keys.announce_key(device_id), payload)
        # the phone's own key: a member is still named by its details, not by this
        phone_real = msgspec.msgpack.decode(genuine[phone.home.device_id], type=PublicAnnouncement)
        own_key = sign_public(
            msgspec.structs.replace(
                phone_real, name="Fridge", pairing=True, seq=phone_real.seq + 3
            ),
            phone.home.identity.sign,
        )
        session.put(keys.announce_key(phone.home.device_id), encode(own_key))
        await marker.flush(tablet)  # every put above has been handled
        phone_rec = directory.get(phone.home.device_id)
        tv_rec = directory.get(tv.home.device_id)
        assert phone_rec is not None
        assert tv_rec is not None
        assert (phone_rec.name, phone_rec.type) == ("Phone", "phone")
        assert phone_rec.pairing  # the phone's own announcement was taken, not its name
        assert (tv_rec.name, tv_rec.type) == ("TV", "tv")
        # A replay of the TV's earlier genuine announcement does not undo a newer one.
        await tv.trust.pair_window({"timeout": 30})
        await wait_until(
            lambda: bool((r := directory.get(tv.home.device_id)) and r.pairing), 5, "the flag"
        )
        session.put(keys.announce_key(tv.home.device_id), genuine[tv.home.device_id])
        await marker.flush(tablet)
        tv_rec = directory.get(tv.home.device_id)
        assert tv_rec is not None
        assert tv_rec.pairing
    finally:
        session.close()  # type: ignore[no-untyped-call]


# --- against a real node process --------------------------------------------------------


@pytest.fixture
def running(short_tmp: Path) -> Iterator[tuple[Path, int]]:
    home = short_tmp / "n1"
    assert accord("init", "--home", str(home), "--profile", "nokia-x60").returncode == 0
    port = free_port()
    cmd = [sys.executable, "-m", "accord", "up", "--home", str(home), "--no-multicast"]
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--listen", f"tcp/127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        wait_for(lambda: online_ids(home), 15.0, "node to start")
        yield home, port
    finally:
        proc.terminate()
        try:  # generous: a loaded 2-core CI machine is slow to stop a flooded node
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the node did not stop within 30 s of SIGTERM") from None
        assert code == 0, (home / "node.log").read_text()


def _devices(home: Path) -> list[dict[str, object]]:
    proc = accord("devices", "--home", str(home), "--json")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, object]] = json.loads(proc.stdout)
    return rows


def test_a_real_node_keeps_a_flood_bounded_and_off_its_disk(
    running: tuple[Path, int],
) -> None:
    home, port = running
    flood = Flood([f"tcp/127.0.0.1:{port}"])
    try:
        wait_for(lambda: len(_devices(home)) == MAX_STRANGERS + 1, 60, "the directory to fill")
        time.sleep(1.0)  # the rest of the flood is worked through
        rows = _devices(home)
        assert len(rows) == MAX_STRANGERS + 1  # itself and at most MAX_STRANGERS others
        assert all(r["is_self"] or r["standing"] == "stranger" for r in rows)
        assert all(r["is_self"] or r["device_id"] in flood.signed for r in rows)
    finally:
        flood.close()
    db = sqlite3.connect(home / "data" / "directory.sqlite3")
    try:
        stored = [d for (d,) in db.execute("SELECT device_id FROM devices")]
    finally:
        db.close()
    assert len(stored) == 1  # only itself: 600 fake devices left nothing on disk
