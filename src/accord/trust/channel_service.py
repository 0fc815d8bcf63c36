"""Pairwise channels on a running node: the one way members prove who sent a message.

Every member holds the circle key, so a frame sealed under it proves only that *a*
member sent it. Everything whose sender matters (RPC requests, replies, stream
frames, cancels and credit; data sync) travels on a pairwise channel instead
(:mod:`accord.trust.channels`): a signed ephemeral X25519 handshake per pair of
members and boot, answered on ``accord/v1/channel/<id>``, then ChaCha20-Poly1305
frames whose sender field is bound to that handshake.

Threat model of this module's one handler (``_serve_channel``): an offer may come
from anyone. Only a current member's signed offer gets an answer; a replayed offer
gets one too, but the session it makes stays *pending* (never used to send) until
the peer proves it holds it by sealing a frame on it, so replays cannot break a
working channel. Handshakes we start are single-flight per peer; the ones strangers
make us answer cost one X25519 and two signature operations each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from accord.bus import keys
from accord.bus.session import Bus, Undo
from accord.clock import Clock
from accord.device.identity import Identity, id_from_raw
from accord.errors import TrustError
from accord.trust.channels import NO_CHANNEL, Channels
from accord.trust.circle import Circle
from accord.wire.seal import HEADER

log = logging.getLogger(__name__)

__all__ = ["NO_CHANNEL", "ChannelService"]

RESHAKE_AFTER_S: Final = 1.0  # at most one unprompted handshake per peer this often


class ChannelService:
    def __init__(
        self,
        bus: Bus,
        circle: Circle,
        identity: Identity,
        clock: Clock,
        *,
        name: str,
        query_timeout: float,
    ) -> None:
        self._bus = bus
        self._circle = circle
        self._me = identity.device_id
        self._clock = clock
        self._name = name
        self._timeout = query_timeout
        self.channels = Channels(identity, circle.boot, self._public_key_of)
        self._handshakes: dict[str, asyncio.Future[bool]] = {}
        self._last_shake: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._undo: list[Undo] = []
        self._warned: set[str] = set()

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.channel_key(self._me), self._serve_channel))
        self._undo.append(self._circle.on_change(self._membership_changed))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _public_key_of(self, device_id: str) -> bytes | None:
        if device_id == self._me:
            return None
        member = self._circle.member(device_id)
        if member is None or not self._circle.is_member(device_id):
            return None
        return member.public_key

    def _warn_once(self, what: str, msg: str, *args: object) -> None:
        if what in self._warned:
            log.debug(msg, *args)
            return
        if len(self._warned) < 256:
            self._warned.add(what)
        log.warning(msg, *args)

    # -- use -----------------------------------------------------------------------

    def has(self, peer: str) -> bool:
        return self.channels.has(peer)

    async def ensure(self, peer: str) -> bool:
        """A channel to ``peer`` exists (opening one if needed); False if it cannot."""
        return self.channels.has(peer) or await self.handshake(peer)

    def seal(self, peer: str, key_expr: str, payload: bytes) -> bytes | None:
        return self.channels.seal(peer, key_expr, payload)

    def open(self, key_expr: str, frame: bytes) -> tuple[str, bytes]:
        """(sender, plaintext) of a frame a member sealed for us; SealError otherwise."""
        return self.channels.open(key_expr, frame)

    def forget(self, peer: str) -> None:
        self.channels.forget(peer)

    def stale_member(self, frame: bytes) -> bool:
        """Does ``frame`` (which did not open: no channel) name a current member as its
        sender? Only then is the "no channel" hint worth sending; strangers get
        nothing. The sender field is not authenticated, so the hint says nothing a
        stranger could not know."""
        if len(frame) < HEADER.size:
            return False
        return self._public_key_of(id_from_raw(HEADER.unpack_from(frame)[2])) is not None

    # -- handshakes ----------------------------------------------------------------

    async def handshake(self, peer: str) -> bool:
        """Open a channel to ``peer`` (one attempt in flight per peer)."""
        running = self._handshakes.get(peer)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handshakes[peer] = fut
        self._last_shake[peer] = self._clock.monotonic()
        ok = False
        try:
            initiator, offer = self.channels.initiate(peer)
            replies = await self._bus.get(keys.channel_key(peer), self._timeout, offer)
            for _, answer in replies:  # anyone may answer a query; only the peer can sign
                try:
                    self.channels.complete(peer, initiator, offer, answer)
                except TrustError as exc:
                    self._warn_once("shake:" + peer, "%s: bad channel answer for %s: %s",
                                    self._name, peer[:10], exc)  # fmt: skip
                    continue
                ok = True
                break
        except TrustError as exc:
            self._warn_once("shake:" + peer, "%s: no channel to %s: %s", self._name, peer[:10], exc)
        finally:
            del self._handshakes[peer]
            fut.set_result(ok)
        return ok

    async def _serve_channel(self, _key: str, offer: bytes) -> bytes | None:
        try:
            _peer, answer = self.channels.respond(offer)
        except TrustError as exc:
            log.debug("%s: refused channel offer: %s", self._name, exc)
            return None
        return answer

    def reshake_for(self, frame: bytes) -> None:
        """A member sealed on a channel we lack (we restarted): open a new one, which
        it will then use too. Rate-limited per peer: the sender field of a frame we
        cannot open is not authenticated."""
        if len(frame) < HEADER.size:
            return
        peer = id_from_raw(HEADER.unpack_from(frame)[2])
        if self._public_key_of(peer) is None or peer in self._handshakes:
            return
        last = self._last_shake.get(peer)
        if last is not None and self._clock.monotonic() - last < RESHAKE_AFTER_S:
            return
        task = asyncio.get_running_loop().create_task(self.handshake(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _membership_changed(self) -> None:
        for peer in self.channels.peers():
            if self._public_key_of(peer) is None:
                self.channels.forget(peer)
