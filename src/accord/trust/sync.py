"""What circle members exchange beyond the public announcement, always sealed:

- ``accord/v1/details/<id>``: a member asks a device for its full details (profile)
  and its copy of the member list; the reply comes sealed under the circle key.
- ``accord/v1/circle/members``: a member publishes its signed member list after it
  changes (a new member paired, a device revoked); others verify and merge it.
- A revoked device is told so (a signed revocation notice, see
  :mod:`accord.trust.channel_service`): sent to it when a member learns of the
  revocation, and given in answer to its details queries and session offers.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.device.identity import Identity, id_from_raw, raw_id
from accord.errors import SealError, TrustError, UnknownSender, WireError
from accord.trust import session
from accord.trust.channel_service import NO_CHANNEL, ChannelService
from accord.trust.circle import Circle
from accord.trust.members import SignedList
from accord.trust.sessions import SessionTable, session_number
from accord.wire.messages import DECODE_ERRORS, Announcement, decode_announcement, encode
from accord.wire.quiet import QuietLog
from accord.wire.seal import Kind, Opener, Sealer, StreamId

log = logging.getLogger(__name__)


class KeyUpdate(msgspec.Struct, frozen=True):
    """A circle key and the member list it goes with, sent on a pairwise session."""

    members: SignedList
    epoch: int
    key: bytes
    issuer: str


class Details(msgspec.Struct, frozen=True):
    announcement: bytes  # an encoded Announcement (validated with decode_announcement)
    members: SignedList


_details = msgspec.msgpack.Decoder(Details)
_signed = msgspec.msgpack.Decoder(SignedList)
_key_update = msgspec.msgpack.Decoder(KeyUpdate)
FETCH_RETRIES = (0.0, 0.1, 0.3, 0.6, 1.2)
MAX_DETAILS_REPLIES = 4
NOTICE_RETRIES = (0.0, 0.5, 2.0)  # sending a revoked device its notice


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
    ) -> None:
        self._bus = bus
        self._channels = channels
        self._circle = circle
        self._directory = directory
        self._details_bytes = encode(details)
        self._me = details.device_id
        self._name = details.name
        self._timeout = query_timeout
        self._identity = identity
        self._sessions = SessionTable()
        self._pairwise = Opener(self._sessions.root_for)
        self._boot = circle.boot
        self._last_epoch = circle.state.epoch
        self._revoked = set(circle.members.revoked)
        self._undo: list[Undo] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pushes: set[asyncio.Task[bool]] = set()
        self._notices: dict[str, asyncio.Task[bool]] = {}
        self._quiet = QuietLog(log)

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.details_key(self._me), self._serve_details))
        self._undo.append(self._bus.subscribe(keys.MEMBERS_KEY, self._on_members))
        self._undo.append(self._bus.serve(keys.session_key(self._me), self._serve_session))
        self._undo.append(self._bus.serve(keys.rekey_key(self._me), self._serve_rekey))
        self._undo.append(self._circle.on_change(self._circle_changed))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = [*self._tasks.values(), *self._pushes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- serving -----------------------------------------------------------

    async def _serve_details(self, key: str, payload: bytes) -> bytes | None:
        """Details go to members only, on the asker's pairwise channel: the asker
        learns them from this device and no other (a member cannot answer in another
        member's name). A query on a channel we do not hold gets the empty "no
        channel" reply, so the asker opens a new one."""
        try:
            sender, _ = self._channels.open(key, payload)
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
        details = Details(self._details_bytes, self._circle.signed_list())
        log.debug("%s: details for %s", self._name, sender)
        return self._channels.seal(sender, key, encode(details))

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
        """Presence saw a device: if it is a member, make sure it holds our circle key
        (it may have been away during a rotation) and learn its details."""
        if self._circle.is_member(device_id):
            self._spawn_push(device_id)
        if self._circle.is_member(device_id) and device_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._fetch(device_id))
            self._tasks[device_id] = task
            task.add_done_callback(partial(self._done, device_id))

    def _done(self, device_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(device_id, None)

    def _circle_changed(self) -> None:
        state = self._circle.state
        if state.epoch > self._last_epoch and state.key_issuer == self._me:
            # We rotated the key (someone was revoked): hand it to the other members.
            task = asyncio.get_running_loop().create_task(self._rekey_quietly())
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        self._last_epoch = state.epoch
        revoked = set(state.members.revoked)
        for device_id in sorted(revoked - self._revoked):
            self._spawn_notice(device_id)
        self._revoked = revoked
        for record in self._directory.records():
            self._directory.set_standing(record.device_id, self._circle.standing(record.device_id))
            if record.online and record.profile is None:
                self.on_present(record.device_id)

    def _read_details(self, key: str, device_id: str, payload: bytes) -> Announcement:
        sender, plain = self._channels.open(key, payload)
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
        if not await self._channels.ensure(device_id):
            return False
        query = self._channels.seal(device_id, key, b"")
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
                ann = self._read_details(key, device_id, payload)
            except (SealError, TrustError, WireError, *DECODE_ERRORS) as exc:
                self._quiet.warn(
                    "fetch:" + device_id, "%s: bad details from %s: %s", self._name, device_id, exc
                )
                continue
            member = self._circle.member(device_id)
            if member is not None and member.name != ann.name:
                # A member is shown under the name its host signed at admission.
                ann = msgspec.structs.replace(ann, name=member.name)
            record = self._directory.get(device_id)
            if record is not None and record.online:  # presence alone says who is online
                self._directory.seen(ann, standing=self._circle.standing(device_id))
            return True
        return False

    # -- circle keys on pairwise sessions --------------------------------

    async def _serve_session(self, _key: str, offer: bytes) -> bytes | None:
        keys_of = {m.device_id: m.public_key for m in self._circle.members.active()}
        try:
            initiator, answer, secret = session.respond(self._identity, offer, keys_of)
        except TrustError as exc:
            log.debug("%s: refused session offer: %s", self._name, exc)
            return self._channels.notice_for_offer(offer)
        self._sessions.remember(initiator, session_number(offer), secret)
        return answer

    def _read_key_update(self, key: str, frame: bytes) -> tuple[str, KeyUpdate]:
        sid, plain = self._pairwise.open(key, frame)
        sender = id_from_raw(sid.sender)
        if not self._circle.is_member(sender):
            raise TrustError(f"key update from {sender[:10]}, who is not a member")
        return sender, _key_update.decode(plain)

    async def _serve_rekey(self, key: str, frame: bytes) -> bytes | None:
        try:
            sender, update = self._read_key_update(key, frame)
            self._circle.accept_list(update.members)
            if self._circle.is_member(sender) and self._circle.install_key(
                update.epoch, update.key, update.issuer
            ):
                log.info("%s: circle key epoch %d from %s", self._name, update.epoch, sender[:10])
        except (SealError, TrustError, *DECODE_ERRORS) as exc:
            self._quiet.warn(
                "rekey:" + type(exc).__name__, "%s: ignored key update: %s", self._name, exc
            )
            return None
        return b"ok"

    def _spawn_push(self, device_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.push_key(device_id))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def push_key(self, device_id: str) -> bool:
        """Send our circle key and member list to one member on a fresh pairwise
        session. False if it did not answer."""
        member = self._circle.member(device_id)
        if member is None:
            return False
        initiator = session.Initiator(self._identity, device_id)
        offer = initiator.offer()
        try:
            replies = await self._bus.get(keys.session_key(device_id), self._timeout, offer)
            answers = [a for _, a in replies if not self._channels.heard_notice(a)]
            if not answers:
                return False
            secret = initiator.on_answer(answers[0], member.public_key)
            if not self._circle.is_member(device_id):
                return False  # revoked while we were talking: it gets no key
            state = self._circle.state
            update = KeyUpdate(
                self._circle.signed_list(),
                state.epoch,
                state.circle_key,
                state.key_issuer or self._me,
            )
            sid = StreamId(Kind.PAIRWISE, raw_id(self._me), session_number(offer), self._boot)
            key = keys.rekey_key(device_id)
            frame = Sealer(secret, sid).seal(key, encode(update))
            return bool(await self._bus.get(key, self._timeout, frame))
        except TrustError as exc:
            log.warning(
                "%s: could not send the circle key to %s: %s", self._name, device_id[:10], exc
            )
            return False

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
        online = {r.device_id for r in self._directory.records() if r.online}
        targets = [
            m.device_id
            for m in self._circle.members.active()
            if m.device_id != self._me and m.device_id in online
        ]
        results = await asyncio.gather(*(self.push_key(t) for t in targets))
        self.publish_members()
        return dict(zip(targets, results, strict=True))
