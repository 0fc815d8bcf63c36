"""Data stores on a running node: the async API, and sync between members.

The sync logic is the sans-IO :class:`accord.data.Replica`; this module moves its
messages. Each goes to one member on a long-lived pairwise channel
(:mod:`accord.trust.channels`), never under the circle key: every member holds
that key, and data labelled S2 must not be readable by an SL1 member. When:

* after local commits (coalesced for ``push_delay`` seconds): Push to the online
  members the store may go to;
* when such a member comes online: Pull from it, per store;
* every ``anti_entropy`` seconds: Summary to each of them, then tombstone collection;
* on every message: the replica's replies go back to its sender.

A message travels in an :class:`Envelope` naming the store's kind, label and merge,
so a device that has not opened a store yet opens it when a member first syncs it
(unless its level may not hold the label, or the merge is an app's own code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, DirectoryEvent
from accord.bus.session import Bus, Undo
from accord.clock import Clock, HybridClock
from accord.data import COUNTER, SET_UNION, Merge, Replica
from accord.data import decode as decode_sync
from accord.data import encode as encode_sync
from accord.data.api import DataStore
from accord.data.limits import check_store_name
from accord.data.model import SyncMessage
from accord.data.provenance import Signer
from accord.data.rules import StoreKind
from accord.data.stores import Stores
from accord.errors import (
    SealError,
    StoreError,
    StoreMismatch,
    UnknownSender,
    UnknownStore,
)
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle
from accord.trust.levels import DataLabel, may_receive
from accord.wire.messages import DECODE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")
BUILTIN_MERGES: Final[dict[str, Merge]] = {COUNTER.name: COUNTER, SET_UNION.name: SET_UNION}
PUSH_DELAY_S: Final = 0.002


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """What a sealed data frame carries: the store's settings and one sync message."""

    kind: StoreKind
    label: DataLabel
    merge: str  # "" = last-writer-wins
    message: bytes  # an encoded accord.data sync message


_envelope = msgspec.msgpack.Decoder(Envelope)


class CirclePeers:
    """The :class:`accord.data.Peers` view of the circle, asked at every use."""

    def __init__(self, circle: Circle) -> None:
        self._circle = circle

    def members(self) -> Collection[str]:
        return [m.device_id for m in self._circle.members.active()]

    def level_of(self, device_id: str) -> str | None:
        member = self._circle.member(device_id)
        return None if member is None else member.security_level

    def public_key(self, device_id: str) -> bytes | None:
        member = self._circle.member(device_id)
        return None if member is None else member.public_key


@dataclass
class Traffic:
    """Bytes and messages of data sync, per peer (sealed frames, as sent and received)."""

    sent: int = 0
    received: int = 0
    messages_sent: int = 0
    messages_received: int = 0


@dataclass
class _Outbox:
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class DataService:
    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        directory: DeviceDirectory,
        channels: ChannelService,
        data_dir: Path,
        clock: Clock,
        *,
        name: str,
        query_timeout: float,
        anti_entropy_s: float,
        push_delay_s: float = PUSH_DELAY_S,
        signer: Signer | None = None,
    ) -> None:
        self._bus = bus
        self._circle = circle
        self._directory = directory
        self._me = channels.channels.device_id
        self._name = name
        self._clock = clock
        self._timeout = query_timeout
        self._anti_entropy_s = anti_entropy_s
        self._push_delay_s = push_delay_s
        self.hlc = HybridClock(clock)
        self.stores = Stores(
            data_dir / "stores",
            device_id=self._me,
            hlc=self.hlc,
            peers=CirclePeers(circle),
            signer=signer,
        )
        self.channels = channels
        self.traffic: dict[str, Traffic] = {}
        self._facades: dict[str, DataStore] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self._online: set[str] = set()
        self._dirty: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Undo] = []
        self._warned: set[str] = set()

    @property
    def device_id(self) -> str:
        return self._me

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        for name in self.stores.on_disk():
            self._reopen(name)
        self._undo.append(self._bus.subscribe(keys.data_key(self._me), self._on_frame))
        self._undo.append(self._directory.subscribe(self._on_directory))
        self._undo.append(self._circle.on_change(self._membership_changed))
        self._spawn(self._anti_entropy())
        self._refresh_online()

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self._flush is not None:
            self._flush.cancel()
        tasks = [*self._tasks, *(o.task for o in self._outboxes.values() if o.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for facade in self._facades.values():
            facade.closed()
        self.stores.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _warn_once(self, what: str, msg: str, *args: object) -> None:
        if what in self._warned:
            log.debug(msg, *args)
            return
        if len(self._warned) < 256:
            self._warned.add(what)
        log.warning(msg, *args)

    # -- stores ------------------------------------------------------------------

    def open(
        self,
        name: str,
        *,
        kind: StoreKind = "shared",
        label: DataLabel = "S1",
        merge: Merge | None = None,
    ) -> DataStore:
        """Open (creating if new) a store that syncs with the circle."""
        replica = self.stores.open(name, kind=kind, label=label, merge=merge)
        facade = self._facades.get(name)
        if facade is None:
            facade = self._facades[name] = DataStore(replica, self.committed)
            for peer in self._online:  # it may be new to them: offer what it has
                self._pull(replica, peer)
        return facade

    def open_existing(self, name: str) -> DataStore:
        """A store this device already holds, with its stored settings."""
        facade = self._facades.get(name)
        if facade is not None:
            return facade
        if name not in self.stores.on_disk():
            raise UnknownStore(
                f"no store named {name!r} on this device; see `accord kv stores`, "
                "or write a key to create it"
            )
        replica = self._reopen(name)
        if replica is None:
            raise StoreMismatch(
                f"store {name!r} merges with an app's own code: only that app can open it"
            )
        return self._facades[name]

    def _reopen(self, name: str) -> Replica | None:
        config = self.stores.stored_config(name)
        if config is None:
            return None
        merge = BUILTIN_MERGES.get(config.merge) if config.merge else None
        if config.merge and merge is None:
            return None
        try:
            replica = self.stores.open(name, kind=config.kind, label=config.label, merge=merge)
        except StoreError as exc:
            self._warn_once("open:" + name, "%s: cannot open store %s: %s", self._name, name, exc)
            return None
        self._facades.setdefault(name, DataStore(replica, self.committed))
        return replica

    def facades(self) -> list[DataStore]:
        return [self._facades[n] for n in sorted(self._facades)]

    def _for_message(self, env: Envelope, store: str, sender: str) -> Replica | None:
        """The replica a peer's message is for, opened now if this device lacks it."""
        with contextlib.suppress(UnknownStore):
            return self.stores.get(store)
        if store in self.stores.on_disk():
            return self._reopen(store)
        level = self._circle.member(self._me)
        if level is None or not may_receive(level.security_level, env.label):
            self._warn_once(
                "label:" + store,
                "%s: %s sent store %s (%s), which this device's level may not hold",
                self._name,
                sender[:10],
                store,
                env.label,
            )
            return None
        merge = BUILTIN_MERGES.get(env.merge) if env.merge else None
        if env.merge and merge is None:
            log.debug("%s: store %s merges with app code; not opened", self._name, store)
            return None
        check_store_name(store)
        log.info("%s: store %s (%s, %s) first synced by %s", self._name, store, env.kind,
                 env.label, sender[:10])  # fmt: skip
        self.open(store, kind=env.kind, label=env.label, merge=merge)
        return self.stores.get(store)

    # -- sending -----------------------------------------------------------------

    def committed(self, replica: Replica) -> None:
        """A local commit: push it to the online members after a short coalescing delay."""
        self._dirty.add(replica.name)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self._push_delay_s, self._push_dirty)

    def _push_dirty(self) -> None:
        self._flush = None
        names, self._dirty = self._dirty, set()
        for name in names:
            with contextlib.suppress(UnknownStore):
                replica = self.stores.get(name)
                peers = [p for p in self._online if replica.may_share(p)]
                for push in replica.take_pushes():
                    for peer in peers:
                        self._send(peer, replica, push)

    def _pull(self, replica: Replica, peer: str) -> None:
        if replica.may_share(peer):
            self._send(peer, replica, replica.pull_from(peer))

    def _send(self, peer: str, replica: Replica, message: SyncMessage) -> None:
        merge = replica.merge.name if replica.merge else ""
        env = Envelope(replica.kind, replica.label, merge, encode_sync(message))
        outbox = self._outboxes.get(peer)
        if outbox is None:
            outbox = self._outboxes[peer] = _Outbox()
        outbox.queue.put_nowait((replica.name, msgspec.msgpack.encode(env)))
        if outbox.task is None or outbox.task.done():
            outbox.task = asyncio.get_running_loop().create_task(self._drain(peer, outbox))

    async def _drain(self, peer: str, outbox: _Outbox) -> None:
        """Send one peer's messages in order; they wait for a channel, and are dropped
        (sync repairs it later) if the peer cannot be reached."""
        key = keys.data_key(peer)
        loop = asyncio.get_running_loop()
        while not outbox.queue.empty():
            if not self.channels.has(peer) and not await self.channels.handshake(peer):
                dropped = outbox.queue.qsize()
                while not outbox.queue.empty():
                    outbox.queue.get_nowait()
                log.debug("%s: %s unreachable, dropped %d", self._name, peer[:10], dropped)
                return
            _store, plain = outbox.queue.get_nowait()
            frame = self.channels.seal(peer, key, plain)
            if frame is None:
                continue
            traffic = self.traffic.setdefault(peer, Traffic())
            traffic.sent += len(frame)
            traffic.messages_sent += 1
            await loop.run_in_executor(None, self._bus.put_reliably, key, frame)

    # -- receiving ---------------------------------------------------------------

    def _on_frame(self, key: str, frame: bytes) -> None:
        try:
            sender, plain = self.channels.open(key, frame)
        except UnknownSender:
            self.channels.reshake_for(frame)
            return
        except SealError as exc:
            self._warn_once("seal:" + type(exc).__name__, "%s: data frame refused: %s",
                            self._name, exc)  # fmt: skip
            return
        traffic = self.traffic.setdefault(sender, Traffic())
        traffic.received += len(frame)
        traffic.messages_received += 1
        try:
            env = _envelope.decode(plain)
            message = decode_sync(env.message)
            replica = self._for_message(env, message.store, sender)
            if replica is None:
                return
            replies = replica.receive(sender, message)
        except (StoreError, *DECODE_ERRORS) as exc:
            self._warn_once(
                f"recv:{sender}:{type(exc).__name__}",
                "%s: sync message from %s refused: %s",
                self._name,
                sender[:10],
                exc,
            )
            return
        for reply in replies:
            self._send(sender, replica, reply)

    # -- who is online -----------------------------------------------------------

    def _on_directory(self, _event: DirectoryEvent) -> None:
        self._refresh_online()

    def _membership_changed(self) -> None:
        for peer in list(self._outboxes):
            if not self._circle.is_member(peer):
                self.channels.forget(peer)
                outbox = self._outboxes.pop(peer)
                if outbox.task is not None:
                    outbox.task.cancel()
        self._refresh_online()

    def _refresh_online(self) -> None:
        now = {
            r.device_id
            for r in self._directory.records()
            if r.online and self._circle.is_member(r.device_id)
        }
        appeared, gone = now - self._online, self._online - now
        self._online = now
        for peer in gone:
            self.channels.forget(peer)  # if it restarts, its sessions are gone too
        for peer in sorted(appeared):
            for name in self.stores.names():
                self._pull(self.stores.get(name), peer)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(self._anti_entropy_s)
            self.anti_entropy()

    def anti_entropy(self) -> None:
        """Send every store's summary to the online members it goes to, and collect
        tombstones every participant has acknowledged."""
        for name in self.stores.names():
            replica = self.stores.get(name)
            for peer in sorted(self._online):
                if replica.may_share(peer):
                    self._send(peer, replica, replica.summary())
            try:
                replica.collect_garbage()
            except StoreError as exc:
                self._warn_once("gc:" + name, "%s: tombstone collection failed: %s",
                                self._name, exc)  # fmt: skip

    def stats(self, name: str) -> dict[str, Any]:
        replica = self.stores.get(name)
        return {
            "name": name,
            "kind": replica.kind,
            "label": replica.label,
            "merge": replica.merge.name if replica.merge else "lww",
            "keys": replica.count(),
            "tombstones": replica.tombstones(),
            "version_vector": replica.version_vector(),
            "shared_with": sorted(p for p in self._online if replica.may_share(p)),
        }
