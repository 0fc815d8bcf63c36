"""The client as a circle member: channels with the node, sealed queries (details,
RPC), and the device side it must show (presence, announcement, channel answers,
revocation notices)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from conformance.crypto import Channel, Identity
from conformance.link import Answer, Link
from conformance.messages import (
    NOTICE_PREFIX,
    ProtocolViolation,
    answer_offer,
    channel_number,
    finish_offer,
    make_announcement,
    make_offer,
    new_call_id,
    pack,
    unpack,
)

NAME = "conformance client"
TYPE = "x-accord-conformance"


@dataclass
class OfferOutcome:
    """What the peer answered to our OFFER."""

    channel: Channel | None = None
    notice: bytes | None = None
    replies: int = 0
    error: str = ""


@dataclass
class CallOutcome:
    """Replies to one sealed query: authentic ones opened, "no channel" counted."""

    opened: list[Any] = field(default_factory=list)
    no_channel: int = 0
    other: int = 0
    seconds: float = 0.0

    @property
    def silent(self) -> bool:
        return not self.opened and not self.no_channel and not self.other


class Member:
    """The client after pairing: its identity, the node and what it knows of it."""

    def __init__(self, link: Link, me: Identity, host: str, host_key: bytes) -> None:
        self.link, self.me, self.host, self.host_key = link, me, host, host_key
        self.keys: dict[str, bytes] = {host: host_key, me.device_id: me.public_key}
        self.channel: Channel | None = None
        self.answered: dict[int, Channel] = {}  # channels the node opened to us
        self.revoked: set[str] = set()  # ids the member list holds as revoked now
        self.last_offer = b""  # the OFFER of our newest channel (to replay it)
        self.notices: list[bytes] = []
        self.notice_seen = threading.Event()
        self.seq = 0

    # -- the device side ------------------------------------------------------------

    def show_up(self) -> None:
        """Announce ourselves as a device: queryable first, then the token."""
        me = self.me.device_id
        self.link.serve(f"accord/v1/announce/{me}", lambda _k, _p: self._announcement())
        self.link.serve(f"accord/v1/channel/{me}", self._on_channel_query)
        self.link.token(f"accord/v1/presence/{me}")

    def _announcement(self) -> bytes:
        self.seq += 1
        return make_announcement(self.me, NAME, TYPE, self.seq)

    def _on_channel_query(self, _key: str, payload: bytes) -> bytes | None:
        if payload.startswith(NOTICE_PREFIX):
            self.notices.append(payload)
            self.notice_seen.set()
            return b"ok"
        return self._answer_offer(payload)

    def _answer_offer(self, offer: bytes) -> bytes | None:
        """Answer a member's OFFER addressed to us (we hold the node's key only)."""
        answered = answer_offer(self.me, offer, self.keys)
        if answered is None:
            return None
        peer, answer, secret = answered
        number = channel_number(offer)
        self.answered[number] = Channel(peer, secret, number, sender=self.me.raw_id)
        return answer

    # -- channels ---------------------------------------------------------------------

    def offer(self, *, claimed_id: str | None = None, timeout: float = 3.0) -> OfferOutcome:
        """OFFER a channel to the node on accord/v1/channel/<host>."""
        offer = make_offer(self.me, self.host, claimed_id=claimed_id)
        answer = self.link.get(f"accord/v1/channel/{self.host}", offer.data, timeout=timeout)
        out = OfferOutcome(replies=len(answer.replies))
        for r in answer.replies:
            if r.payload.startswith(NOTICE_PREFIX):
                out.notice = r.payload
                continue
            try:
                secret = finish_offer(offer, r.payload, self.host_key)
            except ProtocolViolation as exc:
                out.error = str(exc)
                continue
            out.channel = Channel(self.host, secret, offer.number, sender=self.me.raw_id)
            out.channel.stream = 1
            self.last_offer = offer.data
            return out
        return out

    def open_channel(self) -> Channel:
        out = self.offer()
        if out.channel is None:
            raise ProtocolViolation(
                f"no channel: {out.error or 'no ANSWER'} ({out.replies} replies"
                f"{', a revocation NOTICE' if out.notice else ''})"
            )
        self.channel = out.channel
        return out.channel

    # -- sealed queries ---------------------------------------------------------------

    def sealed_query(
        self, key: str, frame: bytes, *, timeout: float = 3.0, limit: int = 8
    ) -> CallOutcome:
        assert self.channel is not None
        answer = self.link.get(key, frame, timeout=timeout, limit=limit)
        return self.sort(key, answer)

    def sort(self, key: str, answer: Answer) -> CallOutcome:
        assert self.channel is not None
        out = CallOutcome(seconds=answer.seconds)
        for r in answer.replies:
            if not r.payload:
                out.no_channel += 1
                continue
            plain = self.channel.open_from_peer(key, r.payload)
            if plain is None:
                out.other += 1
                continue
            try:
                out.opened.append(unpack(plain))
            except ProtocolViolation:
                out.other += 1
        return out

    def rpc_key(self, target: str) -> str:
        service, method = target.split(".", 1)
        return f"accord/v1/rpc/{self.host}/{service}/{method}"

    def request(self, params: Any, timeout_ms: int, window: int = 0) -> bytes:
        body: dict[str, Any] = {
            "call_id": new_call_id(),
            "params": params,
            "timeout_ms": timeout_ms,
        }
        if window:
            body["window"] = window
        return pack(body)

    def call(self, target: str, params: Any = None, timeout: float = 3.0) -> CallOutcome:
        assert self.channel is not None
        key = self.rpc_key(target)
        frame = self.channel.seal(key, self.request(params, int(timeout * 1000)))
        return self.sealed_query(key, frame, timeout=timeout + 1)

    def publish_sealed(self, key: str, value: Any) -> None:
        assert self.channel is not None
        self.link.put(key, self.channel.seal(key, pack(value)))


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
