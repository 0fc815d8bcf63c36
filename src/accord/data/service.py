"""Data stores on a running node: the async API, and sync between members.

The sync logic is the sans-IO :class:`accord.data.Replica`; this module moves its
messages. Each goes to one member on a long-lived pairwise channel
(:mod:`accord.trust.channels`), never under the circle key: every member holds
that key, and data labelled S2 must not be readable by an SL1 member. When:

* after local commits (coalesced for ``push_delay`` seconds): Push to the online
  members the store may go to;
* when such a member comes online: Pull from it, per store, one catch-up at a time
  (the replica defers the others and hands out their pulls when it is their turn:
  :meth:`Replica.take_pulls`, checked after every message and every second);
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
from typing import Any

import msgspec

from accord.bus import keys
from accord.bus.directory import DirectoryEvent
from accord.data import Replica, gossip
from accord.data import decode as decode_sync
from accord.data import encode as encode_sync
from accord.data.identity import (
    BUILTIN_MERGES,
    ENVELOPE_DECODER,
    Envelope,
    Outbox,
    Traffic,
    settings_of,
)
from accord.data.model import DATA_VERSION, Pull, Push, Summary, SyncMessage
from accord.data.opening import StoreOpening
from accord.errors import (
    SealError,
    StoreError,
    UnknownSender,
    UnknownStore,
)
from accord.wire.messages import DECODE_ERRORS

log = logging.getLogger(__name__)


class DataService(StoreOpening):
    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._open_catalog()
        for name in self.stores.on_disk():
            self._reopen(name)
        self._undo.append(self._bus.subscribe(keys.data_key(self._me), self._on_frame))
        self._undo.append(self._directory.subscribe(self._on_directory))
        self._undo.append(self._circle.on_change(self._membership_changed))
        self._spawn(self._anti_entropy())
        self._spawn(self._ticks())
        self._refresh_online()

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self._flush is not None:
            self._flush.cancel()
        for wake in self._wakes.values():
            wake.cancel()
        self._wakes.clear()
        self._pushes.clear()  # not applied: their senders resend or we pull after a restart
        tasks = [*self._tasks, *(o.task for o in self._outboxes.values() if o.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for facade in self._facades.values():
            facade.closed()
        self.stores.close()

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

    def _ask(self, replica: Replica, peer: str) -> None:
        """What does ``peer`` have? It answers only if it has more (and is pulled from
        then, one source at a time), and pulls from us if we have more: no pull, and
        no transaction, for a member that came online with nothing new."""
        if replica.may_share(peer):
            self._send(peer, replica, replica.summary(ask=True))

    def _pull(self, replica: Replica, peer: str) -> None:
        if replica.may_share(peer):
            pull = replica.want_from(peer)
            if pull is not None:
                self._send(peer, replica, pull)

    def _send_due(self, replica: Replica) -> None:
        """Pulls the replica scheduled for other members (the next source's turn), and
        pages it serves ahead: one each now, the next on the loop's next turn (after
        this one is on its way), so the puller stores a page while we build the next."""
        for peer, message in replica.take_pulls():
            self._send(peer, replica, message)
        due = replica.wake_ms()
        if due is not None and replica.name not in self._wakes:
            loop = asyncio.get_running_loop()
            self._wakes[replica.name] = loop.call_later(due / 1000, self._wake, replica.name)
        if replica.serving():
            self._pump(replica.name)

    def _wake(self, name: str) -> None:
        """A catch-up's wait for a writer ended: its tick, now rather than within the
        second (the next source's turn)."""
        del self._wakes[name]
        with contextlib.suppress(UnknownStore):
            replica = self.stores.get(name)
            replica.tick()
            self._send_due(replica)

    def _pump(self, name: str) -> None:
        """Build the next pages store ``name`` serves ahead on the loop's next turn."""
        if name not in self._pumps:
            self._pumps.add(name)
            asyncio.get_running_loop().call_soon(self._send_pages, name)

    def _send_pages(self, name: str) -> None:
        """The next page ahead for each puller whose outbox has taken all it was given:
        a page is built while the one before is being put, never queued behind it (a
        queue of built pages would wait for the loop's turns between builds, and the
        puller with it). The others wait: :meth:`_drain` pumps again as it takes its
        last message, and the tick every second."""
        self._pumps.discard(name)
        with contextlib.suppress(UnknownStore):
            replica = self.stores.get(name)
            for peer, page in replica.more_pages(ready=self._all_taken):
                self._send(peer, replica, page)
            if replica.serving():
                self._paging.add(name)
                return
        self._paging.discard(name)

    def _all_taken(self, peer: str) -> bool:
        outbox = self._outboxes.get(peer)
        return outbox is None or outbox.queue.empty()

    def _send(self, peer: str, replica: Replica, message: SyncMessage) -> None:
        merge = replica.merge.name if replica.merge else ""
        self._send_env(peer, replica.name, Envelope(replica.kind, replica.label, merge,
                                                    encode_sync(message)))  # fmt: skip

    def _send_env(self, peer: str, store: str, env: Envelope) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            outbox = self._outboxes[peer] = Outbox()
        outbox.queue.put_nowait((store, msgspec.msgpack.encode(env)))
        if outbox.task is None or outbox.task.done():
            outbox.task = asyncio.get_running_loop().create_task(self._drain(peer, outbox))

    async def _drain(self, peer: str, outbox: Outbox) -> None:
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
                self._taken_all()
                return
            _store, plain = outbox.queue.get_nowait()
            if outbox.queue.empty():
                self._taken_all()  # the next page ahead is built while this one goes
            frame = self.channels.seal(peer, key, plain)
            if frame is None:
                continue
            traffic = self.traffic.setdefault(peer, Traffic())
            traffic.sent += len(frame)
            traffic.messages_sent += 1
            await loop.run_in_executor(None, self._bus.put_reliably, key, frame)

    def _taken_all(self) -> None:
        """An outbox took its last message: the stores serving pages ahead build on."""
        for name in self._paging:
            self._pump(name)

    # -- receiving ---------------------------------------------------------------

    def _on_frame(self, key: str, frame: bytes) -> None:
        try:
            sender, plain = self.channels.open(key, frame)
        except UnknownSender:
            self.channels.reshake_for(frame)
            return
        except SealError as exc:
            self._quiet.warn("seal:" + type(exc).__name__, "%s: data frame refused: %s",
                            self._name, exc)  # fmt: skip
            return
        traffic = self.traffic.setdefault(sender, Traffic())
        traffic.received += len(frame)
        traffic.messages_received += 1
        try:
            env = ENVELOPE_DECODER.decode(plain)
            message = decode_sync(env.message)
            replica = self._for_message(env, message.store, sender)
            if replica is None:
                if isinstance(message, Pull):
                    self._not_held(sender, env, message)
                elif isinstance(message, Push):
                    self.hold(message.store, sender, message, len(env.message))
                return
            if isinstance(message, Push):
                self._queue_push(replica, sender, message)
                return
            self._apply_pushes(replica.name)  # what came before this, first
            replies = replica.receive(sender, message)
        except (StoreError, *DECODE_ERRORS) as exc:
            self._refused(sender, exc)
            return
        for reply in replies:
            self._send(sender, replica, reply)
        self._send_due(replica)

    def _not_held(self, sender: str, env: Envelope, pull: Pull) -> None:
        """A pull for a store this device does not hold with the sender's settings (yet):
        an empty summary in those settings tells the puller at once, so its catch-up
        goes on to the next member instead of waiting out a silent one."""
        empty = Summary(DATA_VERSION, pull.store, {})
        self._send_env(sender, pull.store, msgspec.structs.replace(env, message=encode_sync(empty)))

    def _refused(self, sender: str, exc: Exception) -> None:
        self._quiet.warn(
            f"recv:{sender}:{type(exc).__name__}",
            "%s: sync message from %s refused: %s",
            self._name,
            sender[:10],
            exc,
        )

    def _queue_push(self, replica: Replica, sender: str, push: Push) -> None:
        """Pushes are applied in groups (group commit): those that arrive while the
        loop is busy go to disk together, in one transaction, on the loop's next turn."""
        queued = self._pushes.setdefault(replica.name, [])
        queued.append((sender, push))
        if len(queued) == 1:
            asyncio.get_running_loop().call_soon(self._apply_pushes, replica.name)

    def _apply_pushes(self, name: str) -> None:
        queued = self._pushes.pop(name, None)
        if not queued:
            return
        try:
            replica = self.stores.get(name)
            outcome = replica.receive_pushes(queued)
        except StoreError as exc:  # the store's file failed: each sender will resend
            for sender, _push in queued:
                self._refused(sender, exc)
            return
        for sender, error in outcome.errors:
            self._refused(sender, error)
        for sender, reply in outcome.replies:
            self._send(sender, replica, reply)
        self._send_due(replica)

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
        # Once per directory event (N of them as a device joins a circle of N): the
        # ids alone, no copy or sort of the records.
        now = {d for d in self._directory.online_ids() if self._circle.is_member(d)}
        appeared, gone = now - self._online, self._online - now
        self._online = now
        for peer in gone:
            self.channels.forget(peer)  # if it restarts, its sessions are gone too
            for name in self.stores.names():
                replica = self.stores.get(name)
                replica.peer_gone(peer)
                self._send_due(replica)
        for peer in sorted(appeared):
            for name in self.stores.names():
                replica = self.stores.get(name)
                replica.peer_online(peer)
                self._ask(replica, peer)

    async def _ticks(self) -> None:
        """Once a second: a catch-up whose source stalled hands its turn on."""
        while True:
            await asyncio.sleep(1.0)
            for name in self.stores.names():
                replica = self.stores.get(name)
                replica.tick()
                self._send_due(replica)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(self._anti_entropy_s)
            self.anti_entropy()

    def anti_entropy(self) -> None:
        """Send every store's summary to the online members it goes to (all of a small
        circle; a rotating few of a big one, asking them: see :mod:`accord.data.gossip`),
        and collect tombstones every participant has acknowledged."""
        self._round += 1
        for name in self.stores.names():
            replica = self.stores.get(name)
            peers = [p for p in sorted(self._online) if replica.may_share(p)]
            vv = replica.version_vector()
            if gossip.quiet(len(peers), self._gossiped.get(name) == vv, self._round):
                continue  # collection waits for the next round that speaks
            self._gossiped[name] = vv
            targets = gossip.rotating(peers, self._round)
            summary = replica.summary(ask=len(targets) < len(peers))
            for peer in targets:
                self._send(peer, replica, summary)
            try:
                replica.collect_garbage()
            except StoreError as exc:
                self._quiet.warn("gc:" + name, "%s: tombstone collection failed: %s",
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


__all__ = ["BUILTIN_MERGES", "DataService", "Envelope", "Traffic"]
