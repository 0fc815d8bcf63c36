"""The device runtime: composes home, transport, presence and the control API."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from accord.apps.control import AppControl
from accord.apps.runtime import AppRuntime
from accord.bus.directory import DeviceDirectory, DirectoryEvent
from accord.bus.directory_db import DirectoryDB
from accord.bus.presence import Presence
from accord.bus.session import Bus
from accord.bus.settings import BusSettings
from accord.clock import Clock, SystemClock
from accord.continuity.service import Continuity
from accord.control.server import ControlServer
from accord.data.control import KvControl
from accord.data.service import DataService
from accord.device.home import Home, HomeLock, check_socket_path
from accord.errors import ControlError
from accord.hardware.host import host_load
from accord.hardware.services import Drivers, Hardware
from accord.profile import to_dict
from accord.rpc import DEFAULT_TIMEOUT_S, RpcClient, RpcServer, RpcStream
from accord.rpc.permissions import PermissionStore
from accord.rules.control import RulesControl
from accord.rules.service import RulesService
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle
from accord.trust.service import TrustService
from accord.trust.sync import CircleSync
from accord.wire.messages import PROTOCOL_VERSION, Announcement, PublicAnnouncement

log = logging.getLogger(__name__)


class Node:
    """One running device. ``async with Node(...)`` starts it; leaving stops it."""

    def __init__(
        self,
        home: Home,
        settings: BusSettings,
        clock: Clock | None = None,
        *,
        drivers: Drivers = "simulated",
    ) -> None:
        self.home = home
        self.settings = settings
        self.clock = clock or SystemClock()
        self._permissions = PermissionStore(home.data_dir)
        self.hardware = Hardware(home.profile, home.device_id, home.name, self.clock, drivers)
        self._drivers: str = drivers
        self.stopping = asyncio.Event()
        self._lock = HomeLock(home)
        self._db: DirectoryDB | None = None
        self._bus: Bus | None = None
        self._presence: Presence | None = None
        self._control: ControlServer | None = None
        self._sync: CircleSync | None = None
        self._trust: TrustService | None = None
        self._channels: ChannelService | None = None
        self.circle: Circle | None = None
        self._rpc_server: RpcServer | None = None
        self._rpc: RpcClient | None = None
        self._data: DataService | None = None
        self._apps: AppRuntime | None = None
        self._continuity: Continuity | None = None
        self._rules: RulesService | None = None
        self._started_wall = 0.0
        self._started_mono = 0.0
        self.directory: DeviceDirectory | None = None

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def sync(self) -> CircleSync:
        if self._sync is None:
            raise RuntimeError("the node is not running")
        return self._sync

    @property
    def rpc(self) -> RpcClient:
        """Call methods on other members."""
        if self._rpc is None:
            raise RuntimeError("the node is not running")
        return self._rpc

    @property
    def services(self) -> RpcServer:
        """Register the methods this device serves to its circle."""
        if self._rpc_server is None:
            raise RuntimeError("the node is not running")
        return self._rpc_server

    @property
    def data(self) -> DataService:
        """The replicated key-value stores: ``node.data.open("notes")``."""
        if self._data is None:
            raise RuntimeError("the node is not running")
        return self._data

    @property
    def apps(self) -> AppRuntime:
        """Apps installed and running on this device."""
        if self._apps is None:
            raise RuntimeError("the node is not running")
        return self._apps

    @property
    def continuity(self) -> Continuity:
        """File send, the clipboard, notifications."""
        if self._continuity is None:
            raise RuntimeError("the node is not running")
        return self._continuity

    @property
    def rules(self) -> RulesService:
        """Automations this device runs for the circle (``accord rule``)."""
        if self._rules is None:
            raise RuntimeError("the node is not running")
        return self._rules

    @property
    def trust(self) -> TrustService:
        if self._trust is None:
            raise RuntimeError("the node is not running")
        return self._trust

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        check_socket_path(self.home.socket_path)
        self._lock.acquire()
        try:
            await self._start_parts()
        except BaseException:
            await self.stop()
            raise

    async def _start_parts(self) -> None:
        self._started_wall = self.clock.wall()
        self._started_mono = self.clock.monotonic()
        self._db = DirectoryDB(self.home.data_dir / "directory.sqlite3")
        self.directory = DeviceDirectory(self.clock, load=self._db.load, save=self._db.save)
        self.circle = Circle(self.home, self.clock)
        self._bus = await Bus.open(self.settings, self.name)
        details = Announcement(
            v=PROTOCOL_VERSION,
            device_id=self.home.device_id,
            name=self.name,
            public_key=self.home.identity.public_bytes,
            profile=self.home.profile,
            started_at=self._started_wall,
            capabilities=self.home.profile.capabilities(),
        )
        timeout = self.settings.query_timeout_ms / 1000
        self._channels = ChannelService(
            self._bus,
            self.circle,
            self.home.identity,
            self.clock,
            name=self.name,
            query_timeout=timeout,
        )
        self._sync = CircleSync(
            self._bus,
            self.circle,
            self.directory,
            details,
            self.home.identity,
            channels=self._channels,
            query_timeout=timeout,
        )
        self._presence = Presence(
            self._bus,
            details,
            self._public(pairing=False),
            self.directory,
            query_timeout=timeout,
            standing_of=self.circle.standing,
            sign=self.home.identity.sign,
            on_present=self._sync.on_present,
        )
        self._trust = TrustService(
            self.home,
            self._bus,
            self.circle,
            self._sync,
            self.directory,
            self.clock,
            query_timeout=timeout,
            announce_pairing=self._announce_pairing,
            hand_back=lambda plan, force: self.apps.hand_back(plan=plan, force=force),
        )
        self._rpc_server = RpcServer(self._bus, self._channels, self.home.device_id, self.name)
        self._rpc_server.register("device", "info", self._device_info)
        self.hardware.register(self._rpc_server)
        for service, ids in self._permissions.load().restricted.items():
            self._rpc_server.restrict(service, set(ids))
        self._rpc = RpcClient(
            self._bus, self._channels, self.circle, self.directory, self._rpc_server
        )
        self._continuity = Continuity(
            self.home.path, self.home.data_dir, self.name, self.home.device_id, self._rpc,
            self.circle, self.directory, self.clock, self.trust.resolve_member, self._drivers,
            self.hardware.show_local,
        )  # fmt: skip
        self._continuity.serve(self._rpc_server)
        self._data = DataService(
            self._bus,
            self.circle,
            self.directory,
            self._channels,
            self.home.data_dir,
            self.clock,
            name=self.name,
            query_timeout=timeout,
            anti_entropy_s=self.settings.anti_entropy_ms / 1000,
            signer=self.home.identity.sign,
        )
        await self._channels.start()
        await self._sync.start()
        await self._trust.start()
        await self._rpc_server.start()
        await self._data.start()
        self._apps = AppRuntime(
            self.home,
            self.circle,
            self.directory,
            self._rpc,
            self._rpc_server,
            self._data,
            self.clock,
        )
        await self._apps.start()
        self._rules = RulesService(
            me=self.home.device_id, name=self.name, capabilities=self.home.profile.capabilities(),
            data=self._data, rpc=self._rpc, server=self._rpc_server, circle=self.circle,
            directory=self.directory, clock=self.clock, sign=self.home.identity.sign,
            public_key=self.home.identity.public_bytes, resolve_member=self.trust.resolve_member,
            notes=self._continuity.notify.watch,
        )  # fmt: skip
        await self._rules.start()
        await self._presence.start()
        self._control = ControlServer(self.home.socket_path, self.name)
        self._control.add("status", self._status)
        self._control.add("devices", self._devices)
        self._control.add("stop", self._stop_request)
        self._control.add_stream("watch", self._watch)
        self._control.add_stream("pair_open", self._trust.pair_open)
        self._control.add("pair_join", self._trust.pair_join)
        self._control.add("pair_window", self._trust.pair_window)
        self._control.add("trust_list", self._trust.trust_list)
        self._control.add("trust_revoke", self._trust.trust_revoke)
        self._control.add("trust_leave", self._trust.trust_leave)
        self._control.add("trust_set_level", self._trust.trust_set_level)
        self._control.add("call", self._call)
        self._control.add_stream("stream", self._stream)
        self._control.add("permissions", self._list_permissions)
        self._control.add("restrict", self._restrict)
        kv = KvControl(self._data, self.trust.resolve_member)
        kv.register(self._control)
        AppControl(
            self._apps, self._rpc, self.directory, self.trust.resolve_member, self.home.device_id
        ).register(self._control)
        self._continuity.control(self._control)
        RulesControl(self._rules).register(self._control)
        await self._control.start()
        log.info("%s: up as %s", self.name, self.home.device_id)

    async def stop(self) -> None:
        """Leave cleanly: undeclare the token first so peers see us go at once."""
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._presence is not None:
            await self._presence.stop()
            self._presence = None
        if self._rpc_server is not None:
            await self._rpc_server.stop()
            self._rpc_server = None
        if self._rules is not None:
            await self._rules.stop()
            self._rules = None
        if self._apps is not None:
            await self._apps.stop()
            self._apps = None
        if self._continuity is not None:
            await self._continuity.stop()
            self._continuity = None
        if self._data is not None:
            await self._data.stop()
            self._data = None
        if self._channels is not None:
            await self._channels.stop()
            self._channels = None
        if self._trust is not None:
            await self._trust.stop()
            self._trust = None
        if self._sync is not None:
            await self._sync.stop()
            self._sync = None
        if self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()

    def _public(self, *, pairing: bool) -> PublicAnnouncement:
        return PublicAnnouncement(
            v=PROTOCOL_VERSION,
            device_id=self.home.device_id,
            name=self.name,
            type=self.home.profile.type,
            public_key=self.home.identity.public_bytes,
            pairing=pairing,
        )

    def _announce_pairing(self, pairing: bool) -> None:
        if self._presence is not None:
            self._presence.update(self._public(pairing=pairing))

    async def run_until_stopped(self) -> None:
        await self.stopping.wait()

    # -- control methods -------------------------------------------------

    async def _status(self, _params: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        assert self._bus is not None
        profile = self.home.profile
        return {
            "device_id": self.home.device_id,
            "name": self.name,
            "type": profile.type,
            "vendor": profile.vendor,
            "model": profile.model,
            "security_level": profile.security_level,
            "capabilities": profile.capabilities(),
            "summary": profile.summary(),
            "home": str(self.home.path),
            "pid": os.getpid(),
            "zid": self._bus.zid,
            "started_at": self._started_wall,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 3),
            "zenoh_peers": self._bus.peer_count(),
            "devices_online": len(self.directory.online_ids()),
            "devices_known": self.directory.count(),
            "listen": list(self.settings.listen),
            "connect": list(self.settings.connect),
            "multicast": self.settings.multicast,
            "lease_ms": self.settings.lease_ms,
            "circle_id": self.circle.members.circle_id if self.circle else "",
            "circle_members": len(self.circle.members.active())
            if self.circle and self.circle.membership() != "revoked"
            else 0,
            "fingerprint": self.home.identity.fingerprint,
            **(self._trust.membership() if self._trust else {"membership": "alone"}),
            **(self._continuity.status() if self._continuity else {}),
        }

    async def _device_info(self, _params: None, _caller: str) -> dict[str, Any]:
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        return {
            "device_id": self.home.device_id,
            "name": self.name,
            "profile": to_dict(self.home.profile),
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 3),
            "load": list(load),
            **host_load(),
            "services": self.services.services(),
            "drivers": self.hardware.drivers,
        }

    def _target(self, params: dict[str, Any]) -> tuple[str, str, str, float]:
        target = self.trust.resolve_member(str(params.get("device", "")))
        service, _, method = str(params.get("target", "")).partition(".")
        if not service or not method:
            raise ControlError("name the method as SERVICE.METHOD, e.g. device.info")
        try:
            timeout = float(params.get("timeout", DEFAULT_TIMEOUT_S))
        except (TypeError, ValueError):
            raise ControlError("timeout must be a number of seconds") from None
        return target.device_id, service, method, timeout

    async def _call(self, params: dict[str, Any]) -> Any:
        """Control method behind ``accord call``."""
        device, service, method, timeout = self._target(params)
        result: Any = await self.rpc.call(
            device, service, method, params.get("args"), timeout=timeout
        )
        return msgspec.to_builtins(result)

    async def _stream(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        """Control stream behind ``accord capture`` and ``accord sensors --watch``: the
        items of a remote stream (bytes as base64)."""
        device, service, method, timeout = self._target(params)
        items: RpcStream[Any] = self.rpc.stream(
            device, service, method, params.get("args"), timeout=timeout
        )
        async with items:
            async for item in items:
                yield msgspec.to_builtins(item)

    async def _list_permissions(self, _params: dict[str, Any]) -> dict[str, Any]:
        """Every service this device serves, and who may call it."""
        assert self.circle is not None
        restricted = self.services.restrictions()
        rows = []
        for service in sorted(set(self.services.services()) | set(restricted)):
            ids = restricted.get(service)
            names = None
            if ids is not None:
                names = sorted((m.name if (m := self.circle.member(i)) else i[:10]) for i in ids)
            rows.append({"service": service, "allowed": names, "device_ids": sorted(ids or [])})
        return {"services": rows}

    async def _restrict(self, params: dict[str, Any]) -> dict[str, Any]:
        """Restrict a service to named members (``devices``), or open it to all
        members again (``devices`` null). Persisted in the home."""
        service = str(params.get("service", ""))
        if service not in self.services.services():
            known = ", ".join(self.services.services())
            raise ControlError(f"this device serves no {service!r}; services: {known}")
        devices = params.get("devices")
        allowed = None
        if devices is not None:
            if not isinstance(devices, list) or not devices:
                raise ControlError("name at least one device, or open the service to all")
            allowed = {self.trust.resolve_member(str(d)).device_id for d in devices}
        perms = self._permissions.load()
        if allowed is None:
            perms.restricted.pop(service, None)
        else:
            perms.restricted[service] = sorted(allowed)
        self._permissions.save(perms)
        self.services.restrict(service, allowed)
        return await self._list_permissions({})

    async def _devices(self, _params: dict[str, Any]) -> list[Any]:
        assert self.directory is not None
        return [_record_json(r) for r in self.directory.records()]

    async def _stop_request(self, _params: dict[str, Any]) -> dict[str, bool]:
        self.stopping.set()
        return {"stopping": True}

    async def _watch(self, _params: dict[str, Any]) -> AsyncIterator[Any]:
        """The current devices as "present" events, then every change."""
        assert self.directory is not None
        stream = self.directory.events()  # subscribed now: nothing slips in between
        try:
            for record in self.directory.records():
                yield {"kind": "present", "at": self.clock.wall(), "device": _record_json(record)}
            async for event in stream:
                yield _event_json(event)
        finally:
            stream.close()


def _record_json(record: Any) -> Any:
    return msgspec.to_builtins(record)


def _event_json(event: DirectoryEvent) -> Any:
    return {"kind": event.kind, "at": event.at, "device": _record_json(event.device)}
