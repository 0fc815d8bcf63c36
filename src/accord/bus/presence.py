"""Presence: announce this device, and track which devices are online.

A node declares a liveliness token at ``accord/v1/presence/<id>`` and answers
queries on ``accord/v1/announce/<id>`` with its *public* announcement (id, name,
type, key, whether it accepts pairing), and publishes it there again whenever it
changes. When a token appears, the node fetches that device's announcement and adds
it to the directory; when the token goes, the device is marked offline. What
members learn beyond that travels sealed (see ``accord.trust.sync``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, Standing
from accord.bus.session import Bus, Undo
from accord.errors import AccordError, WireError
from accord.wire.messages import Announcement, PublicAnnouncement, decode_public, encode

log = logging.getLogger(__name__)

FETCH_RETRIES = (0.0, 0.2, 0.5, 1.0)
_MAX_WARNED = 256


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
        on_present: Callable[[str], None] = lambda _device_id: None,
    ) -> None:
        self._bus = bus
        self._details = details
        self._public = public
        self._public_bytes = encode(public)
        self._directory = directory
        self._timeout = query_timeout
        self._standing_of = standing_of
        self._on_present = on_present
        self._me = public.device_id
        self._undo: list[Undo] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._warned: set[str] = set()

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
        self._public = public
        self._public_bytes = encode(public)
        self._bus.put(keys.announce_key(self._me), self._public_bytes)

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fetches.clear()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key in self._warned:
            return
        if len(self._warned) >= _MAX_WARNED:  # a hostile peer cannot grow our memory
            self._warned.clear()
        self._warned.add(key)
        log.warning(message, *args)

    def _on_liveliness(self, key: str, alive: bool) -> None:
        device_id = keys.device_from_presence(key)
        if device_id is None:
            self._warn_once(key, "%s: ignoring malformed presence key %r", self._public.name, key)
            return
        if device_id == self._me:
            return
        previous = self._fetches.pop(device_id, None)
        if previous is not None:
            previous.cancel()
        if alive:
            task = asyncio.get_running_loop().create_task(self._fetch(device_id))
            self._fetches[device_id] = task
        else:
            event = self._directory.lost(device_id)
            if event is not None:
                log.info("%s: %s left", self._public.name, event.device.name)

    def _on_update(self, key: str, payload: bytes) -> None:
        """A device re-published its announcement (its pairing flag changed)."""
        device_id = key.rsplit("/", 1)[-1]
        record = self._directory.get(device_id)
        if device_id == self._me or record is None or not record.online:
            return
        ann = self._validate(device_id, key, payload)
        if ann is not None:
            self._directory.announced(ann, self._standing_of(device_id))

    async def _fetch(self, device_id: str) -> None:
        """Fetch and validate a device's announcement; retry briefly, then give up."""
        try:
            for delay in FETCH_RETRIES:
                if delay:
                    await asyncio.sleep(delay)
                ann = await self._try_fetch(device_id)
                if ann is not None:
                    event = self._directory.announced(ann, self._standing_of(device_id))
                    if event.kind == "joined":
                        log.info("%s: %s joined", self._public.name, ann.name)
                    self._on_present(device_id)
                    return
            self._warn_once(
                "fetch:" + device_id,
                "%s: device %s is present but gave no valid announcement",
                self._public.name,
                device_id,
            )
        finally:
            if self._fetches.get(device_id) is asyncio.current_task():
                del self._fetches[device_id]

    async def _try_fetch(self, device_id: str) -> PublicAnnouncement | None:
        try:
            replies = await self._bus.get(keys.announce_key(device_id), self._timeout)
        except AccordError as exc:
            log.debug("%s: announcement query failed: %s", self._public.name, exc)
            return None
        for key, payload in replies:
            ann = self._validate(device_id, key, payload)
            if ann is not None:
                return ann
        return None

    def _validate(self, device_id: str, key: str, payload: bytes) -> PublicAnnouncement | None:
        try:
            ann = decode_public(payload)
        except WireError as exc:
            self._warn_once(
                "bad:" + device_id, "%s: bad announcement on %s: %s", self._public.name, key, exc
            )
            return None
        if ann.device_id != device_id:
            self._warn_once(
                "mismatch:" + device_id,
                "%s: announcement on %s claims another device id %s",
                self._public.name,
                key,
                ann.device_id,
            )
            return None
        return ann
