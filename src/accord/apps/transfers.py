"""Large app data between devices is pulled, never pushed.

The sender *offers* bytes (a bundle, saved state) to one device and names the offer
in an RPC; that device pulls them with the ``appdata.fetch`` stream, so the transfer
is flow-controlled and only the device it was offered to can take it (the caller id
is authenticated: RPC travels on pairwise channels). Offers expire.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from accord.apps.errors import AppError
from accord.apps.messages import FetchParams
from accord.clock import Clock
from accord.rpc import RpcClient, RpcStream

CHUNK: Final = 512 * 1024  # one appdata.fetch stream item
SERVICE: Final = "appdata"
"""The service of the ``fetch`` stream: apart from ``apps`` so that restricting who may
manage apps on a device does not stop others from pulling what it offers them."""
TRANSFER_TTL_S: Final = 120.0


@dataclass
class Transfer:
    to: str
    bundle: bytes
    state: bytes
    expires: float


class Transfers:
    def __init__(self, rpc: RpcClient, clock: Clock) -> None:
        self._rpc = rpc
        self._clock = clock
        self._offers: dict[str, Transfer] = {}

    def offer(self, to: str, bundle: bytes, state: bytes = b"") -> str:
        """Offer ``bundle`` and ``state`` to device ``to``; returns the transfer id."""
        now = self._clock.monotonic()
        for tid in [t for t, x in self._offers.items() if x.expires < now]:
            del self._offers[tid]
        tid = secrets.token_hex(8)
        self._offers[tid] = Transfer(to, bundle, state, now + TRANSFER_TTL_S)
        return tid

    def withdraw(self, tid: str) -> None:
        self._offers.pop(tid, None)

    async def serve(self, params: FetchParams, caller: str) -> AsyncIterator[bytes]:
        """The ``appdata.fetch`` stream: an offer's part, to the device it was offered to."""
        transfer = self._offers.get(params.transfer)
        if transfer is None or transfer.to != caller:
            raise AppError("no such transfer for this device (expired, or offered to another)")
        data = transfer.bundle if params.part == "bundle" else transfer.state
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            yield bytes(view[start : start + CHUNK])

    async def fetch(self, source: str, transfer: str, part: str) -> bytes:
        """Pull a part of an offer ``source`` made to this device."""
        chunks = []
        stream: RpcStream[bytes] = self._rpc.stream(
            source, SERVICE, "fetch", FetchParams(transfer, part)
        )
        async with stream:
            async for chunk in stream:
                chunks.append(chunk)
        return b"".join(chunks)
