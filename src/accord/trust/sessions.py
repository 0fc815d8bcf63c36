"""Pairwise sessions a device answered, keyed so sealed pairwise frames find them."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from accord.device.identity import id_from_raw
from accord.wire.seal import Kind, StreamId

MAX_SESSIONS = 64


def session_number(offer: bytes) -> int:
    """Both sides name a session by the first 4 bytes of SHA-256 of its offer; it goes
    in the epoch field of the session's pairwise frames."""
    return int.from_bytes(hashlib.sha256(offer).digest()[:4], "big")


class SessionTable:
    """The newest MAX_SESSIONS answered sessions (older ones are simply redone)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._secrets: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def remember(self, initiator: str, number: int, secret: bytes) -> None:
        self._secrets[(initiator, number)] = secret
        self._secrets.move_to_end((initiator, number))
        while len(self._secrets) > self._limit:
            self._secrets.popitem(last=False)

    def root_for(self, sid: StreamId) -> bytes | None:
        if sid.kind != Kind.PAIRWISE:
            return None
        return self._secrets.get((id_from_raw(sid.sender), sid.epoch))

    def forget(self, device_id: str) -> None:
        for key in [k for k in self._secrets if k[0] == device_id]:
            del self._secrets[key]
