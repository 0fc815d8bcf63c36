"""The local control API's framing: one JSON object per line over a Unix socket.

Request:  ``{"id": 1, "method": "devices", "params": {}}``
Reply:    ``{"id": 1, "result": ...}`` or ``{"id": 1, "error": {"type": ..., "message": ...}}``
A streaming method (``watch``, ``pair_open``) sends one ``{"id": 1, "event": ...}``
line per event, and ``{"id": 1, "end": true}`` if it finishes; the client may close
the connection at any time to stop it.
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_LINE = 8 * 1024 * 1024  # a 4 MiB store value, base64, fits one line


class Request(msgspec.Struct, frozen=True):
    id: int
    method: str
    params: dict[str, Any] = {}


class ErrorBody(msgspec.Struct, frozen=True):
    type: str
    message: str


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    id: int
    result: Any = None
    error: ErrorBody | None = None
    event: Any = None
    end: bool = False
