"""The CLI side of the control API: a small blocking client."""

from __future__ import annotations

import contextlib
import errno
import itertools
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from accord.control.protocol import MAX_LINE, Reply, Request
from accord.errors import ControlError, NodeNotRunning, RemoteError

_ids = itertools.count(1)


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 10.0, command: str = "accord") -> None:
        """``command`` is how the user runs ``accord``, for the hints in errors."""
        self._path = socket_path
        self._timeout = timeout
        self._command = command
        self._decoder = msgspec.json.Decoder(Reply)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(str(self._path))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                home = self._path.parent.parent
                raise NodeNotRunning(
                    f"no node is running on {home}; "
                    f"start one with: {self._command} up --home {shlex.quote(str(home))}"
                ) from exc
            raise ControlError(f"cannot reach the node at {self._path}: {exc}") from exc
        return sock

    def call(self, method: str, **params: Any) -> Any:
        """Call a method on the node and return its result."""
        with contextlib.closing(self._connect()) as sock:
            self._send(sock, method, params)
            with sock.makefile("rb") as reader:  # closed too, or the socket lingers
                reply = self._read(reader)
            if reply is None:
                raise ControlError("the node closed the connection without replying")
            return self._result(reply)

    def stream(self, method: str, **params: Any) -> Iterator[Any]:
        """Yield the events of a streaming method until the caller stops."""
        with contextlib.closing(self._connect()) as sock:
            sock.settimeout(None)
            self._send(sock, method, params)
            with sock.makefile("rb") as reader:
                while (reply := self._read(reader)) is not None:
                    if reply.error is not None:
                        self._result(reply)
                    if reply.end:
                        return
                    yield reply.event

    def _send(self, sock: socket.socket, method: str, params: dict[str, Any]) -> None:
        req = Request(next(_ids), method, params)
        try:
            sock.sendall(msgspec.json.encode(req) + b"\n")
        except OSError as exc:  # the node went away between connect and send
            raise ControlError(f"the node closed the connection: {exc}") from exc

    def _read(self, reader: Any) -> Reply | None:
        try:
            line = reader.readline(MAX_LINE)
        except TimeoutError as exc:
            raise ControlError(f"the node did not answer within {self._timeout:g} s") from exc
        except OSError as exc:  # e.g. reset: the node was killed while we waited
            raise ControlError(f"the node closed the connection: {exc}") from exc
        if not line:
            return None
        try:
            reply: Reply = self._decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise ControlError(f"garbled reply from the node: {exc}") from exc
        return reply

    @staticmethod
    def _result(reply: Reply) -> Any:
        if reply.error is not None:
            raise RemoteError(reply.error.type, reply.error.message)
        return reply.result
