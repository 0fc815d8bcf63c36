"""What a join costs every member's directory: a host opening and closing its pairing
window (twice per join in a circle) changes a member's record in memory and tells its
listeners, but writes nothing; what must survive a restart is still written."""

from __future__ import annotations

from accord.bus.directory import DeviceDirectory, DeviceRecord, DirectoryEvent
from accord.clock import ManualClock
from accord.device.identity import Identity
from accord.profile import load_builtin
from accord.wire import PROTOCOL_VERSION, Announcement
from accord.wire.messages import PublicAnnouncement

HOST = Identity.generate()


def _public(seq: int, *, pairing: bool) -> PublicAnnouncement:
    return PublicAnnouncement(PROTOCOL_VERSION, HOST.device_id, "host", "laptop",
                              HOST.public_bytes, pairing=pairing, seq=seq)  # fmt: skip


def _details() -> Announcement:
    p = load_builtin("laptop")
    return Announcement(v=PROTOCOL_VERSION, device_id=HOST.device_id, name="host",
                        public_key=HOST.public_bytes, profile=p, started_at=1.0,
                        capabilities=p.capabilities())  # fmt: skip


def test_a_members_pairing_window_is_announced_but_not_written() -> None:
    written: list[DeviceRecord] = []
    events: list[DirectoryEvent] = []
    clock = ManualClock(wall=1_700_000_000.0)
    directory = DeviceDirectory(clock, save=written.append)
    directory.subscribe(events.append)
    directory.announced(_public(1, pairing=False), "member")
    directory.seen(_details(), standing="member")
    assert len(written) == 2  # a member coming online, then its details: kept

    for seq in range(2, 12):  # five joins: the window opens and closes each time
        clock.advance(1.0)
        directory.announced(_public(seq, pairing=seq % 2 == 0), "member")
    assert len(written) == 2
    assert len(events) == 12  # every change is still told
    record = directory.get(HOST.device_id)
    assert record is not None
    assert (record.pairing, record.announce_seq) == (False, 11)

    directory.set_standing(HOST.device_id, "revoked")  # what a restart needs: written
    clock.advance(1.0)
    directory.lost(HOST.device_id)
    assert [r.standing for r in written[2:]] == ["revoked"]  # revoked: not kept, dropped once
