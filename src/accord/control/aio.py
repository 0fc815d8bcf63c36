"""An asyncio client of the control API, for programs (apps, scripts) that use a
running node: one connection per request, like the blocking client."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from accord.control.protocol import MAX_LINE, Reply, Request
from accord.errors import ControlError, NodeNotRunning, RemoteError

_ids = itertools.count(1)
_decoder = msgspec.json.Decoder(Reply)


class AsyncControlClient:
    def __init__(self, socket_path: Path) -> None:
        self._path = socket_path

    async def _open(
        self, method: str, params: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.open_unix_connection(self._path, limit=MAX_LINE)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                home = self._path.parent.parent
                raise NodeNotRunning(
                    f"no node is running on {home}; start one with: accord up --home {home}"
                ) from exc
            raise ControlError(f"cannot reach the node at {self._path}: {exc}") from exc
        try:
            writer.write(msgspec.json.encode(Request(next(_ids), method, params)) + b"\n")
            await writer.drain()
        except OSError as exc:
            await _close(writer)
            raise ControlError(f"the node closed the connection: {exc}") from exc
        return reader, writer

    async def call(self, method: str, **params: Any) -> Any:
        reader, writer = await self._open(method, params)
        try:
            reply = await _read(reader)
            if reply is None:
                raise ControlError("the node closed the connection without replying")
            return _result(reply)
        finally:
            await _close(writer)

    async def stream(self, method: str, **params: Any) -> AsyncIterator[Any]:
        reader, writer = await self._open(method, params)
        try:
            while (reply := await _read(reader)) is not None:
                if reply.error is not None:
                    _result(reply)
                if reply.end:
                    return
                yield reply.event
            raise ControlError("the node closed the stream before its end")
        finally:
            await _close(writer)


async def _read(reader: asyncio.StreamReader) -> Reply | None:
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise ControlError(f"over-long reply from the node: {exc}") from None
    except OSError as exc:  # e.g. reset: the node was killed while we waited
        raise ControlError(f"the node closed the connection: {exc}") from exc
    if not line:
        return None
    try:
        reply: Reply = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise ControlError(f"garbled reply from the node: {exc}") from exc
    return reply


def _result(reply: Reply) -> Any:
    if reply.error is not None:
        raise RemoteError(reply.error.type, reply.error.message)
    return reply.result


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
