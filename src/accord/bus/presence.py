"""Presence: announce this device, and track which devices are online.

A node declares a liveliness token at ``accord/v1/presence/<id>`` and answers
queries on ``accord/v1/announce/<id>`` with its *public* announcement (id, name,
type, key, whether it accepts pairing), signed by its identity key, and publishes
it there again whenever it changes. When a token appears, the node fetches that
device's announcement, checks the signature, and adds it to the directory; when
the token goes, the device is marked offline. What members learn beyond that
travels sealed (see ``accord.trust.sync``).

Anyone can declare tokens and answer queries, so the work strangers can cause is
bounded: members' announcements are fetched at once, everyone else's by at most
:data:`MAX_STRANGER_FETCHES` tasks from a queue of at most :data:`MAX_WAITING`
devices; at most :data:`MAX_REPLIES` replies of one query are looked at; and
re-published announcements are checked at most :data:`UPDATE_RATE` times a second.
A stranger dropped for room while its token lived (a flood beyond the bounds) is
found again once devices leave: presence then replays the live tokens, at most
every :data:`RESYNC_EVERY_S` seconds, and fetches those it holds no record of.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, Standing
from accord.bus.session import Bus, Undo
from accord.errors import AccordError, WireError
from accord.wire.messages import (
    MAX_SEQ,
    Announcement,
    PublicAnnouncement,
    decode_public,
    encode,
    sign_public,
)
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

FETCH_RETRIES = (0.0, 0.2, 0.5, 1.0)
STRANGER_RETRIES = (0.0, 0.3, 1.0)  # fewer: a stranger's fetch holds one of few slots
MAX_STRANGER_FETCHES = 32
MAX_WAITING = 1024
MAX_REPLIES = 4
UPDATE_RATE = 50.0  # re-published announcements checked per second, at most
UPDATE_BURST = 50.0
RESYNC_EVERY_S = 5.0
RESYNC_LISTEN_S = 1.0


class _Budget:
    """A token bucket: ``take()`` is True at most ``rate`` times a second on average."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._now = now
        self._tokens = burst
        self._at = now()

    def take(self) -> bool:
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Presence:
    def __init__(
        self,
        bus: Bus,
        details: Announcement,
        public: PublicAnnouncement,
        directory: DeviceDirectory,
        *,
        query_timeout: float,
        standing_of: Callable[[str], Standing],
        sign: Callable[[bytes], bytes],
        on_present: Callable[[str], None] = lambda _device_id: None,
    ) -> None:
        self._bus = bus
        self._details = details
        self._sign = sign
        self._seq = 0
        self._public = self._signed(public)
        self._public_bytes = encode(self._public)
        self._directory = directory
        self._timeout = query_timeout
        self._standing_of = standing_of
        self._on_present = on_present
        self._me = public.device_id
        self._undo: list[Undo] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._stranger_fetches: set[str] = set()
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._updates = _Budget(UPDATE_RATE, UPDATE_BURST, time.monotonic)
        self._quiet = QuietLog(log)
        self._dropped = 0  # stranger fetches dropped from a full queue
        self._seen_misses = 0
        self._resync: asyncio.TimerHandle | None = None
        self._resync_undo: Undo | None = None
        self._last_resync = -RESYNC_EVERY_S

    def _signed(self, public: PublicAnnouncement) -> PublicAnnouncement:
        """Sign ``public`` with a sequence number above every earlier one of this run
        (the wall clock in ms, so it also grows across restarts as the clock does)."""
        self._seq = min(MAX_SEQ, max(self._seq + 1, time.time_ns() // 1_000_000))
        return sign_public(msgspec.structs.replace(public, seq=self._seq), self._sign)

    async def start(self) -> None:
        self._directory.seen(self._details, is_self=True, standing="self")
        # The queryable goes first so nobody sees our token before they can ask who we are.
        self._undo.append(self._bus.serve_bytes(keys.announce_key(self._me), self._announcement))
        self._undo.append(self._bus.declare_token(keys.presence_key(self._me)))
        self._undo.append(self._bus.subscribe(keys.ANNOUNCE_ALL, self._on_update))
        self._undo.append(self._bus.watch_liveliness(keys.PRESENCE_ALL, self._on_liveliness))

    def _announcement(self) -> bytes:
        return self._public_bytes

    def update(self, public: PublicAnnouncement) -> None:
        """Change what we announce (e.g. the pairing flag) and tell everyone now."""
        self._public = self._signed(public)
        self._public_bytes = encode(self._public)
        self._bus.put(keys.announce_key(self._me), self._public_bytes)

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            self._resync = None
        self._end_resync()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._waiting.clear()
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fetches.clear()
        self._stranger_fetches.clear()

    def _on_liveliness(self, key: str, alive: bool) -> None:
        device_id = keys.device_from_presence(key)
        if device_id is None:
            self._quiet.warn(key, "%s: ignoring malformed presence key %r", self._public.name, key)
            return
        if device_id == self._me:
            return
        previous = self._fetches.pop(device_id, None)
        if previous is not None:
            previous.cancel()
            self._stranger_fetches.discard(device_id)
        self._waiting.pop(device_id, None)
        if alive:
            self._want(device_id)
        else:
            event = self._directory.lost(device_id)
            if event is not None:
                log.info("%s: %s left", self._public.name, event.device.name)
            self._maybe_resync()
        self._next_stranger()

    def _misses(self) -> int:
        return self._dropped + self._directory.evicted_online

    def _maybe_resync(self) -> None:
        """Devices left, so there may be room for strangers dropped during a flood:
        soon (and at most every RESYNC_EVERY_S) replay the live tokens to find them."""
        if self._resync is not None or self._misses() == self._seen_misses or not self._undo:
            return
        loop = asyncio.get_running_loop()
        delay = max(RESYNC_LISTEN_S, self._last_resync + RESYNC_EVERY_S - loop.time())
        self._resync = loop.call_later(delay, self._start_resync)

    def _start_resync(self) -> None:
        self._resync = None
        self._end_resync()
        loop = asyncio.get_running_loop()
        self._last_resync = loop.time()
        self._seen_misses = self._misses()
        log.debug("%s: looking again for devices dropped for room", self._public.name)
        # A liveliness subscriber with history replays every live token.
        self._resync_undo = self._bus.watch_liveliness(keys.PRESENCE_ALL, self._on_replayed)
        loop.call_later(RESYNC_LISTEN_S, self._end_resync)

    def _end_resync(self) -> None:
        if self._resync_undo is not None:
            self._resync_undo()
            self._resync_undo = None

    def _on_replayed(self, key: str, alive: bool) -> None:
        device_id = keys.device_from_presence(key)
        if self._resync_undo is None or not alive or device_id is None or device_id == self._me:
            return
        if (
            self._directory.get(device_id) is None
            and device_id not in self._fetches
            and device_id not in self._waiting
        ):
            self._want(device_id)
            self._next_stranger()

    def _want(self, device_id: str) -> None:
        """Fetch a device's announcement: a member's at once, a stranger's when one of
        the few stranger fetches is free (the queue drops its oldest when full)."""
        if self._standing_of(device_id) in ("member", "self"):
            self._start_fetch(device_id)
            return
        self._waiting[device_id] = None
        if len(self._waiting) > MAX_WAITING:
            dropped, _ = self._waiting.popitem(last=False)
            self._dropped += 1
            self._quiet.warn(
                "queue", "%s: too many unknown devices appeared; not all are fetched", self._me
            )
            log.debug("%s: dropped the fetch of %s", self._public.name, dropped)

    def _next_stranger(self) -> None:
        while self._waiting and len(self._stranger_fetches) < MAX_STRANGER_FETCHES:
            device_id, _ = self._waiting.popitem(last=False)
            self._stranger_fetches.add(device_id)
            self._start_fetch(device_id)

    def _start_fetch(self, device_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._fetch(device_id))
        self._fetches[device_id] = task

    def _on_update(self, key: str, payload: bytes) -> None:
        """A device re-published its announcement (its pairing flag changed)."""
        device_id = key.rsplit("/", 1)[-1]
        record = self._directory.get(device_id)
        if device_id == self._me or record is None or not record.online:
            return
        if not self._updates.take():  # anyone can publish here: verify only so many
            self._quiet.warn("updates", "%s: too many announcements; some ignored", self._me)
            return
        ann = self._validate(device_id, key, payload)
        if ann is not None:
            self._directory.announced(ann, self._standing_of(device_id))

    async def _fetch(self, device_id: str) -> None:
        """Fetch and validate a device's announcement; retry briefly, then give up. A
        stranger that answered only with invalid announcements is not asked again."""
        stranger = device_id in self._stranger_fetches
        try:
            for delay in STRANGER_RETRIES if stranger else FETCH_RETRIES:
                if delay:
                    await asyncio.sleep(delay)
                ann, answered = await self._try_fetch(device_id)
                if ann is None and answered and stranger:
                    break
                if ann is not None:
                    event = self._directory.announced(ann, self._standing_of(device_id))
                    if event is not None and event.kind == "joined":
                        log.info("%s: %s joined", self._public.name, ann.name)
                    self._on_present(device_id)
                    return
            self._quiet.warn(
                "fetch:" + device_id,
                "%s: device %s is present but gave no valid announcement",
                self._public.name,
                device_id,
            )
        finally:
            if self._fetches.get(device_id) is asyncio.current_task():
                del self._fetches[device_id]
                self._stranger_fetches.discard(device_id)
                self._next_stranger()

    async def _try_fetch(self, device_id: str) -> tuple[PublicAnnouncement | None, bool]:
        """The newest valid announcement among the first few replies, and whether
        anything replied at all."""
        try:
            replies = await self._bus.get(keys.announce_key(device_id), self._timeout)
        except AccordError as exc:
            log.debug("%s: announcement query failed: %s", self._public.name, exc)
            return None, False
        best: PublicAnnouncement | None = None
        for key, payload in replies[:MAX_REPLIES]:
            ann = self._validate(device_id, key, payload)
            if ann is not None and (best is None or ann.seq > best.seq):
                best = ann
        return best, bool(replies)

    def _validate(self, device_id: str, key: str, payload: bytes) -> PublicAnnouncement | None:
        try:
            ann = decode_public(payload)
        except WireError as exc:
            self._quiet.warn(
                "bad:" + device_id, "%s: bad announcement on %s: %s", self._public.name, key, exc
            )
            return None
        if ann.device_id != device_id:
            self._quiet.warn(
                "mismatch:" + device_id,
                "%s: announcement on %s claims another device id %s",
                self._public.name,
                key,
                ann.device_id,
            )
            return None
        return ann
