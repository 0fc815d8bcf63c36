"""Leaving the circle: the apps running here move to members first, or fail over
(see :mod:`accord.apps.runtime`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from accord.apps.errors import AppError, NoPlacement
from accord.apps.messages import (
    AppRef,
    Checkpoint,
)
from accord.apps.placement import Candidate, choose, failover_successor, rank
from accord.apps.runtime_base import LEAVE_SYNC_S, Running, RuntimeBase, failover_manifest, reasons
from accord.errors import AccordError, PermissionDenied
from accord.trust.members import level_rank

log = logging.getLogger(__name__)


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


class Leaving(RuntimeBase):
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
                    why.append(f"no member may take it ({reasons(exc, others)})")
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
        manifest = failover_manifest(app_id, running.manifest.requires,
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
