"""Presence: announce this device, and track which devices are online.

A node declares a liveliness token at ``accord/v1/presence/<id>`` and answers
queries on ``accord/v1/announce/<id>``. When a token appears, the node fetches that
device's announcement and adds it to the directory; when the token goes, the
device is marked offline.
"""

from __future__ import annotations

import asyncio
import logging

from accord.bus import keys
from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.errors import AccordError, WireError
from accord.wire.messages import Announcement, decode_announcement, encode

log = logging.getLogger(__name__)

FETCH_RETRIES = (0.0, 0.2, 0.5, 1.0)
_MAX_WARNED = 256


class Presence:
    def __init__(
        self,
        bus: Bus,
        announcement: Announcement,
        directory: DeviceDirectory,
        *,
        query_timeout: float,
    ) -> None:
        self._bus = bus
        self._ann = announcement
        self._ann_bytes = encode(announcement)
        self._directory = directory
        self._timeout = query_timeout
        self._me = announcement.device_id
        self._undo: list[Undo] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._warned: set[str] = set()

    async def start(self) -> None:
        self._directory.seen(self._ann, is_self=True)
        # The queryable goes first so nobody sees our token before they can ask who we are.
        self._undo.append(self._bus.serve_bytes(keys.announce_key(self._me), self._announcement))
        self._undo.append(self._bus.declare_token(keys.presence_key(self._me)))
        self._undo.append(self._bus.watch_liveliness(keys.PRESENCE_ALL, self._on_liveliness))

    def _announcement(self) -> bytes:
        return self._ann_bytes

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
            self._warn_once(key, "%s: ignoring malformed presence key %r", self._ann.name, key)
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
                log.info("%s: %s left", self._ann.name, event.device.name)

    async def _fetch(self, device_id: str) -> None:
        """Fetch and validate a device's announcement; retry briefly, then give up."""
        try:
            for delay in FETCH_RETRIES:
                if delay:
                    await asyncio.sleep(delay)
                ann = await self._try_fetch(device_id)
                if ann is not None:
                    event = self._directory.seen(ann)
                    if event.kind == "joined":
                        log.info("%s: %s joined", self._ann.name, ann.name)
                    return
            self._warn_once(
                "fetch:" + device_id,
                "%s: device %s is present but gave no valid announcement",
                self._ann.name,
                device_id,
            )
        finally:
            if self._fetches.get(device_id) is asyncio.current_task():
                del self._fetches[device_id]

    async def _try_fetch(self, device_id: str) -> Announcement | None:
        try:
            replies = await self._bus.get(keys.announce_key(device_id), self._timeout)
        except AccordError as exc:
            log.debug("%s: announcement query failed: %s", self._ann.name, exc)
            return None
        for key, payload in replies:
            try:
                ann = decode_announcement(payload)
            except WireError as exc:
                self._warn_once(
                    "bad:" + device_id, "%s: bad announcement on %s: %s", self._ann.name, key, exc
                )
                continue
            if ann.device_id == device_id:
                return ann
            self._warn_once(
                "mismatch:" + device_id,
                "%s: announcement on %s claims another device id %s",
                self._ann.name,
                key,
                ann.device_id,
            )
        return None
