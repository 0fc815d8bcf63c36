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
(unless its level may not hold the label, the merge is an app's own code, or the
circle's store of that name has other settings). A message whose settings differ from
this device's store of that name is dropped: two stores of one name with different
settings are never merged.

Store identity (:mod:`accord.data.catalog`): every device declares the stores it holds
in the replicated ``accord.catalog``; a new store must have the circle's settings for
its name, and a store that lost a concurrent creation refuses local writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, DirectoryEvent
from accord.bus.session import Bus, Undo
from accord.clock import Clock, HybridClock
from accord.data import COUNTER, SET_UNION, Merge, Replica
from accord.data import catalog as cat
from accord.data import decode as decode_sync
from accord.data import encode as encode_sync
from accord.data.api import DataStore
from accord.data.catalog import CATALOG, Claim, Declaration, Settings
from accord.data.limits import check_store_name
from accord.data.model import Op, SyncMessage
from accord.data.provenance import Signer
from accord.data.rules import StoreKind
from accord.data.stores import Stores
from accord.errors import (
    SealError,
    StoreConflict,
    StoreError,
    StoreMismatch,
    StoreNotHeld,
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
MAX_DEFERRED: Final = 64  # per peer: stores it synced before its declaration reached us


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


class GuardedStore(DataStore):
    """A store as the service hands it out: local writes ask ``guard`` first, which
    refuses them (raises) for a store that conflicts with the circle's, and for the
    catalog, which only the node writes."""

    def __init__(
        self,
        replica: Replica,
        committed: Callable[[Replica], None],
        guard: Callable[[str], None],
    ) -> None:
        super().__init__(replica, committed)
        self._guard = guard

    async def put(self, key: str, value: object) -> None:
        self._guard(self.name)
        await super().put(key, value)

    async def delete(self, key: str) -> None:
        self._guard(self.name)
        await super().delete(key)

    async def update(self, key: str, fn: Callable[[bytes | None], bytes]) -> None:
        self._guard(self.name)
        await super().update(key, fn)

    async def commit(self, ops: Iterable[Op]) -> None:
        self._guard(self.name)
        await super().commit(ops)


def settings_of(replica: Replica) -> Settings:
    return Settings(replica.kind, replica.label, replica.merge.name if replica.merge else "")


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
        self._catalog: Replica | None = None
        self._claims: dict[str, list[Claim]] = {}  # the catalog's, per store name
        self._conflicts: dict[str, str] = {}  # our stores that lost: name -> why
        self._reported: set[tuple[str, str]] = set()  # (store, device) holding another
        self._deferred: dict[tuple[str, str], Settings] = {}  # (store, sender): not declared

    @property
    def device_id(self) -> str:
        return self._me

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._open_catalog()
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
        """Open (creating if new) a store that syncs with the circle. A new store must
        have the settings of the circle's store of that name, if there is one, and a
        label this device may hold (:class:`StoreConflict` otherwise)."""
        if name not in self._facades and not self.stores.path_of(name).is_file():
            self._check_new(name, Settings(kind, label, merge.name if merge else ""))
        replica = self.stores.open(name, kind=kind, label=label, merge=merge)
        return self._opened(replica, pull=True)

    def open_existing(self, name: str) -> DataStore:
        """A store this device already holds, with its stored settings."""
        facade = self._facades.get(name)
        if facade is not None:
            return facade
        if name not in self.stores.on_disk():
            raise self._not_here(name)
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
        self._opened(replica, pull=False)
        return replica

    def _opened(self, replica: Replica, *, pull: bool) -> DataStore:
        """The facade of an open replica; a store new to the service is declared in
        the catalog and (``pull``) offered to the online members."""
        facade = self._facades.get(replica.name)
        if facade is None:
            facade = self._facades[replica.name] = GuardedStore(
                replica, self.committed, self._guard
            )
            self._declare(replica)
            self._recheck()
            if pull:
                for peer in self._online:  # it may be new to them: offer what it has
                    self._pull(replica, peer)
        return facade

    def facades(self) -> list[DataStore]:
        return [self._facades[n] for n in sorted(self._facades)]

    def _for_message(self, env: Envelope, store: str, sender: str) -> Replica | None:
        """The replica a peer's message is for, opened now if this device lacks it;
        None (the message is dropped) if the sender's store of that name is not ours."""
        asked = Settings(env.kind, env.label, env.merge)
        with contextlib.suppress(UnknownStore):
            return self._same(self.stores.get(store), asked, sender)
        if store in self.stores.on_disk():
            replica = self._reopen(store)
            return None if replica is None else self._same(replica, asked, sender)
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
        if not self._sender_declared(store, sender, asked):
            self._defer(store, sender, asked)
            return None
        if not self._circle_allows(store, asked, sender):
            self._adopt(store)
            return None
        return self._open_synced(store, asked, sender)

    def _sender_declared(self, store: str, sender: str, asked: Settings) -> bool:
        """Whether this device's catalog holds the sender's declaration of ``store``,
        with the settings it syncs it with (the node's own stores need none). Until
        it does, this device's catalog may lack the circle's store of that name."""
        if self._catalog is None or store in cat.SYSTEM:
            return True
        held = cat.decode(self._catalog.get(store, device=sender) or b"")
        return held is not None and held.settings == asked

    def _defer(self, store: str, sender: str, asked: Settings) -> None:
        """Open ``store`` from ``sender`` once the catalog holds its declaration (the
        catalog is pulled from it now; :meth:`_open_deferred`)."""
        key = (store, sender)
        if key in self._deferred:
            return
        if sum(1 for _, by in self._deferred if by == sender) >= MAX_DEFERRED:
            return  # a peer that syncs names it never declares fills only its own share
        self._deferred[key] = asked
        log.debug("%s: store %s from %s waits for its declaration", self._name, store,
                  sender[:10])  # fmt: skip
        if self._catalog is not None and sender in self._online:
            self._pull(self._catalog, sender)

    def _open_deferred(self) -> None:
        for key in [k for k in self._deferred if k[0] in self._facades]:
            del self._deferred[key]  # opened from another member meanwhile
        ready = [
            (key, asked)
            for key, asked in self._deferred.items()
            if self._sender_declared(*key, asked)
        ]
        for key, _ in ready:
            del self._deferred[key]
        for (store, sender), asked in ready:
            if store in self._facades or store in self.stores.on_disk():
                continue
            if not self._circle.is_member(sender):
                continue
            try:
                if self._circle_allows(store, asked, sender):
                    self._open_synced(store, asked, sender)
                else:
                    self._adopt(store)
            except StoreError as exc:
                self._warn_once("open:" + store, "%s: cannot open store %s: %s", self._name,
                                store, exc)  # fmt: skip

    def _circle_allows(self, store: str, asked: Settings, sender: str) -> bool:
        """False (logged once) if the circle's store of that name is another store."""
        circle = self.circle_store(store)
        if circle is None or circle.settings == asked:
            return True
        self._warn_once(
            "circle:" + store,
            "%s: %s syncs a store %s (%s), but the circle's store %s is %s (%s): not opened",
            self._name,
            self._who(sender),
            store,
            asked.describe(),
            store,
            circle.settings.describe(),
            cat.by(circle, self._who),
        )
        return False

    def _adopt(self, store: str) -> None:
        """A member synced another store of this name than the circle's: open the
        circle's here (if this device may hold it), and pull it from the online members,
        rather than wait for a member that holds it to sync it."""
        circle = self.circle_store(store)
        level = self._my_level()
        if circle is None or level is None or not may_receive(level, circle.declaration.label):
            return
        if store in self._facades or store in self.stores.on_disk():
            return
        settings = circle.settings
        merge = BUILTIN_MERGES.get(settings.merge) if settings.merge else None
        if settings.merge and merge is None:
            return
        log.info("%s: store %s: opening the circle's (%s)", self._name, store,
                 settings.describe())  # fmt: skip
        replica = self.stores.open(store, kind=settings.kind, label=settings.label, merge=merge)
        self._opened(replica, pull=True)

    def _open_synced(self, store: str, asked: Settings, sender: str) -> Replica:
        merge = BUILTIN_MERGES.get(asked.merge) if asked.merge else None
        log.info("%s: store %s (%s, %s) first synced by %s", self._name, store, asked.kind,
                 asked.label, sender[:10])  # fmt: skip
        replica = self.stores.open(store, kind=asked.kind, label=asked.label, merge=merge)
        self._opened(replica, pull=True)
        return replica

    def _same(self, replica: Replica, asked: Settings, sender: str) -> Replica | None:
        """``replica`` if the sender's store has its settings; else None, logged once:
        stores of one name with other settings are different stores."""
        mine = settings_of(replica)
        if mine == asked:
            return replica
        self._warn_once(
            f"differs:{replica.name}:{sender}",
            "%s: %s syncs its own store %s (%s); this device's is %s: they are different "
            "stores, not merged (see accord kv stores)",
            self._name,
            self._who(sender),
            replica.name,
            asked.describe(),
            mine.describe(),
        )
        return None

    # -- store identity: the catalog (accord.data.catalog) ---------------------------

    def _open_catalog(self) -> None:
        system = cat.SYSTEM[CATALOG]
        try:
            replica = self.stores.open(CATALOG, kind=system.kind, label=system.label)
        except StoreError:
            log.exception("%s: cannot open the store catalog: store identity is not checked",
                          self._name)  # fmt: skip
            return
        self._catalog = replica
        self._facades[CATALOG] = GuardedStore(replica, self.committed, self._guard)
        self._undo.append(replica.subscribe(lambda _changes: self._recheck()))
        self._undo.append(self._circle.on_change(self._recheck))
        self._recheck()

    def _levels(self) -> dict[str, str]:
        return {m.device_id: m.security_level for m in self._circle.members.active()}

    def _my_level(self) -> str | None:
        return self._levels().get(self._me)

    def _who(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.name if member is not None else device_id[:10]

    def circle_store(self, name: str) -> Claim | None:
        """The circle's store of ``name`` (its winning declaration), if any."""
        return cat.resolve(name, self._claims)

    def _declare(self, replica: Replica) -> None:
        """Write (once) this device's declaration of a store it holds."""
        if self._catalog is None or replica.name in cat.SYSTEM:
            return
        mine = settings_of(replica)
        held = cat.decode(self._catalog.get(replica.name) or b"")
        if held is not None and held.settings == mine:
            return
        at = int(self._clock.wall() * 1000)
        value = cat.encode(Declaration(mine.kind, mine.label, mine.merge, at))
        try:
            self._catalog.put(replica.name, value)
        except StoreError as exc:
            self._warn_once("declare:" + replica.name, "%s: cannot declare store %s: %s",
                            self._name, replica.name, exc)  # fmt: skip
            return
        self.committed(self._catalog)

    def _recheck(self) -> None:
        """Read the catalog again (it changed, or the members did): which of our stores
        conflict with the circle's, and who holds another store of one of our names."""
        if self._catalog is None:
            return
        levels = self._levels()
        rows = ((e.device, e.key, e.value) for e in self._catalog.scan())
        self._claims = cat.claims(rows, levels)
        level = levels.get(self._me)
        conflicts: dict[str, str] = {}
        for name in self.stores.names():
            circle = self.circle_store(name)
            if circle is None or level is None or name == CATALOG:
                continue
            mine = settings_of(self.stores.get(name))
            if mine != circle.settings or not may_receive(level, circle.declaration.label):
                conflicts[name] = cat.conflict(name, mine, circle, level, self._who)
                continue
            for other in self._claims.get(name, ()):
                if other.settings != mine and (name, other.by) not in self._reported:
                    self._reported.add((name, other.by))
                    log.warning("%s: %s holds its own store %s (%s), not the circle's (%s): "
                                "the two are not synced", self._name, self._who(other.by), name,
                                other.settings.describe(), mine.describe())  # fmt: skip
        for name, why in sorted(conflicts.items()):
            if self._conflicts.get(name) != why:
                log.warning("%s: %s", self._name, why)
        for name in sorted(set(self._conflicts) - set(conflicts)):
            log.info("%s: store %s no longer conflicts with the circle's", self._name, name)
        self._conflicts = conflicts
        self._open_deferred()

    def _check_new(self, name: str, asked: Settings) -> None:
        """Refuse to create a store the circle holds with other settings, or with a
        label this device may not hold."""
        circle = self.circle_store(name)
        if circle is None:
            return
        level = self._my_level()
        if level is not None and not may_receive(level, circle.declaration.label):
            raise StoreConflict(cat.not_held(name, circle, level, self._who))
        if asked != circle.settings:
            raise StoreConflict(cat.other_settings(name, circle, asked, self._who))

    def _not_here(self, name: str) -> UnknownStore:
        """Why ``name`` cannot be opened here: no such store, or one this device may
        not hold, or one that has not reached it yet."""
        circle = self.circle_store(name)
        level = self._my_level()
        if circle is None:
            return UnknownStore(
                f"no store named {name!r} on this device; see `accord kv stores`, "
                "or write a key to create it"
            )
        if level is not None and not may_receive(level, circle.declaration.label):
            return StoreNotHeld(cat.not_held(name, circle, level, self._who))
        return UnknownStore(cat.not_yet(name, circle, self._who))

    def _guard(self, name: str) -> None:
        if name == CATALOG:
            raise StoreError(
                f"store {CATALOG!r} is written by the node only: it lists the circle's "
                "stores (accord kv stores)"
            )
        why = self._conflicts.get(name)
        if why is not None:
            raise StoreConflict(why)

    def conflict(self, name: str) -> str | None:
        """Why this device's store ``name`` refuses writes, if it does."""
        return self._conflicts.get(name)

    def circle_settings(self, name: str) -> Settings | None:
        """The settings of the circle's store of ``name``, if the catalog knows one."""
        circle = self.circle_store(name)
        return None if circle is None else circle.settings

    def elsewhere(self) -> list[dict[str, Any]]:
        """The circle's stores this device does not hold, and whether it may."""
        level = self._my_level() or ""
        held = {*self._facades, *self.stores.on_disk()}
        out = []
        for name in sorted(self._claims):
            if name in held:
                continue
            circle = self._claims[name][0]
            out.append({**self._describe(circle), "name": name,
                        "may_hold": may_receive(level, circle.declaration.label)})  # fmt: skip
        return out

    def _describe(self, claim: Claim) -> dict[str, Any]:
        return {
            "kind": claim.declaration.kind,
            "label": claim.declaration.label,
            "merge": claim.declaration.merge or "lww",
            "declared_by": claim.by,
            "declared_by_name": self._who(claim.by) if claim.by else "",
        }

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
            **self._identity(replica),
        }

    def _identity(self, replica: Replica) -> dict[str, Any]:
        """For `kv stores`: the circle's store of this name, whether ours conflicts with
        it, and the members that hold another store of this name."""
        circle = self.circle_store(replica.name)
        mine = settings_of(replica)
        others = [
            {
                "device": c.by,
                "device_name": self._who(c.by),
                "kind": c.declaration.kind,
                "label": c.declaration.label,
                "merge": c.declaration.merge or "lww",
            }
            for c in self._claims.get(replica.name, ())
            if c.by != self._me and c.settings != mine
        ]
        return {
            "circle": None if circle is None else self._describe(circle),
            "conflict": self._conflicts.get(replica.name),
            "others": others,
        }
