"""The ``clip`` service on a node: copy, announce, take announcements, serve pastes.

Threat model: an announcement may come from a hostile member. It can only speak for
itself (the origin must be the authenticated caller), holds one item per member (a
flood replaces, never grows), is bounded in size by the descriptor's type, and
costs no bytes until someone here pastes. A fetch is answered only for this
device's own live items, only if sending is on, and only to a member whose level
may hold the item's label.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from accord.bus.directory import DeviceDirectory
from accord.clock import Clock
from accord.continuity.clipboard.board import ClipBoard
from accord.continuity.clipboard.driver import HostClipboard, HostClipboardError, SimClipboard
from accord.continuity.clipboard.messages import (
    CHUNK,
    MAX_CLIP,
    SERVICE,
    Announced,
    ClipItem,
    FetchParams,
)
from accord.continuity.errors import ClipboardError
from accord.continuity.settings import SettingsStore
from accord.rpc import RpcClient, RpcServer
from accord.trust.circle import Circle
from accord.trust.levels import may_receive

log = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT_S: Final = 3.0
FETCH_TIMEOUT_S: Final = 15.0
WATCHERS: Final = 32


class ClipService:
    def __init__(
        self,
        rpc: RpcClient,
        circle: Circle,
        directory: DeviceDirectory,
        settings: SettingsStore,
        clock: Clock,
        me: str,
        driver: SimClipboard | HostClipboard,
    ) -> None:
        self._rpc = rpc
        self._circle = circle
        self._directory = directory
        self._settings = settings
        self._clock = clock
        self._me = me
        self.driver = driver
        self.board = ClipBoard(me)
        self._counter = itertools.count(int(clock.wall() * 1000))
        self._watchers: list[asyncio.Queue[dict[str, Any]]] = []

    def register(self, server: RpcServer) -> None:
        server.register(SERVICE, "announce", self._announce, ClipItem)
        server.register_stream(SERVICE, "fetch", self._fetch, FetchParams)

    def _name(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.name if member is not None else device_id[:10]

    def _level(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.security_level if member is not None else ""

    async def copy(self, data: bytes, kind: str, name: str, sensitive: bool) -> dict[str, Any]:
        """Copy on this device and announce the descriptor to the members that may
        hold it; returns the item and who took the announcement."""
        if len(data) > MAX_CLIP:
            raise ClipboardError(f"a copy is at most {MAX_CLIP // 2**20} MiB; this is {len(data)}")
        if kind == "file" and not name:
            raise ClipboardError("a copied file needs its name")
        ttl = self._settings.current.clip_expiry_s
        item = ClipItem(
            f"{self._me}:{next(self._counter)}", self._me, kind,  # type: ignore[arg-type]
            len(data), self._clock.wall(), ttl, "S3" if sensitive else "S1", name,
        )  # fmt: skip
        self.board.put_local(item, data, self._clock.monotonic())
        warning = await self._to_host(kind, data)
        self._notify("copied", item)
        taken: list[str] = []
        if self._settings.current.clip_send:
            taken = await self._announce_to_circle(item)
        out: dict[str, Any] = {"item": _item_json(item, self._name), "announced_to": taken}
        if warning:
            out["warning"] = warning
        return out

    async def _to_host(self, kind: str, data: bytes) -> str:
        """Put the item on this device's own clipboard; a failing host tool costs a
        warning (the node falls back to its simulated clipboard), never the item."""
        try:
            await self.driver.set(kind, data)
        except HostClipboardError as exc:
            return f"{exc}; this device now uses its simulated clipboard"
        return ""

    async def from_host(self) -> tuple[str, bytes]:
        """What this device's own clipboard holds (the host's, where it has one)."""
        return await self.driver.get()

    async def _announce_to_circle(self, item: ClipItem) -> list[str]:
        online = self._directory.online_ids()
        targets = [
            m.device_id
            for m in self._circle.members.active()
            if m.device_id != self._me
            and m.device_id in online
            and may_receive(m.security_level, item.label)
        ]

        async def one(device_id: str) -> str | None:
            try:
                res = await self._rpc.call(
                    device_id, SERVICE, "announce", item, Announced, timeout=ANNOUNCE_TIMEOUT_S
                )
            except Exception as exc:  # one member's failure is not the copy's
                log.info("%s: clipboard announce to %s failed: %s", self._me, device_id, exc)
                return None
            return self._name(device_id) if res.taken else None

        names = await asyncio.gather(*(one(d) for d in targets))
        return sorted(n for n in names if n is not None)

    async def _announce(self, item: ClipItem, caller: str) -> Announced:
        if not self._settings.current.clip_receive:
            return Announced(False, "this device does not take other devices' copies")
        if not may_receive(self._level(self._me), item.label):
            return Announced(False, f"this device may not hold {item.label} items")
        if not self.board.take(item, caller, self._clock.monotonic()):
            return Announced(True, "already held")
        self._notify("announced", item)
        return Announced(True)

    async def _fetch(self, params: FetchParams, caller: str) -> AsyncIterator[bytes]:
        if not self._settings.current.clip_send:
            raise ClipboardError("this device does not share its copies")
        held = self.board.local_data(params.id, self._clock.monotonic())
        if held is None:
            raise ClipboardError("that item is not on this device's clipboard any more")
        item, data = held
        if not may_receive(self._level(caller), item.label):
            raise ClipboardError(f"that item is {item.label}; your level may not hold it")
        view = memoryview(data)
        for i in range(0, len(data), CHUNK):
            yield bytes(view[i : i + CHUNK])

    async def paste(self, origin: str | None) -> tuple[ClipItem, AsyncIterator[bytes]]:
        """The newest live item (of ``origin``, if given) and an iterator of its bytes."""
        if not self._settings.current.clip_receive and origin != self._me:
            origin = self._me  # opted out: only this device's own copies
        item = self.board.latest(self._clock.monotonic(), origin)
        if item is None:
            raise ClipboardError("the clipboard is empty (or its items expired)")
        local = self.board.local_data(item.id, self._clock.monotonic())
        if local is not None:
            return item, _once(local[1])
        return item, self._pull(item)

    async def _pull(self, item: ClipItem) -> AsyncIterator[bytes]:
        stream = self._rpc.stream(
            item.origin, SERVICE, "fetch", FetchParams(item.id), bytes, timeout=FETCH_TIMEOUT_S
        )
        got = bytearray()
        async with stream:
            async for chunk in stream:
                got += chunk
                if len(got) > item.size:
                    raise ClipboardError("the origin sent more than the item's size")
                yield chunk
        if len(got) != item.size:
            raise ClipboardError("the paste ended early; paste again")
        await self._to_host(item.kind, bytes(got))  # (a failure is logged by the driver)

    def watch(self) -> tuple[asyncio.Queue[dict[str, Any]], Callable[[], None]]:
        if len(self._watchers) >= WATCHERS:
            raise ClipboardError("too many clipboard watchers on this device")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self._watchers.append(queue)
        return queue, lambda: self._watchers.remove(queue)

    def _notify(self, kind: str, item: ClipItem) -> None:
        event = {"kind": kind, "item": _item_json(item, self._name)}
        for queue in self._watchers:
            if not queue.full():
                queue.put_nowait(event)

    def item_json(self, item: ClipItem) -> dict[str, Any]:
        return _item_json(item, self._name)

    def items(self) -> list[dict[str, Any]]:
        return [_item_json(i, self._name) for i in self.board.items(self._clock.monotonic())]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i : i + CHUNK]
    if not data:
        return


def _item_json(item: ClipItem, name_of: Callable[[str], str]) -> dict[str, Any]:
    return {
        "id": item.id,
        "origin": name_of(item.origin),
        "origin_id": item.origin,
        "kind": item.kind,
        "size": item.size,
        "label": item.label,
        "name": item.name,
        "created": item.created,
        "ttl_s": item.ttl_s,
    }
