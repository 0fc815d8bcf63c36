"""The shared part of the app runtime: its state, who may do what (authority),
revocation, installed apps and transfers. :class:`accord.apps.runtime.AppRuntime`
composes it with failover, moving and leaving (one module each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.apps import authority, sandbox
from accord.apps.bundle import (
    Bundle,
    build_bundle,
    decode_bundle,
    encode_bundle,
    extract_bundle,
    verify_bundle,
)
from accord.apps.checkpoints import Checkpoints
from accord.apps.errors import AppError, NoPlacement, RequirementsNotMet, TamperedBundle
from accord.apps.gate import AppGate
from accord.apps.manifest import AppManifest
from accord.apps.messages import (
    AppRef,
    Checkpoint,
    Grant,
    InstallParams,
)
from accord.apps.placement import Candidate
from accord.apps.process import AbilityProcess, SparePool
from accord.apps.transfers import Transfers
from accord.bus.directory import DeviceDirectory, DeviceRecord
from accord.clock import Clock
from accord.data.api import DataStore
from accord.data.service import DataService
from accord.device.home import Home
from accord.errors import AccordError, PermissionDenied, UnknownStore
from accord.rpc import RpcClient, RpcServer
from accord.trust.circle import Circle
from accord.trust.levels import may_receive, require_may_receive
from accord.trust.members import level_rank

log = logging.getLogger(__name__)

STORE = "accord.apps"
"""The checkpoint store of S1 apps; apps of label Sn (n > 1) use ``accord.apps.sn``."""
RESTART_LIMIT = 5  # crashes of a keep-alive app within RESTART_WINDOW_S before giving up
RESTART_WINDOW_S = 60.0
MOVE_TIMEOUT_S = 60.0
LOG_KEEP = 1024 * 1024  # bytes of a run's log kept in the home when it ends
LEAVE_SYNC_S = 10.0  # how long a leaving device waits for a successor to hold its checkpoint
ELSEWHERE_TIMEOUT_S = 2.0  # asking members whether they already run a revoked host's app


@dataclass
class Running:
    manifest: AppManifest
    content_hash: str
    process: AbilityProcess
    started_at: float
    params: dict[str, Any]
    grant: Grant
    box: sandbox.Sandbox
    gate: AppGate
    last_state: bytes | None = None
    crashes: list[float] = field(default_factory=list)
    moving: bool = False
    checkpointer: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None


class RuntimeBase:
    def __init__(
        self,
        home: Home,
        circle: Circle,
        directory: DeviceDirectory,
        rpc: RpcClient,
        services: RpcServer,
        data: DataService,
        clock: Clock,
    ) -> None:
        self._home = home
        self._me = home.device_id
        self._circle = circle
        self._directory = directory
        self._rpc = rpc
        self._services = services
        self._data = data
        self._clock = clock
        self.folder = home.data_dir / "apps"
        self._running: dict[str, Running] = {}
        self.crashed: dict[str, str] = {}
        self.transfers = Transfers(rpc, clock)
        self._spares = SparePool(lambda: self.folder / "logs" / "spare.log")
        self._store: DataStore | None = None
        self.checkpoints = Checkpoints(lambda: self.store)
        """The S1 checkpoints; :meth:`checkpoints_for` gives those of any label."""
        self._online: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Any] = []
        self._install_lock = asyncio.Lock()
        self._revoked: set[str] = set()
        self._failing_over: set[str] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def store(self) -> DataStore:
        assert self._store is not None, "the app runtime is not started"
        return self._store

    def checkpoints_for(self, label: str, *, create: bool = True) -> Checkpoints | None:
        """The checkpoints of apps whose state is labelled ``label``; None if that store
        is not here (and ``create`` is false) or this device may not hold the label."""
        if label == "S1":
            return self.checkpoints
        if not may_receive(self._member_level(self._me), label):
            return None
        name = f"{STORE}.{label.lower()}"
        try:
            store = self._data.open_existing(name)
        except UnknownStore:
            if not create:
                return None
            store = self._data.open(name, label=label)  # type: ignore[arg-type]
        if store.label != label:
            return None
        return Checkpoints(lambda: store)

    # -- authority (see accord.apps.authority) -------------------------------------

    def _member_level(self, device_id: str) -> str:
        """A member's level as the circle records it (what every member sees alike)."""
        member = self._circle.member(device_id)
        if member is not None:
            return member.security_level
        return self._home.profile.security_level if device_id == self._me else ""

    def _my_level(self) -> str:
        """This device's level for who may run code on it: the higher of what its
        profile declares and what the circle records."""
        declared, recorded = self._home.profile.security_level, self._member_level(self._me)
        return recorded if level_rank(recorded) > level_rank(declared) else declared

    def _name_of(self, device_id: str) -> str:
        """A member's name, also once it was revoked; else the start of its id."""
        found = (m for m in self._circle.members.members if m.device_id == device_id)
        member = self._circle.member(device_id) or next(found, None)
        return member.name if member is not None else device_id[:10]

    def _vouches(self, device_id: str) -> bool:
        """Whether ``device_id`` may run code here (rules 1 to 3)."""
        if device_id == self._me:
            return True
        allowed = self._services.restrictions().get(authority.SERVICE)
        if allowed is not None:
            return device_id in allowed
        return authority.outranks(self._member_level(device_id), self._my_level())

    def _authorize(self, caller: str, action: str) -> None:
        self._refuse_if_revoked(caller)
        if self._vouches(caller):
            return
        if self._services.restrictions().get(authority.SERVICE) is not None:
            raise PermissionDenied(
                f"{self._name_of(caller)} may not {action} {self._home.name}: only the "
                f"devices its owner named may (accord permissions ls, on {self._home.name})"
            )
        raise authority.denied(action, self._name_of(caller), self._member_level(caller),
                               self._home.name, self._my_level())  # fmt: skip

    def _valid_grant(self, grant: Grant | None, app_id: str, content_hash: str) -> Grant | None:
        ok = authority.grant_valid(grant, self._public_key_of, app_id, content_hash)
        return grant if ok else None

    def grant(self, app_id: str, content_hash: str) -> Grant:
        """This device's grant for code ``content_hash`` of ``app_id``."""
        return authority.sign_grant(self._home.identity, app_id, content_hash, self._clock.wall())

    def _stronger(self, offered: Grant | None, current: Grant) -> Grant:
        """Of two grants for the same code, the one whose signer's level is higher."""
        if offered is None:
            return current
        rank = level_rank(self._member_level(offered.by))
        return offered if rank > level_rank(self._member_level(current.by)) else current

    def _may_hold(self, label: str) -> None:
        require_may_receive(self._member_level(self._me), label, self._home.name)

    def _recorded_key(self, device_id: str) -> bytes | None:
        """A device's key as a member, active or since revoked: what a checkpoint it
        signed while it belonged is checked against (the data layer refuses what a
        device writes after its revocation)."""
        key = self._public_key_of(device_id)
        if key is None:
            for m in self._circle.members.members:
                if m.device_id == device_id:
                    return m.public_key
        return key

    # -- revocation -----------------------------------------------------------------

    def _revoked_ids(self) -> set[str]:
        """Devices recorded in the member list but no longer active in it."""
        members = self._circle.members
        return {m.device_id for m in members.members} - {m.device_id for m in members.active()}

    def revoked_here(self) -> bool:
        """Whether this device knows it was revoked from its circle."""
        return self._circle.standing(self._me) == "revoked" or self._me in self._revoked_ids()

    def _refuse_if_revoked(self, caller: str) -> None:
        if caller != self._me and self.revoked_here():
            raise PermissionDenied(
                f"{self._home.name} was removed from its circle; it runs no apps for it"
            )

    def _on_circle(self) -> None:
        """The member list changed: fail over the keep-alive apps of devices revoked
        since, at once; stop every app here if this device was revoked."""
        revoked = self._revoked_ids()
        new = revoked - self._revoked - {self._me}
        self._revoked = revoked
        if self.revoked_here():
            if self._running:
                self._spawn(self._stop_all_revoked())
            return
        for device in sorted(new):
            self._spawn(self._fail_over(device, revoked=True))

    async def _stop_all_revoked(self) -> None:
        """This device was revoked: its apps stop, without a checkpoint (the members
        refuse its writes now) and without forgetting theirs (the successor's)."""
        for app_id in sorted(self._running):
            log.warning("%s was removed from its circle: stopping %s", self._home.name, app_id)
            with contextlib.suppress(AppError):
                await self._stop_local(app_id, checkpoint=False, forget=False)

    # -- installed apps ----------------------------------------------------------

    def _app_dir(self, app_id: str) -> Path:
        return self.folder / "installed" / app_id

    def _bundle_path(self, app_id: str) -> Path:
        return self.folder / "installed" / f"{app_id}.bundle"

    def installed(self) -> dict[str, Bundle]:
        out = {}
        for path in sorted((self.folder / "installed").glob("*.bundle")):
            with contextlib.suppress(OSError, AccordError):
                bundle = decode_bundle(path.read_bytes())
                out[bundle.manifest.id] = bundle
        return out

    def bundle(self, app_id: str) -> Bundle:
        path = self._bundle_path(app_id)
        try:
            return decode_bundle(path.read_bytes())
        except FileNotFoundError:
            raise AppError(
                f"app {app_id!r} is not installed on this device; install it with: "
                "accord app install PATH"
            ) from None

    def _public_key_of(self, device_id: str) -> bytes | None:
        if device_id == self._me:
            return self._home.identity.public_bytes
        member = self._circle.member(device_id)
        return None if member is None else member.public_key

    async def install(self, bundle: Bundle) -> dict[str, Any]:
        """Verify and install a bundle here (refused with the reason if a non-member
        signed it, it was tampered with, or this device lacks what it requires)."""
        verify_bundle(bundle, self._public_key_of)
        manifest = bundle.manifest
        have = set(self._home.profile.capabilities())
        lacking = [cap for cap in manifest.requires if cap not in have]
        if lacking:
            raise RequirementsNotMet(
                f"{self._home.name} cannot run {manifest.id}: it lacks {', '.join(lacking)}"
            )
        async with self._install_lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, extract_bundle, bundle, self._app_dir(manifest.id))
            tmp = self._bundle_path(manifest.id).with_suffix(".tmp")
            tmp.write_bytes(encode_bundle(bundle))
            tmp.replace(self._bundle_path(manifest.id))
        log.info("%s: installed %s %s", self._home.name, manifest.id, manifest.version)
        self._spares.warm()  # the first start of it need not wait for Python
        return {"app_id": manifest.id, "version": manifest.version, "hash": bundle.content_hash}

    async def build(self, folder: Path) -> Bundle:
        loop = asyncio.get_running_loop()
        now = self._clock.wall()
        return await loop.run_in_executor(
            None, lambda: build_bundle(folder, self._home.identity, now=now)
        )

    async def remove(self, app_id: str) -> dict[str, Any]:
        if app_id in self._running:
            await self._stop_local(app_id, checkpoint=False, forget=True)
        path = self._bundle_path(app_id)
        if not path.exists():
            raise AppError(f"app {app_id!r} is not installed on {self._home.name}")
        path.unlink()
        shutil.rmtree(self._app_dir(app_id), ignore_errors=True)
        return {"app_id": app_id, "removed": True}

    # -- transfers (the receiver pulls with apps.fetch) ---------------------------

    async def _fetch(self, source: str, transfer: str, part: str) -> bytes:
        return await self.transfers.fetch(source, transfer, part)

    async def _ensure_installed(self, source: str, app_id: str, content_hash: str,
                                transfer: str) -> None:  # fmt: skip
        with contextlib.suppress(AppError):
            if self.bundle(app_id).content_hash == content_hash:
                return
        bundle = decode_bundle(await self._fetch(source, transfer, "bundle"))
        if bundle.manifest.id != app_id or bundle.content_hash != content_hash:
            raise TamperedBundle(
                f"the bundle offered as {app_id} {content_hash[:12]} is "
                f"{bundle.manifest.id} {bundle.content_hash[:12]}; not installed"
            )
        await self.install(bundle)

    async def send_bundle(self, target: str, app_id: str) -> dict[str, Any]:
        """Install our copy of ``app_id`` on ``target`` (it pulls it from us)."""
        bundle = self.bundle(app_id)
        if target == self._me:
            return await self.install(bundle)
        tid = self.transfers.offer(target, encode_bundle(bundle))
        params = InstallParams(app_id, bundle.content_hash, tid)
        result: dict[str, Any] = await self._rpc.call(target, "apps", "install", params,
                                                      timeout=MOVE_TIMEOUT_S)  # fmt: skip
        return result

    async def _rpc_install(self, params: InstallParams, caller: str) -> dict[str, Any]:
        self._authorize(caller, "install apps on")
        await self._ensure_installed(caller, params.app_id, params.content_hash, params.transfer)
        return {"device": self._home.name, "app_id": params.app_id, "hash": params.content_hash}

    async def _rpc_list(self, _params: None, _caller: str) -> list[dict[str, Any]]:
        return await self.listing()

    async def listing(self) -> list[dict[str, Any]]:
        """The apps installed here."""
        return [
            {
                "app_id": b.manifest.id,
                "version": b.manifest.version,
                "name": b.manifest.name or b.manifest.id,
                "hash": b.content_hash,
                "signer": b.signer,
                "requires": b.manifest.requires,
                "keep_alive": b.manifest.keep_alive,
                "continuable": b.manifest.continuable,
                "state_label": b.manifest.state_label,
                "stores": b.manifest.stores,
                "running": b.manifest.id in self._running,
            }
            for b in self.installed().values()
        ]

    async def _rpc_remove(self, params: AppRef, caller: str) -> dict[str, Any]:
        self._authorize(caller, "remove apps from")
        return await self.remove(params.app_id)

    # -- implemented by the runtime's parts (accord.apps.runtime and its mixins) -----

    # Each part calls the others through these; AppRuntime's MRO puts the real ones
    # first (runtime.py: run, stop_app, _stop_local; failover.py: _checkpoint,
    # _candidates, _fail_over; moving.py: move).

    async def run(
        self,
        app_id: str,
        params: dict[str, Any],
        state: bytes | None = None,
        *,
        grant: Grant | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def stop_app(self, app_id: str) -> dict[str, Any]:
        raise NotImplementedError

    async def _stop_local(self, app_id: str, *, checkpoint: bool, forget: bool) -> None:
        raise NotImplementedError

    async def _checkpoint(self, app_id: str, running: Running, state: bytes | None) -> Checkpoint:
        raise NotImplementedError

    def _candidates(self) -> list[Candidate]:
        raise NotImplementedError

    async def _fail_over(self, gone: str, *, revoked: bool = False) -> None:
        raise NotImplementedError

    async def move(self, app_id: str, target: str, grant: Grant | None = None) -> dict[str, Any]:
        raise NotImplementedError


def reasons(exc: NoPlacement, candidates: list[Candidate]) -> str:
    """The per-device reasons of a NoPlacement, as "name: why; ..."."""
    names = {c.device_id: c.name for c in candidates}
    return "; ".join(f"{names.get(d, d[:10])}: {why}" for d, why in exc.reasons)


def failover_manifest(app_id: str, requires: list[str], label: str) -> AppManifest:
    """The app as failover ranks it: only what a checkpoint says of it (so every
    member ranks alike, whatever version of the app it holds)."""
    return AppManifest(id=app_id, version="", entry="x", requires=requires,
                       state_label=label)  # type: ignore[arg-type]  # fmt: skip


def candidate(rec: DeviceRecord, load: float, level: str) -> Candidate:
    profile = rec.profile
    displays = profile.hardware.displays if profile is not None else []
    return Candidate(
        device_id=rec.device_id,
        name=rec.name,
        capabilities=list(rec.capabilities),
        mains=profile is not None and profile.power == "mains",
        load=load,
        display_inches=max((d.diagonal_in for d in displays), default=0.0),
        online=True,
        level=level,
    )
