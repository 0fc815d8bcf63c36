"""What notifications put on the wire (msgpack inside sealed RPC frames); layout and
limits in docs/protocol.md, "Notifications"."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

SERVICE: Final = "notify"

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Body = Annotated[str, msgspec.Meta(max_length=2000)]
AppName = Annotated[str, msgspec.Meta(max_length=64)]
NotificationId = Annotated[str, msgspec.Meta(min_length=3, max_length=96)]


class PostParams(msgspec.Struct, frozen=True):
    """``notify.post``: show this on the callee (its origin is then the callee)."""

    title: Title
    body: Body = ""
    app: AppName = ""
    mirror: bool = True  # False when the sender posts to every device itself


class Notification(msgspec.Struct, frozen=True):
    """``notify.mirror`` params: a notification of the caller (``origin`` = caller)."""

    id: NotificationId
    origin: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    sender: Annotated[str, msgspec.Meta(max_length=64)]  # who asked the origin to post it
    title: Title
    body: Body = ""
    app: AppName = ""
    created: float = 0.0


class DismissParams(msgspec.Struct, frozen=True):
    id: NotificationId


class Posted(msgspec.Struct, frozen=True):
    id: str
