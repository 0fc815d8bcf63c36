"""The continuity features on one node: composed here so ``node.py`` adds one part."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from accord.bus.directory import DeviceDirectory
from accord.clock import Clock
from accord.continuity.clipboard.control import ClipControl
from accord.continuity.clipboard.driver import clipboard_driver
from accord.continuity.clipboard.service import ClipService
from accord.continuity.notify.control import NotifyControl
from accord.continuity.notify.service import NotifyService
from accord.continuity.settings import SettingsStore
from accord.continuity.transfer.control import TransferControl
from accord.continuity.transfer.hashcache import HashCache
from accord.continuity.transfer.receiver import Receiver
from accord.continuity.transfer.sender import Sender
from accord.control.server import ControlServer
from accord.errors import ControlError
from accord.rpc import RpcClient, RpcServer
from accord.trust.circle import Circle
from accord.trust.members import Member

HASH_CACHE_DIR = "hash-cache"  # under HOME/data: the sender's block hashes of files it sent


class Continuity:
    def __init__(
        self,
        home: Path,
        data_dir: Path,
        name: str,
        me: str,
        rpc: RpcClient,
        circle: Circle,
        directory: DeviceDirectory,
        clock: Clock,
        resolve: Callable[[str], Member],
        drivers: str = "simulated",
        show: Callable[[str | None], None] | None = None,
    ) -> None:
        self.settings = SettingsStore(home, data_dir)
        self._circle = circle
        self._resolve = resolve
        self.sender = Sender(rpc, name, HashCache(data_dir / HASH_CACHE_DIR))
        self.receiver = Receiver(rpc, self.settings, name, self._name_of)
        self.clip = ClipService(
            rpc, circle, directory, self.settings, clock, me, clipboard_driver(drivers)
        )
        self.notify = NotifyService(rpc, circle, directory, self.settings, clock, me, show)
        self._directory = directory
        self._me = me

    def _name_of(self, device_id: str) -> str:
        member = self._circle.member(device_id)
        return member.name if member is not None else device_id[:10]

    def serve(self, server: RpcServer) -> None:
        """Register what this device serves to its circle."""
        self.sender.register(server)
        self.receiver.register(server)
        self.clip.register(server)
        self.notify.register(server)

    def control(self, control: ControlServer) -> None:
        """Register the control methods the CLI uses."""
        TransferControl(self.sender, self.receiver, self._resolve).register(control)
        ClipControl(self.clip, self._resolve).register(control)
        NotifyControl(self.notify, self._circle, self._directory, self._resolve, self._me).register(
            control
        )
        control.add("settings", self._settings)

    async def stop(self) -> None:
        await self.notify.stop()

    def status(self) -> dict[str, Any]:
        return {"inbox": str(self.settings.inbox()), "clipboard": self.clip.driver.driver}

    async def _settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """Show the continuity settings, after applying ``changes`` (NAME=VALUE)."""
        changes = params.get("changes") or []
        if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
            raise ControlError("changes is a list of NAME=VALUE strings")
        if changes:
            self.settings.change(changes)
        return {
            **msgspec.to_builtins(self.settings.current),
            "inbox_path": str(self.settings.inbox()),
        }
