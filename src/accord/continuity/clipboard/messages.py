"""What the clipboard puts on the wire (msgpack inside sealed RPC frames); layout and
limits in docs/protocol.md, "Clipboard"."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

SERVICE: Final = "clip"
MAX_CLIP: Final = 64 * 1024 * 1024  # text, image or file
CHUNK: Final = 512 * 1024  # one clip.fetch stream item
MAX_TTL_S: Final = 86_400.0

Kind = Literal["text", "png", "jpeg", "file"]
Label = Literal["S1", "S3"]  # S3: copied with --sensitive


class ClipItem(msgspec.Struct, frozen=True):
    """The descriptor of one copy. ``id`` is ``<origin>:<counter>``, so the origin's
    copies never collide with another member's."""

    id: Annotated[str, msgspec.Meta(min_length=3, max_length=96)]
    origin: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    kind: Kind
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_CLIP)]
    created: float
    ttl_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TTL_S)]
    label: Label = "S1"
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""  # a file's name


class FetchParams(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=3, max_length=96)]


class Announced(msgspec.Struct, frozen=True):
    taken: bool
    reason: str = ""
