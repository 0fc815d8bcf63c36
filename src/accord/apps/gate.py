"""An app's only door to its node: a control socket of its own, scoped to its manifest.

The node starts one gate per running app, on ``ctl.sock`` in the app's sandbox
folder (:mod:`accord.apps.sandbox`), owned by the app's user; it speaks the control
API's framing (:mod:`accord.control.protocol`) so the super device's ControlLink
works over it unchanged. It serves only:

* ``devices``: the online members (this device included);
* ``call`` and ``stream``: methods of the hardware services (:data:`APP_SERVICES`)
  on this device or a member, as this device. Never ``apps``, trust, data or any
  other service: an app cannot install or run code elsewhere with its node's
  authority;
* ``kv_get``, ``kv_put``, ``kv_del``, ``kv_batch``, ``kv_ls``, ``kv_watch``: the
  stores the manifest names in ``stores``, with the app's ``state_label`` as its
  level: it reads stores labelled at most that, writes stores labelled at least
  that, and a store it creates gets that label. So an S3 app cannot copy S3 data
  into an S1 store, and an S1 app cannot read an S3 store.

Everything else (status, trust, pairing, permissions, other stores, stop...) is
unknown here. A connection is served only if the peer process (``SO_PEERCRED``) is
the app's own process or one of its children, so another app that finds the socket
cannot borrow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, get_args

import msgspec

from accord.apps.manifest import AppManifest
from accord.bus.directory import DeviceDirectory
from accord.control.server import ControlServer
from accord.data.control import KvControl
from accord.data.service import DataService
from accord.errors import ControlError, LevelDenied, PermissionDenied, UnknownStore
from accord.rpc import DEFAULT_TIMEOUT_S, RpcClient, RpcStream
from accord.trust.circle import Circle
from accord.trust.levels import DataLabel
from accord.trust.members import Member

log = logging.getLogger(__name__)

APP_SERVICES: Final = frozenset(
    {"device", "battery", "camera", "display", "speaker", "sensors", "thermostat", "sim"}
)
"""The RPC services an app may call through its gate: the hardware, as SuperDevice
uses it."""

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _label_rank(label: str) -> int:
    """S1 -> 1 ... S4 -> 4; unknown labels rank above every known one."""
    return get_args(DataLabel).index(label) + 1 if label in get_args(DataLabel) else 99


class _Server(ControlServer):
    """A control server that serves only connections from the app's processes."""

    def __init__(self, path: Path, label: str, admit: Callable[[int | None], bool]) -> None:
        super().__init__(path, label)
        self._admit = admit

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit(_peer_pid(writer)):
            log.warning("%s: refused a connection from outside the app", self._label)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        await super()._serve(reader, writer)


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        pid, _uid, _gid = _CREDS.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CREDS.size))
    except OSError:
        return None
    return int(pid)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def descends_from(pid: int | None, ancestor: int) -> bool:
    """``pid`` is ``ancestor`` or one of its descendants (via /proc). Unknown: False."""
    for _ in range(64):
        if pid is None or pid <= 1:
            return False
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


class AppGate:
    def __init__(
        self,
        manifest: AppManifest,
        path: Path,
        *,
        me: str,
        rpc: RpcClient,
        directory: DeviceDirectory,
        circle: Circle,
        data: DataService,
        app_pid: Callable[[], int | None],
    ) -> None:
        self.manifest = manifest
        self.path = path
        self._me = me
        self._rpc = rpc
        self._directory = directory
        self._circle = circle
        self._data = data
        self._app_pid = app_pid
        self._kv = KvControl(data, self._member)
        self._server = _Server(path, f"app {manifest.id}", self._admit)
        s = self._server
        s.add("devices", self._devices)
        s.add("call", self._call)
        s.add_stream("stream", self._stream)
        s.add("notify", self._notify)
        s.add("kv_get", self._reading(self._kv.get))
        s.add("kv_ls", self._reading(self._kv.ls))
        s.add("kv_put", self._writing(self._kv.put))
        s.add("kv_del", self._writing(self._kv.delete))
        s.add("kv_batch", self._writing(self._kv.batch))
        s.add_stream("kv_watch", self._watch)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def _admit(self, pid: int | None) -> bool:
        app = self._app_pid()
        if pid is None:  # no peer credentials on this platform: the folder's mode holds
            return True
        return app is not None and descends_from(pid, app)

    # -- devices and hardware -------------------------------------------------------

    def _member(self, name: str) -> Member:
        member = self._circle.member(name)
        if member is None:
            raise ControlError(f"{name!r} is not a member of this circle (use a device id)")
        return member

    async def _devices(self, _params: dict[str, Any]) -> list[Any]:
        return [
            msgspec.to_builtins(r)
            for r in self._directory.records()
            if r.device_id == self._me or (r.online and self._circle.is_member(r.device_id))
        ]

    def _target(self, params: dict[str, Any]) -> tuple[str, str, str, float]:
        device = str(params.get("device", ""))
        if device in ("self", "here"):
            device = self._me
        if device != self._me and not self._circle.is_member(device):
            raise ControlError(f"{device!r} is not this device or a member of its circle")
        service, _, method = str(params.get("target", "")).partition(".")
        if not service or not method:
            raise ControlError("name the method as SERVICE.METHOD, e.g. display.show")
        if service not in APP_SERVICES:
            raise PermissionDenied(
                f"app {self.manifest.id} may not call {service}.{method}: apps reach only "
                f"the hardware services ({', '.join(sorted(APP_SERVICES))})"
            )
        try:
            timeout = float(params.get("timeout", DEFAULT_TIMEOUT_S))
        except (TypeError, ValueError):
            raise ControlError("timeout must be a number of seconds") from None
        return device, service, method, timeout

    async def _call(self, params: dict[str, Any]) -> Any:
        device, service, method, timeout = self._target(params)
        result: Any = await self._rpc.call(device, service, method, params.get("args"),
                                      timeout=timeout)  # fmt: skip
        return msgspec.to_builtins(result)

    async def _notify(self, params: dict[str, Any]) -> Any:
        """Post a notification on this device in the app's name (the gate sets the
        app, so an app cannot post as another)."""
        post = {"title": str(params.get("title") or ""), "body": str(params.get("body") or ""),
                "app": self.manifest.id}  # fmt: skip
        result: Any = await self._rpc.call(self._me, "notify", "post", post, timeout=5.0)
        return msgspec.to_builtins(result)

    async def _stream(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        device, service, method, timeout = self._target(params)
        items: RpcStream[Any] = self._rpc.stream(device, service, method, params.get("args"),
                                                 timeout=timeout)  # fmt: skip
        async with items:
            async for item in items:
                yield msgspec.to_builtins(item)

    # -- stores -----------------------------------------------------------------------

    def _check(self, params: dict[str, Any], *, write: bool) -> dict[str, Any]:
        """The store is named in the manifest, and its label keeps the app's data at
        the app's level; returns the params to pass on (a new store gets the label)."""
        name = str(params.get("store", ""))
        app, level = self.manifest.id, self.manifest.state_label
        if name not in self.manifest.stores:
            named = ", ".join(self.manifest.stores) or "none"
            raise PermissionDenied(
                f"app {app} may not open store {name!r}: its manifest names only these "
                f"stores: {named}; add it to 'stores' in accord-app.toml"
            )
        try:
            label = self._data.open_existing(name).label
        except UnknownStore:
            label = None  # a write creates it at the app's level; a read finds nothing
        if label is not None and write and _label_rank(label) < _label_rank(level):
            raise LevelDenied(
                f"app {app} holds {level} data, so it may not write to store {name!r} "
                f"labelled {label}: what it writes there would reach devices that may not "
                f"hold {level}"
            )
        if label is not None and not write and _label_rank(label) > _label_rank(level):
            raise LevelDenied(
                f"app {app} may not read store {name!r}, labelled {label}: its state is "
                f"{level} (state_label in accord-app.toml), and what it reads could leave "
                f"in its state"
            )
        return {**params, "kind": None, "merge": None, "label": level}

    def _reading(self, method: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        async def handler(params: dict[str, Any]) -> Any:
            return await method(self._check(params, write=False))

        return handler

    def _writing(self, method: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        async def handler(params: dict[str, Any]) -> Any:
            return await method(self._check(params, write=True))

        return handler

    async def _watch(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        async for event in self._kv.watch(self._check(params, write=False)):
            yield event
