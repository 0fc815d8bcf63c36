"""What a running ability reaches: the super device and the circle's stores.

An ability runs in its own process, so both go through the node's control socket
(the same API any local tool uses); the node enforces everything as usual.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from accord.control.aio import AsyncControlClient
from accord.device.home import SOCKET_NAME
from accord.errors import RemoteError, UnknownStore
from accord.superdevice.api import SuperDevice
from accord.superdevice.links import typed


class AbilityContext:
    def __init__(self, home: Path, app_id: str) -> None:
        self.home = home
        self.app_id = app_id
        self._client = AsyncControlClient(home / "run" / SOCKET_NAME)

    def superdevice(self) -> SuperDevice:
        """The circle's devices and their hardware (camera, display, speaker, ...)."""
        return SuperDevice.connect(self.home)

    def store(self, name: str) -> ControlStore:
        """A replicated key-value store (created on first write, synced to the circle)."""
        return ControlStore(self._client, name)


class ControlStore:
    """A store of the node, from an ability's process."""

    def __init__(self, client: AsyncControlClient, name: str) -> None:
        self._client = client
        self.name = name

    async def _call(self, method: str, **params: Any) -> Any:
        try:
            return await self._client.call(method, store=self.name, **params)
        except RemoteError as exc:
            raise typed(exc) from None

    async def get(self, key: str) -> bytes | None:
        try:
            found = await self._call("kv_get", key=key)
        except UnknownStore:
            return None
        return base64.b64decode(found["value_b64"]) if found["found"] else None

    async def put(self, key: str, value: bytes) -> None:
        await self._call("kv_put", key=key, value_b64=base64.b64encode(value).decode())

    async def delete(self, key: str) -> None:
        await self._call("kv_del", key=key)

    async def keys(self, prefix: str = "") -> list[str]:
        try:
            found = await self._call("kv_ls", prefix=prefix)
        except UnknownStore:
            return []
        return [e["key"] for e in found["entries"]]

    async def watch(self, prefix: str = "") -> AsyncIterator[Any]:
        async for event in self._client.stream("kv_watch", store=self.name, prefix=prefix):
            yield event
