"""The control methods behind ``accord app`` and ``accord ps``: the circle's apps, as
seen from the local node (which asks the others over RPC)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.apps.bundle import Bundle, encode_bundle
from accord.apps.errors import AppError, RequirementsNotMet
from accord.apps.messages import AppRef, InstallParams, MoveParams, RunParams, SendParams
from accord.apps.runtime import MOVE_TIMEOUT_S, AppRuntime
from accord.bus.directory import DeviceDirectory
from accord.control.server import ControlServer
from accord.errors import AccordError, ControlError, RemoteError
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

    def _labels(self, devices: list[str]) -> dict[str, str]:
        """How results name each device: its name, with a short id where two share it."""
        names = {d: self._name(d) for d in devices}
        shared = {n for n in names.values() if list(names.values()).count(n) > 1}
        return {d: f"{n} ({d[:10]})" if n in shared else n for d, n in names.items()}

    async def _send(self, device: str, bundle: Bundle) -> None:
        """Install ``bundle`` on ``device``, which pulls it from this node's memory
        (so it goes out even when this device cannot run the app itself)."""
        if device == self._me:
            await self._apps.install(bundle)
            return
        tid = self._apps.transfers.offer(device, encode_bundle(bundle))
        try:
            params = InstallParams(bundle.manifest.id, bundle.content_hash, tid)
            await self._rpc.call(device, "apps", "install", params, timeout=MOVE_TIMEOUT_S)
        finally:
            self._apps.transfers.withdraw(tid)

    async def install(self, params: dict[str, Any]) -> dict[str, Any]:
        """Install on each target. With ``on`` "all", a device that lacks what the app
        requires is skipped, not failed; ``ok`` is true if at least one device
        installed it and none failed otherwise."""
        folder = Path(str(params.get("path", "")))
        if not folder.is_absolute():
            raise ControlError("give the app folder as an absolute path")
        bundle = await self._apps.build(folder)
        on = params.get("on")
        everywhere = on == "all" or on == ["all"]
        devices = self._targets(on)
        here: AccordError | None = None
        try:
            await self._apps.install(bundle)  # the builder keeps a copy to hand out
        except RequirementsNotMet as exc:
            here = exc  # it cannot run the app, but may still hand it out
        labels = self._labels(devices)
        outcome = _Outcome()
        for device in devices:
            try:
                if device != self._me:
                    await self._send(device, bundle)
                elif here is not None:
                    raise here
            except AccordError as exc:
                outcome.add(device, labels[device], exc, skip_unable=everywhere)
            else:
                outcome.add(device, labels[device])
        return {
            "app_id": bundle.manifest.id,
            "version": bundle.manifest.version,
            "hash": bundle.content_hash,
            "bytes": len(bundle.zip),
            **outcome.report(),
        }

    async def ls(self, params: dict[str, Any]) -> dict[str, Any]:
        devices = self._targets("all" if params.get("all") else None)
        lists = await asyncio.gather(
            *(self._on(d, "list", None, PS_TIMEOUT_S) for d in devices), return_exceptions=True
        )
        rows = []
        unreachable = []
        for device, found in zip(devices, lists, strict=True):
            if isinstance(found, BaseException):
                unreachable.append(self._name(device))
                continue
            rows += [{"device": self._name(device), **app} for app in found]
        return {"apps": rows, "unreachable": unreachable}

    async def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        """Remove from each target. With ``on`` "all", a device that does not hold the
        app is skipped, not failed."""
        app_id = str(params.get("app", ""))
        on = params.get("on")
        devices = self._targets(on)
        holding: set[str] | None = None
        if on == "all" or on == ["all"]:
            lists = await asyncio.gather(
                *(self._on(d, "list", None, PS_TIMEOUT_S) for d in devices),
                return_exceptions=True,
            )
            holding = {
                d
                for d, found in zip(devices, lists, strict=True)
                if isinstance(found, BaseException) or any(a["app_id"] == app_id for a in found)
            }  # a device that did not answer is tried, and fails with the reason
        labels = self._labels(devices)
        outcome = _Outcome()
        for device in devices:
            if holding is not None and device not in holding:
                outcome.skip(device, labels[device], f"{app_id} is not installed there")
                continue
            try:
                await self._on(device, "remove", AppRef(app_id))
            except AccordError as exc:
                outcome.add(device, labels[device], exc)
            else:
                outcome.add(device, labels[device])
        return {"app_id": app_id, **outcome.report(done="removed")}

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
        if not await self._holds(target, app_id, bundle.content_hash):
            await self._apps.send_bundle(target, app_id)
        grant = self._apps.grant(app_id, bundle.content_hash)  # this device vouches for it
        result: dict[str, Any] = await self._on(
            target, "run", RunParams(app_id, args, grant), MOVE_TIMEOUT_S
        )
        return result

    async def _holds(self, device: str, app_id: str, content_hash: str) -> bool:
        """Whether ``device`` has this very code of ``app_id`` installed already."""
        try:
            found = await self._on(device, "list", None, PS_TIMEOUT_S)
        except AccordError:
            return False
        return any(a["app_id"] == app_id and a["hash"] == content_hash for a in found)

    async def _running(self, app_id: str) -> dict[str, Any] | None:
        for row in (await self.ps({}))["running"]:
            if row["app_id"] == app_id:
                return dict(row)
        return None

    async def _where(self, app_id: str) -> str | None:
        row = await self._running(app_id)
        return None if row is None else str(row["device_id"])

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
        """Ask the app's host to move it. When this device holds the very code that
        runs there, it vouches for it with its own grant, so the target may take the
        app from a host below its level if this device may run code on it."""
        app_id = str(params.get("app", ""))
        target = self._device_id(str(params.get("to", "")))
        row = await self._running(app_id)
        if row is None:
            raise AppError(f"app {app_id} is not running on any online device; see: accord ps")
        source = str(row["device_id"])
        grant = None
        with contextlib.suppress(AppError):
            if self._apps.bundle(app_id).content_hash == row.get("hash"):
                grant = self._apps.grant(app_id, str(row["hash"]))
        result: dict[str, Any] = await self._on(
            source, "move", MoveParams(app_id, target, grant), MOVE_TIMEOUT_S + 5
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


class _Outcome:
    """What an operation on several devices did on each: done, skipped, failed."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, Any]] = {}
        self.done: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []

    def add(
        self, device: str, label: str, exc: AccordError | None = None, *, skip_unable: bool = False
    ) -> None:
        if exc is None:
            self.devices[label] = {"ok": True, "status": "done"}
            self.done.append(label)
        elif skip_unable and _unable(exc):
            reason = exc.remote_message if isinstance(exc, RemoteError) else str(exc)
            self.skip(device, label, reason)
        else:
            kind = exc.remote_type if isinstance(exc, RemoteError) else type(exc).__name__
            self.devices[label] = {"ok": False, "status": "failed", "error": str(exc),
                                   "error_type": kind}  # fmt: skip
            self.failed.append({"device": label, "device_id": device, "error": str(exc),
                                "error_type": kind})  # fmt: skip

    def skip(self, device: str, label: str, reason: str) -> None:
        self.devices[label] = {"ok": False, "status": "skipped", "error": reason}
        self.skipped.append({"device": label, "device_id": device, "reason": reason})

    def report(self, done: str = "installed") -> dict[str, Any]:
        for row in self.devices.values():
            if row["status"] == "done":
                row["status"] = done
        return {
            "ok": bool(self.done) and not self.failed,
            "devices": self.devices,
            done: self.done,
            "skipped": self.skipped,
            "failed": self.failed,
        }


def _unable(exc: AccordError) -> bool:
    """Whether ``exc`` says the device lacks what the app requires (here or remote)."""
    if isinstance(exc, RemoteError):
        return exc.remote_type == RequirementsNotMet.__name__
    return isinstance(exc, RequirementsNotMet)
