"""What circle members exchange beyond the public announcement, always sealed:

- ``accord/v1/details/<id>``: a member asks a device for its full details (profile),
  its copy of the member list and which circle key it holds; the query carries the
  asker's own (so one exchange teaches both sides), and both travel on the pair's
  pairwise channel, the one the data layer and RPC use too.
- ``accord/v1/circle/members``: a member publishes its signed member list after it
  changes (a new member paired, a device revoked); others verify and merge it.
- A revoked device is told so (a signed revocation notice, see
  :mod:`accord.trust.channel_service`): sent to it when a member learns of the
  revocation, and given in answer to its details queries and session offers.

Cost of a join (a circle of N): the newcomer asks each member for its details at
once, :data:`FETCH_CONCURRENCY` at a time (one channel handshake and one query per
member); each member learns the newcomer's details from that query, and asks the
newcomer itself only if it has not after a random wait that grows with the circle
(:func:`reaction_delay`), so N - 1 members do not land on the newcomer in the same
second. A member pushes its circle key only to a member whose details show an older
key (see :mod:`accord.trust.keypush`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from functools import partial
from typing import Final

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, DirectoryEvent
from accord.bus.session import Bus, Undo
from accord.device.identity import Identity
from accord.errors import SealError, TrustError, UnknownSender, WireError
from accord.trust.channel_service import NO_CHANNEL, ChannelService
from accord.trust.circle import Circle
from accord.trust.keypush import KeyPush, KeyUpdate
from accord.trust.members import SignedList
from accord.wire.messages import DECODE_ERRORS, Announcement, decode_announcement, encode
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

__all__ = ["CircleSync", "Details", "KeyUpdate", "reaction_delay"]


class Details(msgspec.Struct, frozen=True):
    announcement: bytes  # an encoded Announcement (validated with decode_announcement)
    members: SignedList
    epoch: int = 0  # the sender's circle key epoch (0: a node that does not say)
    key_id: bytes = b""  # Circle.key_id() of that key


_details = msgspec.msgpack.Decoder(Details)
_signed = msgspec.msgpack.Decoder(SignedList)
FETCH_RETRIES = (0.0, 0.1, 0.3, 0.6, 1.2)
MAX_DETAILS_REPLIES = 4
NOTICE_RETRIES = (0.0, 0.5, 2.0)  # sending a revoked device its notice
FETCH_CONCURRENCY: Final = 6  # details fetches in flight at once
REACT_AFTER_S: Final = 0.5  # a member waits this long before asking a newcomer itself ...
SPREAD_PER_MEMBER_S: Final = 0.02  # ... plus up to this much per member, at random


def reaction_delay(members: int, base: float, rng: random.Random) -> float:
    """How long to wait before asking a device that appeared for its details: the
    reactions of a whole circle are spread over ``SPREAD_PER_MEMBER_S`` per member
    (2 s at 100), instead of landing on the device in the same second."""
    return base + rng.uniform(0.0, SPREAD_PER_MEMBER_S * max(1, members))


class CircleSync:
    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        directory: DeviceDirectory,
        details: Announcement,
        identity: Identity,
        *,
        channels: ChannelService,
        query_timeout: float,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._channels = channels
        self._circle = circle
        self._directory = directory
        self._details_bytes = encode(details)
        self._me = details.device_id
        self._name = details.name
        self._timeout = query_timeout
        self._keys = KeyPush(bus, circle, identity, channels, name=details.name,
                             query_timeout=query_timeout)  # fmt: skip
        self._last_epoch = circle.state.epoch
        self._last_circle = (circle.members.circle_id, circle.membership())
        self._revoked = set(circle.members.revoked)
        self._undo: list[Undo] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pushes: set[asyncio.Task[bool]] = set()
        self._notices: dict[str, asyncio.Task[bool]] = {}
        self._learned: set[str] = set()  # members whose details we took since they appeared
        self._fetching = asyncio.Semaphore(FETCH_CONCURRENCY)
        self._rng = rng or random.Random()  # noqa: S311 (timing jitter, not a secret)
        self._quiet = QuietLog(log)

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.details_key(self._me), self._serve_details))
        self._undo.append(self._bus.subscribe(keys.MEMBERS_KEY, self._on_members))
        self._undo.append(self._bus.serve(keys.session_key(self._me), self._keys.serve_session))
        self._undo.append(self._bus.serve(keys.rekey_key(self._me), self._keys.serve_rekey))
        self._undo.append(self._circle.on_change(self._circle_changed))
        self._undo.append(self._directory.subscribe(self._on_directory))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = [*self._tasks.values(), *self._pushes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- serving -----------------------------------------------------------

    def _my_details(self) -> bytes:
        state = self._circle.state
        details = Details(self._details_bytes, self._circle.signed_list(), state.epoch,
                          self._circle.key_id())  # fmt: skip
        return encode(details)

    async def _serve_details(self, key: str, payload: bytes) -> bytes | None:
        """Details go to members only, on the asker's pairwise channel: the asker
        learns them from this device and no other (a member cannot answer in another
        member's name). A query on a channel we do not hold gets the empty "no
        channel" reply, so the asker opens a new one. A query that carries the
        asker's details teaches us them (they are its own: the channel proves it)."""
        try:
            sender, plain = self._channels.open(key, payload)
        except UnknownSender as exc:
            log.debug("%s: details query on no channel: %s", self._name, exc)
            notice = self._channels.notice_for_frame(payload)
            if notice is not None:  # a revoked device: tell it
                return notice
            return NO_CHANNEL if self._channels.stale_member(payload) else None
        except SealError as exc:
            self._quiet.warn(
                "details:" + type(exc).__name__, "%s: refused details query: %s", self._name, exc
            )
            return None
        if plain:
            self._take_quietly(sender, plain)
        log.debug("%s: details for %s", self._name, sender)
        return self._channels.seal(sender, key, self._my_details())

    def publish_members(self) -> None:
        """Tell every member about our member list (after it changed)."""
        frame = self._circle.seal(keys.MEMBERS_KEY, encode(self._circle.signed_list()))
        self._bus.put(keys.MEMBERS_KEY, frame)

    def _on_members(self, key: str, payload: bytes) -> None:
        try:
            sender, plain = self._circle.open(key, payload)
            signed = _signed.decode(plain)
            self._circle.accept_list(signed)
        except UnknownSender as exc:
            log.debug("%s: ignored member list: %s", self._name, exc)
            return
        except (SealError, TrustError, *DECODE_ERRORS) as exc:
            self._quiet.warn(
                "members:" + type(exc).__name__, "%s: ignored member list: %s", self._name, exc
            )
            return
        log.debug("%s: member list from %s", self._name, sender)

    # -- fetching ----------------------------------------------------------

    def on_present(self, device_id: str) -> None:
        """Presence saw a device: if it is a member, learn its details (and so whether
        it holds our circle key: it may have been away during a rotation), after a
        short random wait unless it teaches us them first."""
        self._want(device_id, reaction_delay(self._members(), 0.0, self._rng))

    def _members(self) -> int:
        return len(self._circle.members.active())

    def _want(self, device_id: str, delay: float) -> None:
        if self._circle.is_member(device_id) and device_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._fetch(device_id, delay))
            self._tasks[device_id] = task
            task.add_done_callback(partial(self._done, device_id))

    def _done(self, device_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(device_id, None)

    def _on_directory(self, event: DirectoryEvent) -> None:
        if event.kind == "left":  # when it is back, its details may have changed
            self._learned.discard(event.device.device_id)

    def _circle_changed(self) -> None:
        state = self._circle.state
        if state.epoch > self._last_epoch and state.key_issuer == self._me:
            # We rotated the key (someone was revoked): hand it to the other members.
            task = asyncio.get_running_loop().create_task(self._rekey_quietly())
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        self._last_epoch = state.epoch
        circle = (state.members.circle_id, self._circle.membership())
        we_joined = circle != self._last_circle and circle[1] == "member"
        self._last_circle = circle
        revoked = set(state.members.revoked)
        for device_id in sorted(revoked - self._revoked):
            self._spawn_notice(device_id)
        self._revoked = revoked
        members = self._members()
        for record in self._directory.stored():
            self._directory.set_standing(record.device_id, self._circle.standing(record.device_id))
            if record.online and record.profile is None:
                # We just joined: ask every member now (a few at a time). Someone else
                # joined: it asks us, so wait a little before asking it ourselves.
                delay = 0.0 if we_joined else reaction_delay(members, REACT_AFTER_S, self._rng)
                self._want(record.device_id, delay)

    def _take_quietly(self, sender: str, plain: bytes) -> None:
        try:
            self._take(sender, _details.decode(plain))
        except (TrustError, WireError, *DECODE_ERRORS) as exc:
            self._quiet.warn(
                "take:" + sender, "%s: bad details from %s: %s", self._name, sender[:10], exc
            )

    def _take(self, device_id: str, details: Details) -> None:
        """Details ``device_id`` sent us on its pairwise channel: its announcement, its
        member list, and which circle key it holds (an older one: push it ours)."""
        ann = decode_announcement(details.announcement)
        if ann.device_id != device_id:
            raise TrustError("details of another device")
        self._circle.accept_list(details.members)
        member = self._circle.member(device_id)
        if member is None or not self._circle.is_member(device_id):
            return
        if member.name != ann.name:
            # A member is shown under the name its host signed at admission.
            ann = msgspec.structs.replace(ann, name=member.name)
        record = self._directory.get(device_id)
        if record is not None and record.online:  # presence alone says who is online
            self._directory.seen(ann, standing=self._circle.standing(device_id))
        self._learned.add(device_id)
        if self._holds_older_key(details):
            self._spawn_push(device_id)

    def _holds_older_key(self, details: Details) -> bool:
        """Does a member whose details these are need our key? Yes if it holds an
        older epoch (or does not say), or another key of ours: then both push and
        :meth:`Circle.install_key` keeps the winner."""
        epoch = self._circle.state.epoch
        if details.epoch != epoch:
            return details.epoch < epoch
        return bool(details.key_id) and details.key_id != self._circle.key_id()

    async def _fetch(self, device_id: str, delay: float) -> None:
        """Ask a member for its details (unless it told us first); retry briefly,
        since a device that has just paired may not be a member everywhere yet."""
        if delay:
            await asyncio.sleep(delay)
        for retry in FETCH_RETRIES:
            if retry:
                await asyncio.sleep(retry)
            if not self._circle.is_member(device_id) or device_id in self._learned:
                return
            async with self._fetching:
                if await self._try_fetch(device_id):
                    return

    async def _try_fetch(self, device_id: str) -> bool:
        key = keys.details_key(device_id)
        if not await self._channels.ensure(device_id):
            return False
        query = self._channels.seal(device_id, key, self._my_details())
        if query is None:
            return False
        try:
            replies = await self._bus.get(key, self._timeout, payload=query)
        except Exception as exc:
            log.debug("%s: details query failed: %s", self._name, exc)
            return False
        for _, payload in replies[:MAX_DETAILS_REPLIES]:  # anyone may answer: look at a few
            if self._channels.heard_notice(payload):  # we were revoked (if it verifies)
                continue
            if payload == NO_CHANNEL:  # it restarted: the next attempt opens a channel
                self._channels.forget(device_id)
                continue
            try:
                self._read_reply(key, device_id, payload)
            except (SealError, TrustError, WireError, *DECODE_ERRORS) as exc:
                self._quiet.warn(
                    "fetch:" + device_id, "%s: bad details from %s: %s", self._name, device_id, exc
                )
                continue
            return True
        return False

    def _read_reply(self, key: str, device_id: str, payload: bytes) -> None:
        sender, plain = self._channels.open(key, payload)
        if sender != device_id:
            raise TrustError(f"details for {device_id} sealed by {sender}")
        self._take(device_id, _details.decode(plain))

    # -- circle keys on pairwise sessions --------------------------------

    def _spawn_push(self, device_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.push_key(device_id))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def push_key(self, device_id: str) -> bool:
        """Send our circle key and member list to one member on a fresh pairwise
        session. False if it did not answer."""
        return await self._keys.push(device_id)

    # -- telling a revoked device ------------------------------------------------

    def _spawn_notice(self, device_id: str) -> None:
        """A device was revoked: tell it, if it is online and we hold the proof."""
        record = self._directory.get(device_id)
        if device_id == self._me or record is None or not record.online:
            return
        task = asyncio.get_running_loop().create_task(self.notify_revoked(device_id))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)
        self._notices[device_id] = task
        task.add_done_callback(lambda _t: self._notices.pop(device_id, None))

    async def notified(self, device_id: str) -> bool:
        """Whether the revoked ``device_id`` confirmed our notice within a query
        timeout (False if none is being sent: it was offline). Sending goes on."""
        task = self._notices.get(device_id)
        if task is None:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            return False

    async def notify_revoked(self, device_id: str) -> bool:
        """Send a revoked device the signed notice of its revocation, on its channel
        key (it can open nothing we seal any more); True once it confirms."""
        notice = self._channels.notice(device_id)
        if notice is None:
            return False
        for delay in NOTICE_RETRIES:
            if delay:
                await asyncio.sleep(delay)
            try:
                replies = await self._bus.get(keys.channel_key(device_id), self._timeout, notice)
            except Exception as exc:
                log.debug("%s: revocation notice to %s failed: %s", self._name, device_id, exc)
                continue
            if any(reply == b"ok" for _, reply in replies):
                log.info("%s: %s knows it was revoked", self._name, device_id[:10])
                return True
        return False

    async def _rekey_quietly(self) -> bool:
        results = await self.rekey_all()
        return all(results.values())

    async def rekey_all(self) -> dict[str, bool]:
        """Send the current key to every other active member that is online."""
        online = self._directory.online_ids()
        targets = [
            m.device_id
            for m in self._circle.members.active()
            if m.device_id != self._me and m.device_id in online
        ]
        results = await self._keys.push_all(targets)
        self.publish_members()
        return results
