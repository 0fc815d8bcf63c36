"""The live device directory: every device this node knows, online or not.

Pure state plus events; persistence is injected (see :class:`DirectoryDB`), time is
injected through the Clock.

Anyone on the network can announce a device, so what strangers cause is bounded:
at most :data:`MAX_STRANGERS` records of devices that are not members (strangers,
revoked devices) are held, in memory only, least recently seen dropped first.
Only this device and its members are persisted. A member's name and type come from
its sealed details, never from a public announcement.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import msgspec

from accord.clock import Clock
from accord.device.identity import fingerprint
from accord.profile import Profile
from accord.wire.messages import Announcement, PublicAnnouncement

log = logging.getLogger(__name__)

EventKind = Literal["joined", "left", "updated"]


Standing = Literal["self", "member", "revoked", "stranger"]
MAX_STRANGERS = 256


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What this node knows of a device. Profile details (vendor, model, level,
    capabilities) are only known for circle members."""

    device_id: str
    name: str
    type: str
    online: bool
    first_seen: float
    last_seen: float
    vendor: str = ""
    model: str = ""
    security_level: str = ""
    capabilities: list[str] = []
    summary: str = ""
    is_self: bool = False
    profile: Profile | None = None
    standing: Standing = "stranger"
    fingerprint: str = ""
    pairing: bool = False
    announce_seq: int = 0


_VOLATILE = {"pairing": False, "announce_seq": 0, "last_seen": 0.0}


def _same_but_volatile(old: DeviceRecord, new: DeviceRecord) -> bool:
    """Do two records of an online device differ only in what is not worth a write?
    (``last_seen`` of an online device is now; a restart starts its count again.)"""
    return (
        old.online
        and new.online
        and msgspec.structs.replace(old, **_VOLATILE) == msgspec.structs.replace(new, **_VOLATILE)
    )


def is_kept(record: DeviceRecord) -> bool:
    """Whether a record is persisted: this device and its members only."""
    return record.is_self or record.standing in ("self", "member")


class DirectoryEvent(msgspec.Struct, frozen=True):
    kind: EventKind
    device: DeviceRecord
    at: float


Listener = Callable[[DirectoryEvent], None]


class DeviceDirectory:
    def __init__(
        self,
        clock: Clock,
        *,
        load: Callable[[], list[DeviceRecord]] | None = None,
        save: Callable[[DeviceRecord], None] | None = None,
    ) -> None:
        self._clock = clock
        self._save = save
        self._records: dict[str, DeviceRecord] = {}
        self._strangers: OrderedDict[str, None] = OrderedDict()  # least recently seen first
        self.evicted_online = 0  # online strangers dropped for room (presence re-finds them)
        self._listeners: list[Listener] = []
        for rec in load() if load else []:
            if is_kept(rec):  # an older version persisted strangers too: not any more
                # Nothing is online until presence says so in this run.
                self._records[rec.device_id] = msgspec.structs.replace(rec, online=False)

    def get(self, device_id: str) -> DeviceRecord | None:
        return self._records.get(device_id)

    def stored(self) -> list[DeviceRecord]:
        """All records as held, in no order: for loops that look at every device on
        every change (no copies, no sort; ``last_seen`` of an online one is when it was
        last updated). People are shown :meth:`records`."""
        return list(self._records.values())

    def count(self) -> int:
        """How many records are held."""
        return len(self._records)

    def records(self) -> list[DeviceRecord]:
        """All records; online ones have ``last_seen`` = now."""
        now = self._clock.wall()
        out = [
            msgspec.structs.replace(r, last_seen=now) if r.online else r
            for r in self._records.values()
        ]
        return sorted(out, key=lambda r: (not r.is_self, not r.online, r.name, r.device_id))

    def online_ids(self) -> set[str]:
        return {d for d, r in self._records.items() if r.online}

    def seen(
        self, ann: Announcement, *, is_self: bool = False, standing: Standing | None = None
    ) -> DirectoryEvent:
        """A device is online, with its full details (known for members)."""
        now = self._clock.wall()
        old = self._records.get(ann.device_id)
        rec = DeviceRecord(
            device_id=ann.device_id,
            name=ann.name,
            type=ann.profile.type,
            vendor=ann.profile.vendor,
            model=ann.profile.model,
            security_level=ann.profile.security_level,
            capabilities=ann.profile.capabilities(),
            summary=ann.profile.summary(),
            online=True,
            first_seen=old.first_seen if old else now,
            last_seen=now,
            is_self=is_self,
            profile=ann.profile,
            standing=standing or ("self" if is_self else old.standing if old else "member"),
            fingerprint=fingerprint(ann.public_key),
            pairing=old.pairing if old else False,
            announce_seq=old.announce_seq if old else 0,
        )
        kind: EventKind = "updated" if old is not None and old.online else "joined"
        return self._commit(rec, kind, now)

    def announced(self, pub: PublicAnnouncement, standing: Standing) -> DirectoryEvent | None:
        """A device is online with its (verified) public announcement; details it had
        stay. A member keeps the name and type its sealed details gave it. None: the
        announcement is older than one already taken while the device stayed online
        (a replay), and changes nothing."""
        now = self._clock.wall()
        old = self._records.get(pub.device_id)
        if old is not None and old.online and pub.seq < old.announce_seq:
            return None
        base = old or DeviceRecord(
            device_id=pub.device_id,
            name=pub.name,
            type=pub.type,
            online=True,
            first_seen=now,
            last_seen=now,
        )
        named_by_details = old is not None and standing in ("self", "member")
        rec = msgspec.structs.replace(
            base,
            name=base.name if named_by_details else pub.name,
            type=base.type if named_by_details else pub.type,
            online=True,
            last_seen=now,
            standing=standing,
            fingerprint=fingerprint(pub.public_key),
            pairing=pub.pairing,
            announce_seq=pub.seq,
        )
        kind: EventKind = "updated" if old is not None and old.online else "joined"
        return self._commit(rec, kind, now)

    def set_standing(self, device_id: str, standing: Standing) -> DirectoryEvent | None:
        old = self._records.get(device_id)
        if old is None or old.standing == standing:
            return None
        now = self._clock.wall()
        return self._commit(msgspec.structs.replace(old, standing=standing), "updated", now)

    def lost(self, device_id: str) -> DirectoryEvent | None:
        """A device went offline; None if it was not known to be online."""
        old = self._records.get(device_id)
        if old is None or not old.online:
            return None
        now = self._clock.wall()
        rec = msgspec.structs.replace(old, online=False, last_seen=now)
        return self._commit(rec, "left", now)

    def strangers(self) -> int:
        """How many records of non-members are held (at most MAX_STRANGERS)."""
        return len(self._strangers)

    def _commit(self, rec: DeviceRecord, kind: EventKind, now: float) -> DirectoryEvent:
        old = self._records.get(rec.device_id)
        self._records[rec.device_id] = rec
        if is_kept(rec):
            self._strangers.pop(rec.device_id, None)
        else:
            self._strangers[rec.device_id] = None
            self._strangers.move_to_end(rec.device_id)
        # Strangers are never written; a record that stops being kept is written once
        # more, so the store drops it (see DirectoryDB.save). A change only to what
        # matters while the device is online (its pairing flag and announcement number,
        # twice per join in a circle) is not written: every member would otherwise write
        # a row for every window a host opens and closes.
        if (
            self._save is not None
            and (is_kept(rec) or (old is not None and is_kept(old)))
            and not (old is not None and _same_but_volatile(old, rec))
        ):
            try:
                self._save(rec)
            except Exception:
                log.exception("cannot persist directory record %s", rec.device_id)
        event = self._emit(DirectoryEvent(kind, rec, now))
        while len(self._strangers) > MAX_STRANGERS:
            self._evict(now)
        return event

    def _evict(self, now: float) -> None:
        """Drop the least recently seen stranger, offline ones first."""
        victim = next(
            (d for d in self._strangers if not self._records[d].online),
            next(iter(self._strangers)),
        )
        del self._strangers[victim]
        rec = self._records.pop(victim)
        if rec.online:
            self.evicted_online += 1
            self._emit(DirectoryEvent("left", msgspec.structs.replace(rec, online=False), now))

    def _emit(self, event: DirectoryEvent) -> DirectoryEvent:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("directory listener failed")
        return event

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every join, leave and update; returns the undo."""
        self._listeners.append(listener)

        def undo() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return undo

    def events(self, maxsize: int = 1024) -> EventStream:
        """Joins, leaves and updates as an async iterator, subscribed from this call on
        (nothing is missed between the call and the first ``await``). Close it when
        done; a consumer ``maxsize`` events behind loses the oldest ones."""
        return EventStream(self, maxsize)


class EventStream:
    """An async iterator over directory events, backed by a bounded queue."""

    def __init__(self, directory: DeviceDirectory, maxsize: int) -> None:
        # One slot more than maxsize, so the end-of-stream marker always fits.
        self._queue: asyncio.Queue[DirectoryEvent | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self._undo = directory.subscribe(self._push)
        self._closed = False
        self.dropped = 0

    def _push(self, event: DirectoryEvent) -> None:
        if self._queue.qsize() >= self._maxsize:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> DirectoryEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop the stream: a waiting or later ``__anext__`` ends the iteration."""
        if self._closed:
            return
        self._closed = True
        self._undo()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def aclose(self) -> None:
        self.close()
