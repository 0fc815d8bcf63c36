"""What a running ability reaches: the super device and the stores its manifest names.

An ability runs in its own, confined process (:mod:`accord.apps.sandbox`); both go
through its gate (:mod:`accord.apps.gate`), a control socket of its own that serves
nothing else. The ability is never told its node's home or control socket.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from accord.control.aio import AsyncControlClient
from accord.errors import PermissionDenied, RemoteError, UnknownStore
from accord.superdevice.api import SuperDevice
from accord.superdevice.links import ControlLink, typed


class _GateLink(ControlLink):
    """The super device through the app's gate instead of a home's control socket."""

    def __init__(self, socket: Path) -> None:  # no super(): it would look for a home
        self._client = AsyncControlClient(socket)


class AbilityContext:
    def __init__(self, socket: Path, app_id: str, stores: Sequence[str] = ()) -> None:
        self.socket = socket
        """The app's gate (not the node's control socket)."""
        self.app_id = app_id
        self.stores = tuple(stores)
        """The stores the manifest names: the only ones :meth:`store` opens."""
        self._client = AsyncControlClient(socket)

    def superdevice(self) -> SuperDevice:
        """The circle's devices and their hardware (camera, display, speaker, ...)."""
        return SuperDevice(_GateLink(self.socket))

    async def notify(self, title: str, body: str = "") -> str:
        """Post a notification on this device, from this app (members that opted in
        mirror it); returns its id."""
        result = await self._client.call("notify", title=title, body=body)
        return str(result["id"])

    def store(self, name: str) -> ControlStore:
        """A replicated key-value store named in the manifest's ``stores`` (created on
        first write, with the app's ``state_label``, and synced to the circle)."""
        if name not in self.stores:
            raise PermissionDenied(
                f"app {self.app_id} may not open store {name!r}: its manifest names only "
                f"these stores: {', '.join(self.stores) or 'none'}; add it to 'stores' in "
                "accord-app.toml"
            )
        return ControlStore(self._client, name)


class ControlStore:
    """A store of the node, from an ability's process (through its gate)."""

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
        try:
            async for event in self._client.stream("kv_watch", store=self.name, prefix=prefix):
                yield event
        except RemoteError as exc:
            raise typed(exc) from None
