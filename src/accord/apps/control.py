"""The control methods behind ``accord app`` and ``accord ps``: the circle's apps, as
seen from the local node (which asks the others over RPC)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.apps.errors import AppError
from accord.apps.messages import AppRef, MoveParams, RunParams, SendParams
from accord.apps.runtime import MOVE_TIMEOUT_S, AppRuntime
from accord.bus.directory import DeviceDirectory
from accord.control.server import ControlServer
from accord.errors import AccordError, ControlError
from accord.rpc import RpcClient
from accord.trust.members import Member

PS_TIMEOUT_S = 3.0


class AppControl:
    def __init__(
        self,
        runtime: AppRuntime,
        rpc: RpcClient,
        directory: DeviceDirectory,
        resolve_member: Callable[[str], Member],
        me: str,
    ) -> None:
        self._apps = runtime
        self._rpc = rpc
        self._directory = directory
        self._resolve = resolve_member
        self._me = me

    def register(self, control: ControlServer) -> None:
        control.add("app_install", self.install)
        control.add("app_ls", self.ls)
        control.add("app_remove", self.remove)
        control.add("app_run", self.run)
        control.add("app_stop", self.stop)
        control.add("app_move", self.move)
        control.add("app_send", self.send)
        control.add("ps", self.ps)

    def _targets(self, on: Any) -> list[str]:
        """``on``: None (this device), "all" (every online member), or names."""
        if on is None or on == []:
            return [self._me]
        if on == "all" or on == ["all"]:
            return [self._me, *sorted(self._online_members())]
        names = on if isinstance(on, list) else [on]
        return [self._device_id(str(n)) for n in names]

    def _device_id(self, name: str) -> str:
        if name in ("self", "here"):
            return self._me
        return self._resolve(name).device_id

    def _online_members(self) -> list[str]:
        return [
            r.device_id
            for r in self._directory.records()
            if r.online and r.standing == "member" and r.device_id != self._me
        ]

    def _name(self, device_id: str) -> str:
        rec = self._directory.get(device_id)
        return rec.name if rec is not None else device_id[:10]

    async def _on(self, device: str, method: str, params: Any, timeout: float = 10.0) -> Any:
        """``apps.<method>`` on ``device`` (this one included: RPC keeps that local)."""
        return await self._rpc.call(device, "apps", method, params, timeout=timeout)

    async def install(self, params: dict[str, Any]) -> dict[str, Any]:
        folder = Path(str(params.get("path", "")))
        if not folder.is_absolute():
            raise ControlError("give the app folder as an absolute path")
        bundle = await self._apps.build(folder)
        await self._apps.install(bundle)  # the builder keeps a copy to hand out
        results: dict[str, dict[str, Any]] = {}
        for device in self._targets(params.get("on")):
            try:
                await self._apps.send_bundle(device, bundle.manifest.id)
                results[self._name(device)] = {"ok": True}
            except AccordError as exc:
                results[self._name(device)] = {"ok": False, "error": str(exc)}
        return {
            "app_id": bundle.manifest.id,
            "version": bundle.manifest.version,
            "hash": bundle.content_hash,
            "bytes": len(bundle.zip),
            "devices": results,
        }

    async def ls(self, params: dict[str, Any]) -> dict[str, Any]:
        devices = self._targets("all" if params.get("all") else None)
        lists = await asyncio.gather(
            *(self._on(d, "list", None, PS_TIMEOUT_S) for d in devices), return_exceptions=True
        )
        rows = []
        for device, found in zip(devices, lists, strict=True):
            if isinstance(found, BaseException):
                continue
            rows += [{"device": self._name(device), **app} for app in found]
        return {"apps": rows}

    async def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        app_id = str(params.get("app", ""))
        out: dict[str, dict[str, Any]] = {}
        for device in self._targets(params.get("on")):
            try:
                await self._on(device, "remove", AppRef(app_id))
                out[self._name(device)] = {"ok": True}
            except AccordError as exc:
                out[self._name(device)] = {"ok": False, "error": str(exc)}
        return {"app_id": app_id, "devices": out}

    async def run(self, params: dict[str, Any]) -> dict[str, Any]:
        app_id = str(params.get("app", ""))
        args = params.get("params") or {}
        if not isinstance(args, dict):
            raise ControlError("params is an object of name: value")
        bundle = self._apps.bundle(app_id)
        on = params.get("on")
        if on:
            target = self._device_id(str(on))
        else:
            target = (await self._apps.place(bundle.manifest)).device_id
        if (await self._where(app_id)) is not None:
            raise AppError(f"app {app_id} is already running; see: accord ps")
        await self._apps.send_bundle(target, app_id)
        result: dict[str, Any] = await self._on(
            target, "run", RunParams(app_id, args), MOVE_TIMEOUT_S
        )
        return result

    async def _where(self, app_id: str) -> str | None:
        for row in (await self.ps({}))["running"]:
            if row["app_id"] == app_id:
                return str(row["device_id"])
        return None

    async def _host(self, app_id: str) -> str:
        host = await self._where(app_id)
        if host is None:
            raise AppError(f"app {app_id} is not running on any online device; see: accord ps")
        return host

    async def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        app_id = str(params.get("app", ""))
        result: dict[str, Any] = await self._on(await self._host(app_id), "stop", AppRef(app_id))
        return result

    async def move(self, params: dict[str, Any]) -> dict[str, Any]:
        app_id = str(params.get("app", ""))
        target = self._device_id(str(params.get("to", "")))
        source = await self._host(app_id)
        result: dict[str, Any] = await self._on(
            source, "move", MoveParams(app_id, target), MOVE_TIMEOUT_S + 5
        )
        return {**result, "from": self._name(source), "to": self._name(target)}

    async def send(self, params: dict[str, Any]) -> Any:
        app_id = str(params.get("app", ""))
        host = await self._host(app_id)
        return await self._on(host, "send", SendParams(app_id, params.get("message")))

    async def ps(self, _params: dict[str, Any]) -> dict[str, Any]:
        devices = [self._me, *sorted(self._online_members())]
        found = await asyncio.gather(
            *(self._on(d, "ps", None, PS_TIMEOUT_S) for d in devices), return_exceptions=True
        )
        running = []
        unreachable = []
        for device, rows in zip(devices, found, strict=True):
            if isinstance(rows, BaseException):
                unreachable.append(self._name(device))
                continue
            running += rows
        crashed = [{"app_id": a, "reason": r} for a, r in sorted(self._apps.crashed.items())]
        return {"running": running, "crashed_here": crashed, "unreachable": unreachable}
