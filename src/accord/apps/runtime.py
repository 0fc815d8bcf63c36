"""Apps on a running node: install, run, move (continuation), checkpoints and failover.

Every ability runs in its own process (:mod:`accord.apps.process`); the node
supervises it. Between devices everything is the ``apps`` RPC service: large data
(bundles, saved state) is never pushed, the receiver pulls it with the
``apps.fetch`` stream from the device that offered it, so it is flow-controlled and
only the device it was offered to can take it.

Moving an app (:meth:`AppRuntime.move`), on the source:

1. ``on_continue(target)``: the app may refuse;
2. ``on_save()``, then SIGSTOP: the source copy cannot run any more;
3. the target fetches the bundle (only if it lacks that content hash) and the
   state, restores and starts the app, and answers;
4. only then the source is stopped (``on_stop``). If any step fails, the source
   gets SIGCONT and goes on with the state it had: one copy, never zero or two.

Keep-alive apps checkpoint into the apps store of their manifest's ``state_label``
(``accord.apps`` for S1, ``accord.apps.s2`` ... ``accord.apps.s4``: only members whose
level may hold the label receive it), on every save and every ``checkpoint_s``,
signed by the host. When the device running one goes offline, every member that
holds the checkpoint computes the same successor
(:func:`accord.apps.placement.failover_successor` over the online capable members
that may hold the label, up to the level of the checkpoint's grant) and that one
restarts it from the checkpoint.

Leaving and revocation (:meth:`AppRuntime.hand_back`, :meth:`AppRuntime._on_circle`):
before a device leaves its circle its running apps move to other members, chosen by
the placement rules among those that may take them; a keep-alive app that cannot
move stops with a final checkpoint, and its failover successor (computed without the
leaving device, under a grant that outlives it) restarts it once it sees the device
revoked. Any other app blocks the leave unless forced. A member that sees a device
revoked fails that device's keep-alive apps over at once (a checkpoint its host
signed while a member still counts), unless the app already runs on an online
member (one moved off before leaving); a device that learns it was revoked stops
every app it runs and takes no more.

Authority (:mod:`accord.apps.authority`): ``install``, ``remove``, ``run``,
``stop``, ``move`` and ``send`` need the caller to be this device, named in the
``apps`` allow-list, or (without one) at this device's level or higher; ``restore``
also takes a grant that counts here. ``list`` and ``ps`` answer every member, ``ps``
without the status of apps whose state label the caller may not hold. Every app
runs confined, reaching its node only through its gate (:mod:`accord.apps.sandbox`,
:mod:`accord.apps.gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

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
    FetchParams,
    Grant,
    InstallParams,
    MoveParams,
    RestoreParams,
    RunParams,
    SendParams,
)
from accord.apps.placement import Candidate, choose, failover_successor, rank
from accord.apps.process import AbilityProcess, AppFailed, SparePool
from accord.apps.transfers import SERVICE as TRANSFER_SERVICE
from accord.apps.transfers import Transfers
from accord.bus.directory import DeviceDirectory, DeviceRecord, DirectoryEvent
from accord.clock import Clock
from accord.data.api import DataStore
from accord.data.service import DataService
from accord.device.home import Home
from accord.errors import AccordError, DeviceUnavailable, PermissionDenied, UnknownStore
from accord.rpc import RpcClient, RpcServer
from accord.trust.circle import Circle
from accord.trust.levels import DataLabel, may_receive, require_may_receive
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


@dataclass
class Handover:
    """What leaving the circle does with one app running here: ``move`` (to the first
    of ``targets`` that takes it), ``failover`` (stop with a final checkpoint;
    ``successor`` restarts it once it sees this device revoked), ``stop`` (forced:
    nothing restarts it) or ``blocked`` (the leave is refused; ``reason`` says why)."""

    app_id: str
    action: str
    targets: list[Candidate] = field(default_factory=list)
    successor: Candidate | None = None
    reason: str = ""
    to: Candidate | None = None
    synced: bool | None = None
    """failover: whether the successor held the final checkpoint before the leave."""

    def row(self) -> dict[str, Any]:
        to = self.to or (self.targets[0] if self.action == "move" and self.targets
                         else self.successor if self.action == "failover" else None)  # fmt: skip
        row: dict[str, Any] = {
            "app_id": self.app_id,
            "action": self.action,
            "to": to.name if to is not None else None,
            "to_id": to.device_id if to is not None else None,
            "reason": self.reason,
        }
        if self.synced is not None:
            row["synced"] = self.synced
        return row


class AppRuntime:
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

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        (self.folder / "installed").mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        self._store = self._data.open(STORE)
        s = self._services
        s.register("apps", "install", self._rpc_install, InstallParams)
        s.register("apps", "list", self._rpc_list)
        s.register("apps", "remove", self._rpc_remove, AppRef)
        s.register("apps", "run", self._rpc_run, RunParams)
        s.register("apps", "stop", self._rpc_stop, AppRef)
        s.register("apps", "ps", self._rpc_ps)
        s.register("apps", "restore", self._rpc_restore, RestoreParams)
        s.register("apps", "move", self._rpc_move, MoveParams)
        s.register("apps", "send", self._rpc_send, SendParams)
        s.register("apps", "checkpoint", self._rpc_checkpoint, AppRef)
        s.register_stream(TRANSFER_SERVICE, "fetch", self.transfers.serve, FetchParams)
        if self.installed():  # a device with no apps keeps no spare process around
            self._spares.warm()
        self._online = self._directory.online_ids()
        self._revoked = self._revoked_ids()
        self._undo.append(self._directory.subscribe(self._on_directory))
        self._undo.append(self._circle.on_change(self._on_circle))

    async def stop(self) -> None:
        for undo in self._undo:
            undo()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for app_id in list(self._running):
            await self._stop_local(app_id, checkpoint=True, forget=False)
        await self._spares.close()

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

    # -- running -----------------------------------------------------------------

    async def run(
        self,
        app_id: str,
        params: dict[str, Any],
        state: bytes | None = None,
        *,
        grant: Grant | None = None,
    ) -> dict[str, Any]:
        """Start ``app_id`` here (``state``: restore from a save). ``grant``: who
        vouched for this code (kept for moves and failover); default this device."""
        if app_id in self._running:
            raise AppError(f"app {app_id!r} already runs on {self._home.name}")
        bundle = self.bundle(app_id)
        self._may_hold(bundle.manifest.state_label)
        grant = self._valid_grant(grant, app_id, bundle.content_hash) or self.grant(
            app_id, bundle.content_hash
        )
        loop = asyncio.get_running_loop()
        box = await loop.run_in_executor(
            None, sandbox.prepare, self._app_dir(app_id), self._home.path
        )
        process: AbilityProcess | None = None
        gate = AppGate(bundle.manifest, box.socket, me=self._me, rpc=self._rpc,
                       directory=self._directory, circle=self._circle, data=self._data,
                       app_pid=lambda: process.pid if process is not None else None)  # fmt: skip
        try:
            await gate.start()
            box.give(box.socket)
            process = await self._spares.take()
            process.app_id = app_id
            process.log_path = box.log  # in the run's folder: no path into the home
            await process.request(
                "load",
                app_dir=str(box.code),
                socket=str(box.socket),
                device_id=self._me,
                device_name=self._home.name,
                log=str(box.log),
                sandbox=box.plan(),
            )
            await process.request("start", params=params, state=state)
        except BaseException:
            if process is not None:
                await process.kill()
            await gate.stop()
            self._keep_log(app_id, box)
            box.remove()
            raise
        running = Running(bundle.manifest, bundle.content_hash, process, self._clock.wall(),
                          params, grant, box, gate, last_state=state)  # fmt: skip
        self._running[app_id] = running
        self.crashed.pop(app_id, None)
        running.watcher = asyncio.get_running_loop().create_task(self._watch(app_id, running))
        if bundle.manifest.keep_alive:
            running.checkpointer = asyncio.get_running_loop().create_task(
                self._checkpoint_loop(app_id, running)
            )
            try:  # the state it started with (from its params), so a failover has it
                state = (await process.request("save"))["state"]
            except AppFailed as exc:
                log.warning("%s: first save of %s failed: %s", self._home.name, app_id, exc)
            await self._checkpoint(app_id, running, state)
        log.info("%s: started %s (pid %d)", self._home.name, app_id, process.pid)
        return self._describe_basic(app_id, running)

    def _describe_basic(self, app_id: str, r: Running) -> dict[str, Any]:
        return {
            "app_id": app_id,
            "device": self._home.name,
            "device_id": self._me,
            "pid": r.process.pid,
            "since": r.started_at,
            "keep_alive": r.manifest.keep_alive,
            "paused": r.process.paused,
            "hash": r.content_hash,
            "state_label": r.manifest.state_label,
        }

    async def _rpc_run(self, params: RunParams, caller: str) -> dict[str, Any]:
        self._authorize(caller, "run apps on")
        return await self.run(params.app_id, params.params, grant=params.grant)

    async def _release(self, running: Running) -> None:
        """What a run held besides its process: its gate and its folder (its log is
        kept in the home)."""
        await running.gate.stop()
        running.process.log_path = self._keep_log(running.manifest.id, running.box)
        running.box.remove()

    def _keep_log(self, app_id: str, box: sandbox.Sandbox) -> Path:
        """Append the run's log (its last MiB) to ``logs/<app>.log`` in the home."""
        kept = self.folder / "logs" / f"{app_id}.log"
        with contextlib.suppress(OSError):
            data = sandbox.read_log(box.log, LOG_KEEP)
            with open(kept, "ab") as out:
                out.write(data)
        return kept

    async def _stop_local(self, app_id: str, *, checkpoint: bool, forget: bool) -> None:
        running = self._running.get(app_id)
        if running is None:
            raise AppError(f"app {app_id!r} is not running on {self._home.name}")
        for task in (running.checkpointer, running.watcher):
            if task is not None:
                task.cancel()
        if checkpoint and running.manifest.keep_alive:
            with contextlib.suppress(AccordError):
                await self._save_and_checkpoint(app_id, running)
        del self._running[app_id]
        try:
            await running.process.stop()
        finally:
            await self._release(running)
        if forget:
            ckpts = self.checkpoints_for(running.manifest.state_label, create=False)
            if ckpts is not None:
                await ckpts.forget(app_id)

    async def _rpc_stop(self, params: AppRef, caller: str) -> dict[str, Any]:
        self._authorize(caller, "stop apps on")
        return await self.stop_app(params.app_id)

    async def stop_app(self, app_id: str) -> dict[str, Any]:
        """Stop an app for good: no checkpoint is kept, so nothing fails it over."""
        await self._stop_local(app_id, checkpoint=False, forget=True)
        return {"app_id": app_id, "stopped": True, "device": self._home.name}

    async def ps(self) -> list[dict[str, Any]]:
        rows = []
        for app_id, r in sorted(self._running.items()):
            row = self._describe_basic(app_id, r)
            if not r.process.paused:
                with contextlib.suppress(AppFailed):
                    row["status"] = (await r.process.request("describe", timeout=2.0))["status"]
            rows.append(row)
        return rows

    async def _rpc_ps(self, _params: None, caller: str) -> list[dict[str, Any]]:
        rows = await self.ps()
        if caller != self._me:  # an app's status may show its state: only at its label
            level = self._member_level(caller)
            for row in rows:
                if not may_receive(level, row["state_label"]):
                    row.pop("status", None)
        return rows

    async def send(self, app_id: str, message: Any) -> Any:
        running = self._running.get(app_id)
        if running is None:
            raise AppError(f"app {app_id!r} is not running on {self._home.name}")
        return (await running.process.request("message", message=message))["reply"]

    async def _rpc_send(self, params: SendParams, caller: str) -> Any:
        self._authorize(caller, "send messages to apps on")
        running = self._running.get(params.app_id)
        if running is not None and caller != self._me:  # its reply may carry its state
            require_may_receive(self._member_level(caller), running.manifest.state_label,
                                self._name_of(caller))  # fmt: skip
        return await self.send(params.app_id, params.message)

    async def _watch(self, app_id: str, running: Running) -> None:
        """Report a crash; restart a keep-alive app from its last state."""
        code = await running.process.proc.wait()
        if running.process.expected_exit or self._running.get(app_id) is not running:
            return
        del self._running[app_id]
        if running.checkpointer is not None:
            running.checkpointer.cancel()
        reason = f"exited with code {code} ({running.process._tail()})"
        await self._release(running)
        log.error("%s: app %s crashed: %s", self._home.name, app_id, reason)
        self.crashed[app_id] = reason
        now = self._clock.monotonic()
        recent = [t for t in running.crashes if now - t < RESTART_WINDOW_S] + [now]
        if not running.manifest.keep_alive or len(recent) > RESTART_LIMIT:
            return
        await asyncio.sleep(0.2 * 2 ** (len(recent) - 1))
        try:
            await self.run(app_id, running.params, running.last_state, grant=running.grant)
        except AccordError as exc:
            self.crashed[app_id] = f"{reason}; restart failed: {exc}"
            return
        self._running[app_id].crashes = recent

    # -- checkpoints ---------------------------------------------------------------

    async def _checkpoint_loop(self, app_id: str, running: Running) -> None:
        while True:
            await asyncio.sleep(running.manifest.checkpoint_s)
            if running.process.paused or running.moving:
                continue
            try:
                await self._save_and_checkpoint(app_id, running)
            except AccordError as exc:
                log.warning("%s: checkpoint of %s failed: %s", self._home.name, app_id, exc)

    async def _save_and_checkpoint(self, app_id: str, running: Running) -> None:
        state: bytes = (await running.process.request("save"))["state"]
        await self._checkpoint(app_id, running, state)

    async def _checkpoint(self, app_id: str, running: Running, state: bytes | None) -> Checkpoint:
        running.last_state = state
        label = running.manifest.state_label
        ckpts = self.checkpoints_for(label)
        if ckpts is None:  # run() checked that this device may hold it
            raise AppError(f"{self._home.name} may not hold {label} checkpoints")
        bundle_blob, bundle_chunks = await ckpts.write_blob(
            app_id, encode_bundle(self.bundle(app_id))
        )
        state_blob, state_chunks = await ckpts.write_blob(app_id, state or b"")
        ckpt = Checkpoint(app_id, self._me, self._clock.wall(), running.content_hash,
                          bundle_blob, bundle_chunks, state_blob, state_chunks,
                          list(running.manifest.requires), label,
                          running.grant)  # fmt: skip
        signed = authority.sign_checkpoint(ckpt, self._home.identity)
        await ckpts.save(signed)
        return signed

    async def _rpc_checkpoint(self, params: AppRef, caller: str) -> dict[str, Any] | None:
        """Which checkpoint of an app this device holds (who wrote it, when, which
        state), from the stores of the labels the caller may hold; never the state.
        A leaving device asks its successor this before it leaves."""
        level = self._member_level(caller)
        for label in get_args(DataLabel):
            if caller != self._me and not may_receive(level, label):
                continue
            ckpts = self.checkpoints_for(label, create=False)
            ckpt = None if ckpts is None else await ckpts.get(params.app_id)
            if ckpt is not None:
                return {"host": ckpt.host, "at": ckpt.at, "state_blob": ckpt.state_blob,
                        "state_label": label}  # fmt: skip
        return None

    # -- failover -----------------------------------------------------------------

    def _on_directory(self, _event: DirectoryEvent) -> None:
        online = self._directory.online_ids()
        gone = self._online - online
        self._online = online
        for device in gone:
            self._spawn(self._fail_over(device))

    async def _runs_elsewhere(self, app_id: str) -> bool:
        """Whether an online member (not this device) says it runs ``app_id``; a member
        that does not answer counts as not running it."""
        others = sorted(d for d in self._directory.online_ids()
                        if d != self._me and self._circle.is_member(d))  # fmt: skip
        found = await asyncio.gather(
            *(self._rpc.call(d, "apps", "ps", None, timeout=ELSEWHERE_TIMEOUT_S) for d in others),
            return_exceptions=True,
        )
        for rows in found:
            if isinstance(rows, list) and any(
                isinstance(r, dict) and r.get("app_id") == app_id for r in rows
            ):
                return True
        return False

    def _candidates(self) -> list[Candidate]:
        """Online members as failover sees them. Load is left out on purpose: every
        member must rank alike, and each would measure another's load differently."""
        out = []
        for rec in self._directory.records():
            if not (rec.online or rec.device_id == self._me):
                continue
            if rec.device_id != self._me and not self._circle.is_member(rec.device_id):
                continue
            out.append(_candidate(rec, load=0.0, level=self._member_level(rec.device_id)))
        return out

    async def _fail_over(self, gone: str, *, revoked: bool = False) -> None:
        """Restart here the keep-alive apps of ``gone`` (offline, or ``revoked``) whose
        successor this device is."""
        if self.revoked_here() or self._recorded_key(gone) is None:
            return  # removed ourselves, or not of our circle (one this device left)
        for label in get_args(DataLabel):
            ckpts = self.checkpoints_for(label, create=False)
            if ckpts is None:
                continue
            for ckpt in await ckpts.all():
                if ckpt.host != gone or ckpt.app_id in self._running:
                    continue
                if ckpt.app_id in self._failing_over:
                    continue
                self._failing_over.add(ckpt.app_id)
                try:
                    await self._take_over(ckpts, ckpt, label, revoked=revoked)
                finally:
                    self._failing_over.discard(ckpt.app_id)

    async def _take_over(self, ckpts: Checkpoints, ckpt: Checkpoint, label: str, *,
                         revoked: bool = False) -> None:  # fmt: skip
        """Restart a gone host's app here if this device is its successor, and its
        checkpoint is the host's (signed while it was a member), in the store of its
        label, and vouched for here. For a ``revoked`` host that may still be online,
        not if an online member runs the app already (one it moved off as it left)."""
        what = f"{self._home.name}: failover of {ckpt.app_id}"
        if ckpt.state_label != label or not authority.checkpoint_valid(ckpt, self._recorded_key):
            log.warning("%s: ignoring a checkpoint not signed by its host %s, or in the "
                        "wrong store", what, ckpt.host[:10])  # fmt: skip
            return
        most = authority.authority_level(ckpt, self._public_key_of, self._member_level)
        manifest = _failover_manifest(ckpt.app_id, ckpt.requires, label)
        successor = failover_successor(manifest, self._candidates(), previous=ckpt.host,
                                       max_level=most)  # fmt: skip
        if successor is None or successor.device_id != self._me:
            return
        grant = self._valid_grant(ckpt.grant, ckpt.app_id, ckpt.content_hash)
        voucher = grant.by if grant is not None else ckpt.host
        if not self._vouches(voucher):
            log.warning("%s: not restarted here: %s may not run code on this device",
                        what, self._name_of(voucher))  # fmt: skip
            return
        if revoked and await self._runs_elsewhere(ckpt.app_id):
            log.info("%s: not needed, it runs on another member", what)
            return
        why = "was removed from the circle" if revoked else "went offline"
        log.warning("%s %s; restarting %s here", self._name_of(ckpt.host), why, ckpt.app_id)
        try:
            have = None
            with contextlib.suppress(AppError):
                have = self.bundle(ckpt.app_id).content_hash
            if have != ckpt.content_hash:
                blob = await ckpts.read_blob(ckpt.app_id, ckpt.bundle_blob, ckpt.bundle_chunks)
                bundle = decode_bundle(blob)
                if bundle.content_hash != ckpt.content_hash or bundle.manifest.id != ckpt.app_id:
                    raise TamperedBundle(f"the checkpoint's bundle is not {ckpt.app_id} "
                                         f"{ckpt.content_hash[:12]}")  # fmt: skip
                await self.install(bundle)
            manifest = self.bundle(ckpt.app_id).manifest
            if not manifest.keep_alive or manifest.state_label != label:
                raise AppError(f"{ckpt.app_id} is not a keep-alive app of {label} state")
            state = await ckpts.read_blob(ckpt.app_id, ckpt.state_blob, ckpt.state_chunks)
            await self.run(ckpt.app_id, {}, state, grant=grant)
        except AccordError as exc:
            log.error("%s failed: %s", what, exc)  # noqa: TRY400

    # -- moving -------------------------------------------------------------------

    async def move(self, app_id: str, target: str, grant: Grant | None = None) -> dict[str, Any]:
        """Continue ``app_id`` (running here) on ``target``; see the module docstring.
        ``grant``: the mover's own grant for this code, handed to the target instead of
        the one the app runs under."""
        running = self._running.get(app_id)
        if running is None:
            raise AppError(f"app {app_id!r} is not running on {self._home.name}")
        if not running.manifest.continuable:
            raise AppError(f"app {app_id} is not continuable (its manifest says so)")
        if target == self._me:
            raise AppError(f"app {app_id} already runs on {self._home.name}")
        if running.moving:
            raise AppError(f"app {app_id} is already moving")
        self._check_target(running.manifest, target)
        grant = self._stronger(self._valid_grant(grant, app_id, running.content_hash),
                               running.grant)  # fmt: skip
        t0 = self._clock.monotonic()
        running.moving = True
        try:
            accept = (await running.process.request("continue", target=target))["accept"]
            if not accept:
                raise AppError(f"app {app_id} refused to move now (on_continue said no)")
            state: bytes = (await running.process.request("save"))["state"]
            running.process.pause()
            try:
                bundle = self.bundle(app_id)
                tid = self.transfers.offer(target, encode_bundle(bundle), state)
                restore = RestoreParams(app_id, bundle.content_hash, tid, len(state),
                                        running.params, grant)  # fmt: skip
                await self._rpc.call(target, "apps", "restore", restore, timeout=MOVE_TIMEOUT_S)
            except BaseException:
                running.process.resume()  # the source goes on, with its state intact
                raise
            self.transfers.withdraw(tid)
        finally:
            running.moving = False
        elapsed = self._clock.monotonic() - t0
        await self._stop_local(app_id, checkpoint=False, forget=False)
        return {"app_id": app_id, "to": target, "state_bytes": len(state),
                "seconds": round(elapsed, 4)}  # fmt: skip

    def _check_target(self, manifest: AppManifest, target: str) -> None:
        """Refuse, before the app is paused, a target that lacks what it requires or
        whose level may not hold its state (the state never leaves then)."""
        rec = self._directory.get(target)
        name = rec.name if rec is not None else self._name_of(target)
        if rec is not None and rec.profile is not None:
            lacking = [cap for cap in manifest.requires if cap not in rec.capabilities]
            if lacking:
                raise RequirementsNotMet(
                    f"{name} cannot run {manifest.id}: it lacks {', '.join(lacking)}"
                )
        require_may_receive(self._member_level(target), manifest.state_label, name)

    async def _rpc_move(self, params: MoveParams, caller: str) -> dict[str, Any]:
        self._authorize(caller, "move apps off")
        return await self.move(params.app_id, params.target, params.grant)

    async def _rpc_restore(self, params: RestoreParams, caller: str) -> dict[str, Any]:
        """Take an app from ``caller``: it has authority here, or hands over a grant
        that counts here for exactly this code (then the app must be continuable)."""
        grant = self._valid_grant(params.grant, params.app_id, params.content_hash)
        by_grant = False
        try:
            self._authorize(caller, "move apps onto")
        except PermissionDenied:
            if grant is None or not self._vouches(grant.by):
                raise
            by_grant = True
        await self._ensure_installed(caller, params.app_id, params.content_hash, params.transfer)
        manifest = self.bundle(params.app_id).manifest
        if by_grant and not manifest.continuable:
            raise AppError(f"app {params.app_id} is not continuable (its manifest says so)")
        self._may_hold(manifest.state_label)
        state = await self._fetch(caller, params.transfer, "state")
        if len(state) != params.state_bytes:
            raise AppError(f"state transfer cut short: {len(state)} of {params.state_bytes}")
        return await self.run(params.app_id, params.params, state, grant=grant)

    # -- leaving the circle ---------------------------------------------------------

    async def hand_back(self, *, plan: bool = False, force: bool = False) -> list[dict[str, Any]]:
        """Before this device leaves its circle, hand its running apps to the others.

        Each app moves (as ``app move`` does) to the best member that may take it by
        the placement rules; a keep-alive app that cannot move stops with a final
        checkpoint, which its failover successor (the one every member computes
        without this device, under a grant that stays valid once it is gone) holds
        before this returns, if it can be reached, and restarts once it sees this device
        revoked. Any other app blocks: nothing is stopped and AppError names each
        app that cannot move and why, unless ``force`` (then it is stopped for good).
        A move that fails at the last moment falls back the same way. With ``plan``,
        only say what would happen. Returns one row per app (:meth:`Handover.row`)."""
        handovers = [self._handover(a, r, force=force) for a, r in sorted(self._running.items())]
        if plan:
            return [h.row() for h in handovers]
        _refuse_blocked(handovers, self._home.name)
        for h in handovers:  # moves first: nothing is stopped unless every app can go
            if h.action == "move":
                await self._leave_move(h, force=force)
        _refuse_blocked(handovers, self._home.name)
        for h in handovers:
            if h.app_id not in self._running:
                continue  # moved, or it crashed meanwhile
            if h.action == "failover":
                await self._leave_failover(h)
            elif h.action == "stop":
                await self.stop_app(h.app_id)
        late = sorted(self._running)  # started here meanwhile (a crash restart, a run)
        if late and not force:
            raise AppError(f"{self._home.name} did not leave: {', '.join(late)} started here "
                           "while it was handing its apps back; run the command again")  # fmt: skip
        for app_id in late:
            await self.stop_app(app_id)
        return [h.row() for h in handovers]

    def _handover(self, app_id: str, running: Running, *, force: bool) -> Handover:
        """What leaving would do with ``app_id`` (see :meth:`hand_back`)."""
        manifest = running.manifest
        others = [c for c in self._candidates() if c.device_id != self._me]
        if running.moving:
            return Handover(app_id, "blocked", reason="it is being moved right now; try again")
        why: list[str] = []
        targets: list[Candidate] = []
        if not manifest.continuable:
            why.append("it is not continuable (its manifest says so)")
        elif not others:
            why.append("no other member is online")
        else:
            most = self._move_authority(running)
            targets = rank(manifest, others, max_level=most)
            if not targets:
                try:
                    choose(manifest, others, max_level=most)
                except NoPlacement as exc:
                    why.append(f"no member may take it ({_reasons(exc, others)})")
        successor = None
        if manifest.keep_alive:
            successor, no_successor = self._successor_without_me(app_id, running, others)
            if successor is None:
                why.append(no_successor)
        else:
            why.append("it is not keep-alive, so nothing would restart it")
        if targets:
            return Handover(app_id, "move", targets, successor)
        if successor is not None:
            return Handover(app_id, "failover", [], successor, reason=why[0])
        action = "stop" if force else "blocked"
        return Handover(app_id, action, reason="; ".join(why))

    def _move_authority(self, running: Running) -> str:
        """The highest level a move from here may take the app to: this device's level,
        or the level of the member whose grant it runs under, if higher."""
        mine = self._member_level(self._me)
        grant = self._valid_grant(running.grant, running.manifest.id, running.content_hash)
        if grant is None:
            return mine
        theirs = self._member_level(grant.by)
        return theirs if level_rank(theirs) > level_rank(mine) else mine

    def _successor_without_me(
        self, app_id: str, running: Running, others: list[Candidate]
    ) -> tuple[Candidate | None, str]:
        """The member that will restart ``app_id`` from its checkpoint once this device
        is revoked (every member computes the same), or None and why there is none."""
        grant = self._valid_grant(running.grant, app_id, running.content_hash)
        if grant is None or grant.by == self._me:
            return None, (f"only {self._home.name} vouched for its code, so no member would "
                          "restart it once it has left")  # fmt: skip
        most = self._member_level(grant.by)
        manifest = _failover_manifest(app_id, running.manifest.requires,
                                      running.manifest.state_label)  # fmt: skip
        successor = failover_successor(manifest, others, previous=self._me, max_level=most)
        if successor is None:
            return None, (f"no online member may restart it from its checkpoint (one that has "
                          f"{', '.join(manifest.requires) or 'nothing it needs'}, may hold "
                          f"{manifest.state_label} state and is at {most} or below)")  # fmt: skip
        return successor, ""

    async def _leave_move(self, h: Handover, *, force: bool) -> None:
        """Move ``h``'s app to the first target that takes it; if none does, fall back
        to its failover successor, to a stop (``force``), or block the leave."""
        errors = []
        for target in h.targets:
            if h.app_id not in self._running:
                return  # it crashed meanwhile: its keep-alive restart is here, or nothing
            try:
                await self.move(h.app_id, target.device_id)
            except AccordError as exc:
                log.warning("%s: leaving, could not move %s to %s: %s", self._home.name,
                            h.app_id, target.name, exc)  # fmt: skip
                errors.append(f"{target.name} refused: {exc}")
                continue
            h.to = target
            return
        h.reason = "; ".join(errors)
        if h.successor is not None:
            h.action = "failover"
        else:
            h.action = "stop" if force else "blocked"

    async def _leave_failover(self, h: Handover) -> None:
        """Stop ``h``'s app with a final checkpoint and wait (a while) until its
        successor holds that checkpoint, so it restarts from there."""
        running = self._running[h.app_id]
        running.moving = True  # the checkpointer leaves it alone now
        ckpt = None
        try:
            state: bytes = (await running.process.request("save"))["state"]
            ckpt = await self._checkpoint(h.app_id, running, state)
        except AccordError as exc:
            log.warning("%s: final checkpoint of %s failed (%s); it restarts from its last one",
                        self._home.name, h.app_id, exc)  # fmt: skip
        finally:
            running.moving = False
        await self._stop_local(h.app_id, checkpoint=False, forget=False)
        assert h.successor is not None
        h.synced = ckpt is not None and await self._until_held(h.successor.device_id, ckpt)

    async def _until_held(self, device: str, ckpt: Checkpoint) -> bool:
        """Wait until ``device`` holds ``ckpt`` (it syncs like any write); False if it
        does not within LEAVE_SYNC_S, or will not say."""
        deadline = self._clock.monotonic() + LEAVE_SYNC_S
        while self._clock.monotonic() < deadline:
            held: Any = None
            try:
                held = await self._rpc.call(device, "apps", "checkpoint", AppRef(ckpt.app_id),
                                            timeout=2.0)  # fmt: skip
            except PermissionDenied:
                return False
            except AccordError:
                pass  # not answering now: ask again
            if isinstance(held, dict) and (held.get("host"), held.get("at"),
                                           held.get("state_blob")) == (
                    ckpt.host, ckpt.at, ckpt.state_blob):  # fmt: skip
                return True
            await asyncio.sleep(0.1)
        return False

    # -- placement ----------------------------------------------------------------

    async def place(self, manifest: AppManifest) -> DeviceRecord:
        """The device to run an app on when the user names none (see placement rules)."""
        records = {r.device_id: r for r in self._directory.records()}
        online = [r for r in records.values() if r.online or r.device_id == self._me]
        members = [r for r in online if r.device_id == self._me or self._circle.is_member(
            r.device_id)]  # fmt: skip
        loads = await asyncio.gather(*(self._load_of(r.device_id) for r in members))
        pairs = zip(members, loads, strict=True)
        candidates = [_candidate(r, load, self._member_level(r.device_id)) for r, load in pairs]
        chosen = choose(manifest, candidates, max_level=self._member_level(self._me))
        return records[chosen.device_id]

    async def _load_of(self, device_id: str) -> float:
        try:
            info: dict[str, Any] = await self._rpc.call(
                device_id, "device", "info", None, timeout=1.0
            )
        except (DeviceUnavailable, AccordError):
            return 1.0
        return float(info.get("cpu_pct") or 0.0) / 100.0


def _reasons(exc: NoPlacement, candidates: list[Candidate]) -> str:
    """The per-device reasons of a NoPlacement, as "name: why; ..."."""
    names = {c.device_id: c.name for c in candidates}
    return "; ".join(f"{names.get(d, d[:10])}: {why}" for d, why in exc.reasons)


def _refuse_blocked(handovers: list[Handover], name: str) -> None:
    blocked = [h for h in handovers if h.action == "blocked"]
    if not blocked:
        return
    moved = [f"{h.app_id} to {h.to.name}" for h in handovers if h.to is not None]
    done = f" Moved already: {', '.join(moved)}." if moved else ""
    listed = "; ".join(f"{h.app_id}: {h.reason}" for h in blocked)
    raise AppError(
        f"{name} did not leave: apps that run here cannot move to another member "
        f"({listed}).{done} Stop them (accord app stop APP), or leave with --force to "
        "stop them."
    )


def _failover_manifest(app_id: str, requires: list[str], label: str) -> AppManifest:
    """The app as failover ranks it: only what a checkpoint says of it (so every
    member ranks alike, whatever version of the app it holds)."""
    return AppManifest(id=app_id, version="", entry="x", requires=requires,
                       state_label=label)  # type: ignore[arg-type]  # fmt: skip


def _candidate(rec: DeviceRecord, load: float, level: str) -> Candidate:
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
