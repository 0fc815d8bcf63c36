"""Control methods of notifications: ``notify``, ``notifications``,
``notifications_dismiss`` and ``notifications_watch`` (a stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from accord.bus.directory import DeviceDirectory
from accord.continuity.notify.service import NotifyService
from accord.control.server import ControlServer
from accord.errors import ControlError
from accord.trust.circle import Circle
from accord.trust.members import Member


class NotifyControl:
    def __init__(
        self,
        notify: NotifyService,
        circle: Circle,
        directory: DeviceDirectory,
        resolve: Callable[[str], Member],
        me: str,
    ) -> None:
        self._notify = notify
        self._circle = circle
        self._directory = directory
        self._resolve = resolve
        self._me = me

    def register(self, control: ControlServer) -> None:
        control.add("notify", self._post)
        control.add("notifications", self._list)
        control.add("notifications_dismiss", self._dismiss)
        control.add_stream("notifications_watch", self._watch)

    async def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        title, body, app = (str(params.get(k) or "") for k in ("title", "body", "app"))
        if not title:
            raise ControlError("a notification needs a title")
        device = str(params.get("device", ""))
        if device == "all":
            online = self._directory.online_ids()
            targets = [
                m.device_id
                for m in self._circle.members.active()
                if m.device_id == self._me or m.device_id in online
            ]
        else:
            targets = [self._resolve(device).device_id]
        ids = await self._notify.notify(targets, title, body, app)
        return {"ids": ids}

    async def _list(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"notifications": self._notify.listing()}

    async def _dismiss(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._notify.dismiss(str(params.get("id", "")))

    async def _watch(self, _params: dict[str, Any]) -> AsyncIterator[Any]:
        queue, undo = self._notify.watch()
        try:
            for note in self._notify.listing():
                yield {"kind": "held", "notification": note}
            while True:
                yield await queue.get()
        finally:
            undo()
