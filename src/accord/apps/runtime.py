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
from pathlib import Path
from typing import Any

from accord.apps import sandbox
from accord.apps.errors import AppError
from accord.apps.failover import Failover
from accord.apps.gate import AppGate
from accord.apps.leaving import Leaving
from accord.apps.messages import (
    AppRef,
    FetchParams,
    Grant,
    InstallParams,
    MoveParams,
    RestoreParams,
    RunParams,
    SendParams,
)
from accord.apps.moving import Moving
from accord.apps.process import AbilityProcess, AppFailed
from accord.apps.runtime_base import (
    LOG_KEEP,
    MOVE_TIMEOUT_S,
    RESTART_LIMIT,
    RESTART_WINDOW_S,
    STORE,
    Running,
)
from accord.apps.transfers import SERVICE as TRANSFER_SERVICE
from accord.errors import AccordError
from accord.trust.levels import may_receive, require_may_receive

log = logging.getLogger(__name__)


class AppRuntime(Leaving, Moving, Failover):
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


__all__ = ["MOVE_TIMEOUT_S", "STORE", "AppRuntime"]
