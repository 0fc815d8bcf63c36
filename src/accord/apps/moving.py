"""Moving a running app to another device, and placing new ones (see
:mod:`accord.apps.runtime`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from accord.apps.bundle import (
    encode_bundle,
)
from accord.apps.errors import AppError, RequirementsNotMet
from accord.apps.manifest import AppManifest
from accord.apps.messages import (
    Grant,
    MoveParams,
    RestoreParams,
)
from accord.apps.placement import choose
from accord.apps.runtime_base import MOVE_TIMEOUT_S, RuntimeBase, candidate
from accord.bus.directory import DeviceRecord
from accord.errors import AccordError, DeviceUnavailable, PermissionDenied
from accord.trust.levels import require_may_receive

log = logging.getLogger(__name__)


class Moving(RuntimeBase):
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

    # -- placement ----------------------------------------------------------------

    async def place(self, manifest: AppManifest) -> DeviceRecord:
        """The device to run an app on when the user names none (see placement rules)."""
        records = {r.device_id: r for r in self._directory.records()}
        online = [r for r in records.values() if r.online or r.device_id == self._me]
        members = [r for r in online if r.device_id == self._me or self._circle.is_member(
            r.device_id)]  # fmt: skip
        loads = await asyncio.gather(*(self._load_of(r.device_id) for r in members))
        pairs = zip(members, loads, strict=True)
        candidates = [candidate(r, load, self._member_level(r.device_id)) for r, load in pairs]
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
