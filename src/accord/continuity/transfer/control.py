"""Control methods of file send: ``send`` (a stream of progress) and ``transfers``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from accord.continuity.transfer.receiver import Receiver
from accord.continuity.transfer.sender import Sender
from accord.control.server import ControlServer
from accord.errors import ControlError
from accord.trust.members import Member


class TransferControl:
    def __init__(
        self, sender: Sender, receiver: Receiver, resolve: Callable[[str], Member]
    ) -> None:
        self._sender = sender
        self._receiver = receiver
        self._resolve = resolve

    def register(self, control: ControlServer) -> None:
        control.add_stream("send", self._send)
        control.add("transfers", self._transfers)

    async def _send(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        paths = params.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ControlError("name at least one file or folder to send")
        for p in paths:
            if not Path(p).is_absolute():
                raise ControlError(f"paths to send are absolute; {p!r} is not")
        target = self._resolve(str(params.get("device", "")))
        async for event in self._sender.send(
            target.device_id, target.name, [Path(p) for p in paths]
        ):
            yield event

    async def _transfers(self, _params: dict[str, Any]) -> dict[str, Any]:
        return self._receiver.transfers()
