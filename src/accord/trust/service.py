"""The node's trust operations: pairing windows, joining, listing the circle.

Composes the sans-IO trust core (``accord.trust``) with the bus; the node exposes
these as control methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from accord.bus import keys
from accord.bus.directory import DeviceDirectory, DeviceRecord
from accord.bus.names import match_device
from accord.bus.session import Bus, Undo
from accord.clock import Clock
from accord.device.home import Home
from accord.errors import DeviceUnavailable, PairingError, TrustError
from accord.trust import members as ml
from accord.trust import pairing
from accord.trust.circle import PAIRING_MAX_FAILURES, Circle
from accord.trust.members import Member
from accord.trust.members import revoke as revoke_list
from accord.trust.pairing_host import HostWindow
from accord.trust.pake import new_pin
from accord.trust.sync import CircleSync

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 120.0


async def next_paired(
    queue: asyncio.Queue[pairing.Paired], timeout: float
) -> pairing.Paired | None:
    """The next device the window admitted, or None if none came within ``timeout``.

    A device admitted as the wait runs out is not missed: ``wait_for`` can time out
    after the item was put but before the waiting ``get`` took it (the item stays in
    the queue). The window is closed by then (a PIN admits one device), so taking
    the timeout for the end of the window reported "5 failed attempts" for a device
    that had paired (a CI run saw it)."""
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None if queue.empty() else queue.get_nowait()


PUBLISH_AFTER_S = 0.1  # after a pairing, the new member list goes to the circle this late
MAX_WINDOW_S = 3600.0


class TrustService:
    def __init__(
        self,
        home: Home,
        bus: Bus,
        circle: Circle,
        sync: CircleSync,
        directory: DeviceDirectory,
        clock: Clock,
        *,
        query_timeout: float,
        announce_pairing: Callable[[bool], None],
        hand_back: Callable[[bool, bool], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._home = home
        self._bus = bus
        self._circle = circle
        self._sync = sync
        self._directory = directory
        self._clock = clock
        self._timeout = query_timeout
        self._announce_pairing = announce_pairing
        self._hand_back = hand_back  # (plan, force): the apps runtime's hand_back
        self._paired: asyncio.Queue[pairing.Paired] = asyncio.Queue()
        self._window = HostWindow(circle, home.identity, self._on_paired)
        self._undo: Undo | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._publish: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._undo = self._bus.serve(keys.pair_key(self._home.device_id), self._serve_pair)
        if self._circle.pairing_open():  # a window that was open when the node stopped
            self._announce_pairing(True)

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._publish is not None:  # a list not yet sent: send it now, before we go
            self._publish.cancel()
            self._publish_now()
        if self._undo is not None:
            self._undo()
            self._undo = None

    async def _serve_pair(self, _key: str, payload: bytes) -> bytes:
        was_open = self._circle.pairing_open()
        reply = self._window.handle(payload)
        if was_open and not self._circle.pairing_open():
            self._announce_pairing(False)
        return reply

    def _on_paired(self, paired: pairing.Paired) -> None:
        log.info("%s: %s joined the circle", self._home.name, paired.name)
        # Every member takes the new list (verify, merge, save, tell its services): in a
        # circle of 100 that is seconds of CPU between them. The joiner first: its
        # credentials go out with this reply, and the list a moment after, so they do
        # not compete for the CPU while it installs them.
        if self._publish is None or self._publish.cancelled():
            loop = asyncio.get_running_loop()
            self._publish = loop.call_later(PUBLISH_AFTER_S, self._publish_now)
        if self._paired.qsize() < 8:  # only a waiting `pair open` reads these
            self._paired.put_nowait(paired)

    def _publish_now(self) -> None:
        self._publish = None
        self._sync.publish_members()

    # -- control methods ---------------------------------------------------

    async def pair_open(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        """Open a pairing window; yield the PIN, then how the window ended."""
        timeout = float(params.get("timeout", DEFAULT_WINDOW_S))
        if not 1 <= timeout <= MAX_WINDOW_S:
            raise PairingError(f"--timeout must be between 1 and {MAX_WINDOW_S:g} seconds")
        self._check_not_removed()
        while not self._paired.empty():
            self._paired.get_nowait()
        pin = new_pin()
        self._circle.open_pairing(pin, timeout)
        self._announce_pairing(True)
        try:
            me = self._circle.member(self._home.device_id)
            level = me.security_level if me is not None else "SL1"
            yield {"event": "open", "pin": pin, "timeout": timeout, "level": level}
            deadline = self._clock.monotonic() + timeout
            while True:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    yield {"event": "closed", "reason": "the window expired"}
                    return
                paired = await next_paired(self._paired, min(remaining, 0.25))
                if paired is None:
                    if not self._circle.pairing_open():
                        yield {"event": "closed", "reason": self._why_closed()}
                        return
                    continue
                record = self._circle.member(paired.device_id)
                yield {
                    "event": "paired",
                    "device_id": paired.device_id,
                    "name": paired.name,
                    "code": paired.code,
                    "level": record.security_level if record else None,
                    "declared_level": record.declared_level if record else None,
                }
                return
        finally:
            if self._circle.state.pairing_pin:
                self._circle.close_pairing()
            self._announce_pairing(False)

    def _why_closed(self) -> str:
        if self._circle.state.pairing_failures >= PAIRING_MAX_FAILURES:
            return f"{PAIRING_MAX_FAILURES} failed attempts"
        return "the window was closed"

    async def pair_window(self, params: dict[str, Any]) -> dict[str, Any]:
        """Open a pairing window and return its PIN at once (for scripts and the sim);
        it closes on success, after 5 failures, or when it expires."""
        timeout = float(params.get("timeout", DEFAULT_WINDOW_S))
        if not 1 <= timeout <= MAX_WINDOW_S:
            raise PairingError(f"timeout must be between 1 and {MAX_WINDOW_S:g} seconds")
        self._check_not_removed()
        pin = new_pin()
        self._circle.open_pairing(pin, timeout)
        self._announce_pairing(True)
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(timeout, self._expire, pin)
        return {"pin": pin, "timeout": timeout}

    def _expire(self, pin: str) -> None:
        if self._circle.state.pairing_pin == pin:
            self._circle.close_pairing()
            self._announce_pairing(False)

    async def pair_join(self, params: dict[str, Any]) -> dict[str, Any]:
        target = self._resolve(str(params.get("device", "")))
        pin = str(params.get("pin", ""))
        key = keys.pair_key(target.device_id)

        async def ask(payload: bytes) -> list[bytes]:
            return await self._ask_all(key, payload)

        profile = self._home.profile
        paired = await pairing.join(
            ask,
            self._circle,
            self._home.identity,
            target.device_id,
            pin,
            self._home.name,
            profile.type,
            profile.security_level,
        )
        # No publish here: the host already told every member about us.
        return {"device_id": paired.device_id, "name": paired.name, "code": paired.code}

    async def _ask_all(self, key: str, payload: bytes) -> list[bytes]:
        """Every reply to one query, unconsolidated (anyone may answer on a pairing
        key, and Zenoh's consolidation could keep a stranger's reply instead of the
        host's); at most pairing.MAX_ANSWERS are kept."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        replies: list[bytes] = []

        def on_reply(data: bytes) -> None:
            if len(replies) < pairing.MAX_ANSWERS:
                replies.append(data)

        def on_done() -> None:
            if not done.done():
                done.set_result(None)

        cancel = self._bus.query(key, self._timeout, payload, on_reply, on_done)
        try:
            await done
        except asyncio.CancelledError:
            cancel()
            raise
        return replies

    def _resolve(self, query: str) -> DeviceRecord:
        """A device among those online, named as ``accord.bus.names`` says."""
        if not query.strip():
            raise PairingError("name the device to pair with (its name, type or id)")
        online = [r for r in self._directory.records() if r.online and not r.is_self]
        found = match_device(query, online)
        if found is None:
            raise DeviceUnavailable(f"no online device matches {query!r}; see: accord devices")
        return found

    def membership(self) -> dict[str, Any]:
        """``membership``: "member" (of a circle with others), "alone" (a circle of
        one) or "revoked"; for "revoked", ``revocation`` says by whom and when."""
        state = self._circle.membership()
        proof = self._circle.removal() if state == "revoked" else None
        revocation = None
        if state == "revoked":
            by = proof.by if proof else ""
            record = next((m for m in self._circle.members.members if m.device_id == by), None)
            revocation = {
                "circle_id": self._circle.members.circle_id,
                "by": by,
                "by_name": record.name if record else "",
                "at": proof.at if proof else None,
                "message": self._circle.removed_message(),
            }
        return {"membership": state, "revocation": revocation}

    def _check_not_removed(self) -> None:
        """Refuse what would act in a circle this device was removed from."""
        if self._circle.membership() == "revoked":
            raise TrustError(self._circle.removed_message())

    async def trust_list(self, _params: dict[str, Any]) -> dict[str, Any]:
        members = self._circle.members
        online = {r.device_id for r in self._directory.records() if r.online}
        removed = self._circle.membership() == "revoked"  # then it lists no one
        listed = () if removed else members.active()
        return {
            **self.membership(),
            "circle_id": members.circle_id,
            "epoch": self._circle.state.epoch,
            "members": [
                {
                    "device_id": m.device_id,
                    "name": m.name,
                    "type": m.type,
                    "security_level": m.security_level,
                    "declared_level": m.declared_level,
                    "added_by": m.added_by,
                    "added_at": m.added_at,
                    "online": m.device_id in online,
                    "is_self": m.device_id == self._home.device_id,
                }
                for m in listed
            ],
            "revoked": list(members.revoked),
            "revoked_names": {d: self._revoked_name(d) for d in members.revoked},
        }

    def _revoked_name(self, device_id: str) -> str:
        records = self._circle.members.records(device_id)
        return records[-1].name if records else device_id[:10]

    async def trust_revoke(self, params: dict[str, Any]) -> dict[str, Any]:
        """Revoke a member everywhere: new member list, new circle key for the rest."""
        target = self.resolve_member(str(params.get("device", "")))
        if target.device_id == self._home.device_id:
            raise TrustError("to take this device out of its circle use: accord trust leave")
        self._circle.revoke(target.device_id)  # the sync also starts handing out the key
        delivered, notified = await asyncio.gather(
            self._sync.rekey_all(), self._sync.notified(target.device_id)
        )
        return {
            "revoked": target.device_id,
            "name": target.name,
            "notified": notified,  # the device confirmed it knows (it was online)
            "epoch": self._circle.state.epoch,
            "rekeyed": sorted(d for d, ok in delivered.items() if ok),
            "unreached": sorted(d for d, ok in delivered.items() if not ok),
        }

    async def trust_set_level(self, params: dict[str, Any]) -> dict[str, Any]:
        """Confirm a member at a higher level than its host could vouch for. Only a
        member at that level or higher may; the new record is signed here."""
        target = self.resolve_member(str(params.get("device", "")))
        level = str(params.get("level", "")).upper()
        me = self._circle.member(self._home.device_id)
        if me is None:
            raise TrustError("this device is not in its own circle's member list")
        record = ml.raise_level(target, self._home.identity, me.security_level, level,
                                at=self._clock.wall())  # fmt: skip
        self._circle.add_member(record)
        self._sync.publish_members()
        return {"device_id": target.device_id, "name": target.name,
                "from": target.security_level, "level": record.security_level}  # fmt: skip

    async def trust_leave(self, params: dict[str, Any]) -> dict[str, Any]:
        """Leave the circle: hand the apps running here to other members, tell the
        members, then start a circle of one. The apps go first (see
        :meth:`accord.apps.runtime.AppRuntime.hand_back`): if one cannot move, nothing
        changes and the error says which and why, unless ``force`` (it is stopped).
        With ``plan``, change nothing: say what leaving would do (the circle, the
        members staying, where each app would go)."""
        me = self._home.device_id
        if len(self._circle.members.active()) <= 1:
            raise TrustError("this device is in no circle but its own; nothing to leave")
        old = self._circle.members.circle_id
        force = bool(params.get("force"))
        if params.get("plan"):
            apps = await self._hand_back(True, force) if self._hand_back is not None else []
            staying = sorted(m.name for m in self._circle.members.active() if m.device_id != me)
            return {"plan": True, "circle_id": old, "name": self._home.name,
                    "members": staying, "apps": apps}  # fmt: skip
        apps = await self._hand_back(False, force) if self._hand_back is not None else []
        self._circle.state.members = revoke_list(
            self._circle.members, me, self._home.identity, self._clock.wall()
        )
        self._sync.publish_members()  # members verify it, revoke us and rotate their key
        self._circle.leave()
        return {"left": old, "circle_id": self._circle.members.circle_id, "apps": apps}

    def resolve_member(self, query: str) -> Member:
        """A member of the circle, named as ``accord.bus.names`` says."""
        if not query.strip():
            raise TrustError("name the device (its name, type or id; see: accord trust list)")
        if self._circle.membership() == "revoked":  # only this device itself is left
            me = [m for m in self._circle.members.members if m.device_id == self._home.device_id]
            found = match_device(query, me)
            if found is None:
                raise TrustError(self._circle.removed_message())
            return found
        found = match_device(query, self._circle.members.active())
        if found is None:
            raise TrustError(f"no member of this circle matches {query!r}; see: accord trust list")
        return found
