"""The circle-wide identity of store names on a node (:mod:`accord.data.catalog`):
declaring the stores this device holds, and checking a new or synced store against
the circle's settings for its name. The base of the data service's parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.clock import Clock, HybridClock
from accord.data import COUNTER, SET_UNION, Merge, Replica
from accord.data import catalog as cat
from accord.data.api import DataStore
from accord.data.catalog import CATALOG, Claim, Declaration, Settings
from accord.data.model import Op, Push, SyncMessage
from accord.data.provenance import Signer
from accord.data.rules import StoreKind
from accord.data.stores import Stores
from accord.errors import (
    StoreConflict,
    StoreError,
    StoreNotHeld,
    UnknownStore,
)
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle
from accord.trust.levels import DataLabel, may_receive
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

BUILTIN_MERGES: Final[dict[str, Merge]] = {COUNTER.name: COUNTER, SET_UNION.name: SET_UNION}
PUSH_DELAY_S: Final = 0.002
MAX_DEFERRED: Final = 64  # per peer: stores it synced before its declaration reached us


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """What a sealed data frame carries: the store's settings and one sync message."""

    kind: StoreKind
    label: DataLabel
    merge: str  # "" = last-writer-wins
    message: bytes  # an encoded accord.data sync message


ENVELOPE_DECODER = msgspec.msgpack.Decoder(Envelope)


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
        if member is not None:
            return member.public_key
        records = self._circle.members.records(device_id)  # a former member's key
        return records[-1].public_key if records and self.former(device_id) else None

    def former(self, device_id: str) -> float | None:
        members = self._circle.members
        if members.is_member(device_id) or not members.records(device_id):
            return None
        return members.revoked_at(device_id)  # None: revoked without a proof, for good


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
class Outbox:
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class StoreIdentity:
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
        self._outboxes: dict[str, Outbox] = {}
        self._online: set[str] = set()
        self._round = 0  # anti-entropy rounds and store openings: whose turn (gossip)
        self._gossiped: dict[str, dict[str, int]] = {}  # per store, the vv last gossiped
        self._dirty: set[str] = set()
        self._pushes: dict[str, list[tuple[str, Push]]] = {}  # per store, to apply together
        self._flush: asyncio.TimerHandle | None = None
        self._wakes: dict[str, asyncio.TimerHandle] = {}  # store -> its early tick
        self._pumps: set[str] = set()  # stores whose next pages ahead are due next turn
        self._paging: set[str] = set()  # stores with pages ahead waiting for an outbox
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Undo] = []
        self._quiet = QuietLog(log)
        self._catalog: Replica | None = None
        self._claims: dict[str, list[Claim]] = {}  # the catalog's, per store name
        self._conflicts: dict[str, str] = {}  # our stores that lost: name -> why
        self._reported: set[tuple[str, str]] = set()  # (store, device) holding another
        self._deferred: dict[tuple[str, str], Settings] = {}  # (store, sender): not declared
        self._recheck_due = False
        # Pushes that came for a deferred (store, sender), applied once it opens (bounded).
        self._held: dict[tuple[str, str], list[tuple[Push, int]]] = {}
        self._held_bytes: dict[str, int] = {}  # per sender

    @property
    def device_id(self) -> str:
        return self._me

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        self._undo.append(replica.subscribe(lambda _changes: self._recheck_soon()))
        self._undo.append(self._circle.on_change(self._recheck_soon))
        self._recheck()

    def _recheck_soon(self) -> None:
        """:meth:`_recheck` once on the loop's next turn, however many catalog changes
        and member lists land before it: when a store is new to a big circle, every
        member declares it and each declaration reaches every member, and a recheck
        reads the whole catalog (N declarations each, once per turn instead of N)."""
        if self._recheck_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (a test's direct call): at once
            self._recheck()
            return
        self._recheck_due = True

        def run() -> None:
            self._recheck_due = False
            self._recheck()

        loop.call_soon(run)

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
            self._quiet.warn("declare:" + replica.name, "%s: cannot declare store %s: %s",
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

    # -- implemented by the parts built on this (accord.data.opening, .service) -------

    def _pull(self, replica: Replica, peer: str) -> None:
        raise NotImplementedError

    def _ask(self, replica: Replica, peer: str) -> None:
        raise NotImplementedError

    def _queue_push(self, replica: Replica, sender: str, push: Push) -> None:
        raise NotImplementedError

    def _send(self, peer: str, replica: Replica, message: SyncMessage) -> None:
        raise NotImplementedError

    def committed(self, replica: Replica) -> None:
        raise NotImplementedError

    def _open_deferred(self) -> None:  # accord.data.opening
        raise NotImplementedError
