"""The node side of the control API: a Unix socket in the home's run folder.

Only a user who can enter the home (mode 0700) can reach the socket, so file
permissions are the access control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from accord.control.protocol import MAX_LINE, ErrorBody, Reply, Request
from accord.errors import AccordError, HomeError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
StreamHandler = Callable[[dict[str, Any]], AsyncIterator[Any]]


class ControlServer:
    def __init__(self, path: Path, label: str) -> None:
        self._path = path
        self._label = label
        self._handlers: dict[str, Handler] = {}
        self._streams: dict[str, StreamHandler] = {}
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Request)

    def add(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    def add_stream(self, method: str, handler: StreamHandler) -> None:
        self._streams[method] = handler

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # stale socket of a crashed node; the home lock is ours
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=self._path, limit=MAX_LINE
            )
        except OSError as exc:
            raise HomeError(f"cannot create control socket {self._path}: {exc.strerror}") from exc
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial  # the last request, without its newline
                except asyncio.LimitOverrunError:
                    # Read the rest of the request before answering, so the client
                    # sees this error instead of a broken pipe while it still sends.
                    await _skip_line(reader)
                    message = f"the request is over the control socket's {MAX_LINE} byte limit"
                    await self._send(writer, Reply(0, error=ErrorBody("ControlError", message)))
                    return
                if not line:
                    return
                await self._handle(line, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            req = self._decoder.decode(line)
        except msgspec.DecodeError as exc:
            await self._send(writer, Reply(0, error=ErrorBody("ControlError", str(exc))))
            return
        if req.method in self._streams:
            try:
                async for event in self._streams[req.method](req.params):
                    await self._send(writer, Reply(req.id, event=event))
            except AccordError as exc:
                await self._send(
                    writer, Reply(req.id, error=ErrorBody(type(exc).__name__, str(exc)))
                )
                return
            await self._send(writer, Reply(req.id, end=True))
            return
        handler = self._handlers.get(req.method)
        if handler is None:
            known = ", ".join(sorted([*self._handlers, *self._streams]))
            error = ErrorBody("ControlError", f"unknown method {req.method!r}; known: {known}")
            await self._send(writer, Reply(req.id, error=error))
            return
        try:
            result = await handler(req.params)
        except AccordError as exc:
            await self._send(writer, Reply(req.id, error=ErrorBody(type(exc).__name__, str(exc))))
            return
        except Exception as exc:
            log.exception("%s: control method %s failed", self._label, req.method)
            body = ErrorBody("InternalError", f"{type(exc).__name__}: {exc}")
            await self._send(writer, Reply(req.id, error=body))
            return
        await self._send(writer, Reply(req.id, result=result))

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(self._encoder.encode(reply) + b"\n")
        await writer.drain()


async def _skip_line(reader: asyncio.StreamReader) -> None:
    """Discard the rest of an over-long line (up to its newline, or the end)."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return
