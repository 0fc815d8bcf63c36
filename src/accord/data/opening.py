"""Stores on a node: opening them (by the user, at start, or when a member first
syncs one), always against the circle's settings for the name
(:mod:`accord.data.identity`), and the facades apps and the CLI use. The sync that
moves their messages is :class:`accord.data.service.DataService`, built on this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from accord.data import Merge, Replica, gossip
from accord.data import catalog as cat
from accord.data.api import DataStore
from accord.data.catalog import Settings
from accord.data.identity import (
    BUILTIN_MERGES,
    MAX_DEFERRED,
    Envelope,
    GuardedStore,
    StoreIdentity,
    settings_of,
)
from accord.data.limits import check_store_name
from accord.data.model import Push
from accord.data.rules import StoreKind
from accord.errors import (
    StoreError,
    StoreMismatch,
    UnknownStore,
)
from accord.trust.levels import DataLabel, may_receive

log = logging.getLogger(__name__)

ASK_AFTER_S: Final = 1.5  # a new store asks the members what they have this long after
HELD_BYTES: Final = 4 * 1024 * 1024  # pushes kept per sender for stores awaiting declaration


class StoreOpening(StoreIdentity):
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
            self._quiet.warn("open:" + name, "%s: cannot open store %s: %s", self._name, name, exc)
            return None
        self._opened(replica, pull=False)
        return replica

    def _opened(self, replica: Replica, *, pull: bool, source: str | None = None) -> DataStore:
        """The facade of an open replica; a store new to the service is declared in
        the catalog and (``pull``) offered to the online members."""
        facade = self._facades.get(replica.name)
        if facade is None:
            facade = self._facades[replica.name] = GuardedStore(
                replica, self.committed, self._guard
            )
            for peer in self._online:
                replica.peer_online(peer)
            self._declare(replica)
            self._recheck()
            if pull:
                self._offer(replica, source)
        return facade

    def _offer(self, replica: Replica, source: str | None) -> None:
        """A store newly open here: ask ``source`` (the member that synced it to us)
        and the members that declared it what they have (a summary with ``ask``; those
        with more answer and are pulled from, one at a time); if it has rows of its
        own, tell the others (a summary: they pull what is new to them). A pull from
        each at once would race the pushes they are about to send; instead, a little
        later, the members are asked and those that still have more answer, so they
        are pulled from in turn: what pushes did not bring (they went out before the
        store was open here, or come from a member that writes no more). In a big
        circle each ask goes to a rotating few (:mod:`accord.data.gossip`)."""
        for peer in self._holders(replica, source):
            # A holder answers with its own summary if it has more, and is pulled
            # from then, unless what it has more of is arriving in pushes.
            self._send(peer, replica, replica.summary(ask=True))
        if replica.version_vector():  # a store with rows of its own: tell the others
            for peer in sorted(self._online):
                if replica.may_share(peer):
                    self._send(peer, replica, replica.summary())
        self._spawn(self._ask_later(replica.name))

    def _holders(self, replica: Replica, source: str | None) -> list[str]:
        """The members to ask what they have of a store newly open here: ``source``
        and the online members that declared it (a rotating few of many: gossip)."""
        declared = {c.by for c in self._claims.get(replica.name, ())} - {source}
        others = [p for p in sorted(self._online & declared) if replica.may_share(p)]
        self._round += 1
        first = [source] if source in self._online and replica.may_share(source) else []
        return first + gossip.rotating(others, self._round)

    async def _ask_later(self, name: str) -> None:
        await asyncio.sleep(ASK_AFTER_S)
        with contextlib.suppress(UnknownStore):
            replica = self.stores.get(name)
            everyone = [p for p in sorted(self._online) if replica.may_share(p)]
            for peer in gossip.rotating(everyone, self._round):
                self._send(peer, replica, replica.summary(ask=True))

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
            self._quiet.warn(
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
            # Its declaration is usually on its way in a catalog push: ask (it answers
            # only if its catalog has more than ours) rather than pull it again.
            self._ask(self._catalog, sender)

    def hold(self, store: str, sender: str, push: Push, size: int) -> bool:
        """Keep a push for a store that waits for its declaration (:meth:`_defer`), to
        apply when it opens: the first push of a new store usually comes just before
        the catalog push that declares it. At most HELD_BYTES per sender; False if
        not kept (the store is not waiting for this sender, or its share is full)."""
        key = (store, sender)
        if key not in self._deferred:
            return False
        used = self._held_bytes.get(sender, 0)
        if used + size > HELD_BYTES:
            return False
        self._held_bytes[sender] = used + size
        self._held.setdefault(key, []).append((push, size))
        return True

    def _replay(self, key: tuple[str, str], asked: Settings) -> None:
        """The pushes held for ``key``, to the store now open if it is the sender's
        (the settings it sent them with); checked there like any push."""
        held = self._held.pop(key, [])
        store, sender = key
        left = self._held_bytes.get(sender, 0) - sum(size for _, size in held)
        if left > 0:
            self._held_bytes[sender] = left
        else:
            self._held_bytes.pop(sender, None)
        if not held or store not in self._facades:
            return
        replica = self._same(self.stores.get(store), asked, sender)
        if replica is None:
            return
        for push, _ in held:
            self._queue_push(replica, sender, push)

    def _open_deferred(self) -> None:
        for key in [k for k in self._deferred if k[0] in self._facades]:
            # opened from another member meanwhile
            self._replay(key, self._deferred.pop(key))
        ready = [
            (key, asked)
            for key, asked in self._deferred.items()
            if self._sender_declared(*key, asked)
        ]
        for key, _ in ready:
            del self._deferred[key]
        for (store, sender), asked in ready:
            if store in self._facades or store in self.stores.on_disk():
                self._replay((store, sender), asked)
                continue
            if not self._circle.is_member(sender):
                self._replay((store, sender), asked)  # dropped: the store did not open
                continue
            try:
                if self._circle_allows(store, asked, sender):
                    self._open_synced(store, asked, sender)
                else:
                    self._adopt(store)
            except StoreError as exc:
                self._quiet.warn("open:" + store, "%s: cannot open store %s: %s", self._name,
                                store, exc)  # fmt: skip
            self._replay((store, sender), asked)

    def _circle_allows(self, store: str, asked: Settings, sender: str) -> bool:
        """False (logged once) if the circle's store of that name is another store."""
        circle = self.circle_store(store)
        if circle is None or circle.settings == asked:
            return True
        self._quiet.warn(
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
        self._opened(replica, pull=True, source=circle.by)

    def _open_synced(self, store: str, asked: Settings, sender: str) -> Replica:
        merge = BUILTIN_MERGES.get(asked.merge) if asked.merge else None
        log.info("%s: store %s (%s, %s) first synced by %s", self._name, store, asked.kind,
                 asked.label, sender[:10])  # fmt: skip
        replica = self.stores.open(store, kind=asked.kind, label=asked.label, merge=merge)
        self._opened(replica, pull=True, source=sender)
        return replica

    def _same(self, replica: Replica, asked: Settings, sender: str) -> Replica | None:
        """``replica`` if the sender's store has its settings; else None, logged once:
        stores of one name with other settings are different stores."""
        mine = settings_of(replica)
        if mine == asked:
            return replica
        self._quiet.warn(
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
