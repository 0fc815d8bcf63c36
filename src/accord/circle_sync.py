"""What circle members exchange beyond the public announcement, always sealed:

- ``accord/v1/details/<id>``: a member asks a device for its full details (profile)
  and its copy of the member list; the reply comes sealed under the circle key.
- ``accord/v1/circle/members``: a member publishes its signed member list after it
  changes (a new member paired, a device revoked); others verify and merge it.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.errors import SealError, TrustError, WireError
from accord.trust.circle import Circle
from accord.trust.members import SignedList
from accord.wire.messages import Announcement, decode_announcement, encode

log = logging.getLogger(__name__)


class Details(msgspec.Struct, frozen=True):
    announcement: bytes  # an encoded Announcement (validated with decode_announcement)
    members: SignedList


_details = msgspec.msgpack.Decoder(Details)
_signed = msgspec.msgpack.Decoder(SignedList)
FETCH_RETRIES = (0.0, 0.1, 0.3, 0.6, 1.2)
_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError)


class CircleSync:
    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        directory: DeviceDirectory,
        details: Announcement,
        *,
        query_timeout: float,
    ) -> None:
        self._bus = bus
        self._circle = circle
        self._directory = directory
        self._details_bytes = encode(details)
        self._me = details.device_id
        self._name = details.name
        self._timeout = query_timeout
        self._undo: list[Undo] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._warned: set[str] = set()

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.details_key(self._me), self._serve_details))
        self._undo.append(self._bus.subscribe(keys.MEMBERS_KEY, self._on_members))
        self._undo.append(self._circle.on_change(self._circle_changed))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            if len(self._warned) > 256:
                self._warned.clear()
            self._warned.add(key)
            log.warning(message, *args)

    # -- serving -----------------------------------------------------------

    async def _serve_details(self, key: str, payload: bytes) -> bytes | None:
        try:
            sender, _ = self._circle.open(key, payload)
        except SealError as exc:
            self._warn_once(
                "details:" + type(exc).__name__, "%s: refused details query: %s", self._name, exc
            )
            return None  # strangers and revoked devices get nothing, not even an error
        details = Details(self._details_bytes, self._circle.signed_list())
        log.debug("%s: details for %s", self._name, sender)
        return self._circle.seal(key, encode(details))

    def publish_members(self) -> None:
        """Tell every member about our member list (after it changed)."""
        frame = self._circle.seal(keys.MEMBERS_KEY, encode(self._circle.signed_list()))
        self._bus.put(keys.MEMBERS_KEY, frame)

    def _on_members(self, key: str, payload: bytes) -> None:
        try:
            sender, plain = self._circle.open(key, payload)
            signed = _signed.decode(plain)
            self._circle.accept_list(signed)
        except (SealError, TrustError, *_ERRORS) as exc:
            self._warn_once(
                "members:" + type(exc).__name__, "%s: ignored member list: %s", self._name, exc
            )
            return
        log.debug("%s: member list from %s", self._name, sender)

    # -- fetching ----------------------------------------------------------

    def on_present(self, device_id: str) -> None:
        """Presence saw a device: if it is a member, learn its details."""
        if self._circle.is_member(device_id) and device_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._fetch(device_id))
            self._tasks[device_id] = task
            task.add_done_callback(partial(self._done, device_id))

    def _done(self, device_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(device_id, None)

    def _circle_changed(self) -> None:
        for record in self._directory.records():
            self._directory.set_standing(record.device_id, self._circle.standing(record.device_id))
            if record.online and record.profile is None:
                self.on_present(record.device_id)

    def _read_details(self, key: str, device_id: str, payload: bytes) -> Announcement:
        sender, plain = self._circle.open(key, payload)
        if sender != device_id:
            raise TrustError(f"details for {device_id} sealed by {sender}")
        details = _details.decode(plain)
        ann = decode_announcement(details.announcement)
        if ann.device_id != device_id:
            raise TrustError("details of another device")
        self._circle.accept_list(details.members)
        return ann

    async def _fetch(self, device_id: str) -> None:
        """Ask a member for its details; retry briefly, since a device that has just
        paired may not hold the circle key yet when we first ask."""
        for delay in FETCH_RETRIES:
            if delay:
                await asyncio.sleep(delay)
            if not self._circle.is_member(device_id):
                return
            if await self._try_fetch(device_id):
                return

    async def _try_fetch(self, device_id: str) -> bool:
        key = keys.details_key(device_id)
        try:
            replies = await self._bus.get(key, self._timeout, payload=self._circle.seal(key, b""))
        except Exception as exc:
            log.debug("%s: details query failed: %s", self._name, exc)
            return False
        for _, payload in replies:
            try:
                ann = self._read_details(key, device_id, payload)
            except (SealError, TrustError, WireError, *_ERRORS) as exc:
                self._warn_once(
                    "fetch:" + device_id, "%s: bad details from %s: %s", self._name, device_id, exc
                )
                continue
            if self._directory.get(device_id) is not None:
                self._directory.seen(ann, standing=self._circle.standing(device_id))
            return True
        return False
