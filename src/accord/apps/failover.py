"""Checkpoints and failover of keep-alive apps (see :mod:`accord.apps.runtime`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, get_args

from accord.apps import authority
from accord.apps.bundle import (
    decode_bundle,
    encode_bundle,
)
from accord.apps.checkpoints import Checkpoints
from accord.apps.errors import AppError, TamperedBundle
from accord.apps.messages import (
    AppRef,
    Checkpoint,
)
from accord.apps.placement import Candidate, failover_successor
from accord.apps.runtime_base import (
    ELSEWHERE_TIMEOUT_S,
    Running,
    RuntimeBase,
    candidate,
    failover_manifest,
)
from accord.bus.directory import DirectoryEvent
from accord.errors import AccordError
from accord.trust.levels import DataLabel, may_receive

log = logging.getLogger(__name__)


class Failover(RuntimeBase):
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
            out.append(candidate(rec, load=0.0, level=self._member_level(rec.device_id)))
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
        manifest = failover_manifest(ckpt.app_id, ckpt.requires, label)
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
