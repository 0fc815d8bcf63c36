"""The ``notify`` service on a node: post, mirror once, dismiss everywhere.

Threat model: a hostile member may post (bounded: the book keeps ``MAX_HELD``,
oldest dismissed first), mirror only its own notifications (the id and origin must
name the authenticated caller), and dismiss. Repeats change nothing; nothing is
forwarded by anyone but its origin, so no message loops.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, Final

from accord.bus.directory import DeviceDirectory
from accord.clock import Clock
from accord.continuity.errors import NotificationError
from accord.continuity.notify.book import NotificationBook
from accord.continuity.notify.messages import (
    SERVICE,
    DismissParams,
    Notification,
    Posted,
    PostParams,
)
from accord.continuity.settings import SettingsStore
from accord.rpc import RpcClient, RpcServer
from accord.trust.circle import Circle

log = logging.getLogger(__name__)

CALL_TIMEOUT_S: Final = 3.0
WATCHERS: Final = 32


class NotifyService:
    def __init__(
        self,
        rpc: RpcClient,
        circle: Circle,
        directory: DeviceDirectory,
        settings: SettingsStore,
        clock: Clock,
        me: str,
        show: Callable[[str | None], None] | None,
    ) -> None:
        self._rpc = rpc
        self._circle = circle
        self._directory = directory
        self._settings = settings
        self._clock = clock
        self._me = me
        self._show = show
        self.book = NotificationBook()
        self._counter = itertools.count(int(clock.wall() * 1000))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Queue[dict[str, Any]]] = []

    def register(self, server: RpcServer) -> None:
        server.register(SERVICE, "post", self._post, PostParams)
        server.register(SERVICE, "mirror", self._mirror, Notification)
        server.register(SERVICE, "dismiss", self._dismiss, DismissParams)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def name_of(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.name if member is not None else device_id[:10]

    def _others(self) -> list[str]:
        online = self._directory.online_ids()
        return [
            m.device_id
            for m in self._circle.members.active()
            if m.device_id != self._me and m.device_id in online
        ]

    # -- what members call -----------------------------------------------------

    async def _post(self, params: PostParams, caller: str) -> Posted:
        note = Notification(
            f"{self._me}:{next(self._counter)}", self._me, caller, params.title, params.body,
            params.app, self._clock.wall(),
        )  # fmt: skip
        self.book.add(note)
        self._changed("posted", note)
        if params.mirror:
            self._spawn(self._to_all("mirror", note))
        return Posted(note.id)

    async def _mirror(self, note: Notification, caller: str) -> bool:
        if note.origin != caller or not note.id.startswith(caller + ":"):
            raise NotificationError("a member mirrors only its own notifications")
        current = self._settings.current
        if not current.notify_mirror or note.app in current.notify_muted_apps:
            return False
        if self.book.add(note):
            self._changed("mirrored", note)
        return True

    async def _dismiss(self, params: DismissParams, caller: str) -> bool:
        changed = self.book.dismiss(params.id)
        held = self.book.get(params.id)
        if changed and held is not None:
            self._changed("dismissed", held.note)
        return changed

    # -- what this device's user does ------------------------------------------

    async def notify(self, targets: list[str], title: str, body: str, app: str) -> list[str]:
        """Post to each of ``targets`` (device ids); returns the ids made. With more
        than one target each device gets it directly, so none mirrors it."""
        params = PostParams(title, body, app, mirror=len(targets) == 1)
        results = await asyncio.gather(
            *(self._rpc.call(t, SERVICE, "post", params, Posted) for t in targets),
            return_exceptions=True,
        )
        ids = [r.id for r in results if isinstance(r, Posted)]
        if not ids:
            first = next(r for r in results if isinstance(r, BaseException))
            raise first
        return ids

    async def dismiss(self, note_id: str) -> dict[str, Any]:
        """Dismiss here and on every online member."""
        held = self.book.get(note_id)
        if held is None:
            raise NotificationError(f"no notification {note_id!r} here; see: accord notifications")
        await self._dismiss(DismissParams(note_id), self._me)
        told = await self._to_all("dismiss", DismissParams(note_id))
        return {"id": note_id, "dismissed_on": [self.name_of(d) for d in told]}

    async def _to_all(self, method: str, params: Any) -> list[str]:
        targets = self._others()

        async def one(device_id: str) -> str | None:
            try:
                await self._rpc.call(device_id, SERVICE, method, params, timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # one member's failure is not the others'
                log.info("notify.%s to %s failed: %s", method, self.name_of(device_id), exc)
                return None
            return device_id

        return [d for d in await asyncio.gather(*(one(t) for t in targets)) if d]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what this device shows ------------------------------------------------

    def _changed(self, kind: str, note: Notification) -> None:
        current = self._settings.current
        if self._show is not None and not current.notify_dnd:
            newest = self.book.newest(current.notify_muted_apps)
            self._show(_display_text(newest, self.name_of) if newest else None)
        event = {"kind": kind, "notification": self.note_json(note)}
        for queue in self._watchers:
            if not queue.full():
                queue.put_nowait(event)

    def note_json(self, note: Notification) -> dict[str, Any]:
        held = self.book.get(note.id)
        return {
            "id": note.id,
            "on": self.name_of(note.origin),
            "from": self.name_of(note.sender),
            "app": note.app,
            "title": note.title,
            "body": note.body,
            "created": note.created,
            "dismissed": bool(held and held.dismissed),
            "muted": note.app in self._settings.current.notify_muted_apps,
        }

    def listing(self) -> list[dict[str, Any]]:
        return [self.note_json(h.note) for h in self.book.all()]

    def watch(self) -> tuple[asyncio.Queue[dict[str, Any]], Callable[[], None]]:
        if len(self._watchers) >= WATCHERS:
            raise NotificationError("too many notification watchers on this device")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        self._watchers.append(queue)
        return queue, lambda: self._watchers.remove(queue)


def _display_text(note: Notification, name_of: Callable[[str], str]) -> str:
    head = note.app or name_of(note.sender)
    return f"{head}: {note.title}" + (f"\n{note.body}" if note.body else "")
