"""What file send puts on the wire (msgpack inside sealed RPC frames); the byte
layout and limits are in docs/protocol.md, "File send"."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

SERVICE: Final = "files"  # on the receiver: who may send here (accord permissions)
OUTBOX: Final = "outbox"  # on the sender: blocks, to the offer's receiver only
MAX_FILES: Final = 10_000  # files in one offer (a bigger send is several offers)
MAX_RUNS: Final = 65_536  # runs of missing blocks in one pull
# One outbox.blocks item: at most ITEM_BYTES of piece data in at most ITEM_PIECES
# pieces; with each piece's framing (<= 24 bytes) that stays under rpc MAX_ITEM.
ITEM_BYTES: Final = 4 * 1024 * 1024
ITEM_PIECES: Final = 2048

TransferId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[0-9a-f]+$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class FileEntry(msgspec.Struct, frozen=True, array_like=True):
    """One file of an offer: its relative name, size, block size and the SHA-256 of
    each block, concatenated (32 bytes each)."""

    name: str
    size: Count
    block_size: Count
    hashes: bytes


class Offer(msgspec.Struct, frozen=True):
    """``files.receive`` params: take these files, pulling from ``outbox.blocks``."""

    transfer: TransferId
    files: Annotated[list[FileEntry], msgspec.Meta(min_length=1, max_length=MAX_FILES)]


class Run(msgspec.Struct, frozen=True, array_like=True):
    """Blocks ``first`` .. ``first + count - 1`` of file ``file`` of the offer."""

    file: Count
    first: Count
    count: Annotated[int, msgspec.Meta(ge=1, le=2**32)]


class PullParams(msgspec.Struct, frozen=True):
    """``outbox.blocks`` params: send these blocks of that transfer, in order."""

    transfer: TransferId
    runs: Annotated[list[Run], msgspec.Meta(max_length=MAX_RUNS)]


class Piece(msgspec.Struct, frozen=True, array_like=True):
    """Bytes of file ``file`` at ``offset``: a whole block or a consecutive part of one."""

    file: Count
    offset: Count
    data: bytes


class PieceView(msgspec.Struct, frozen=True, array_like=True):
    """A :class:`Piece` as the receiver decodes it: ``data`` is a view into the opened
    frame (no copy), hashed and written from there."""

    file: Count
    offset: Count
    data: memoryview


class ReceiveEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item of ``files.receive``: the receiver's answer, then progress, then done."""

    kind: Literal["accepted", "progress", "done"]
    need_bytes: Count = 0  # accepted: bytes it lacks (it pulls only those)
    have_bytes: Count = 0  # accepted: bytes an earlier attempt left
    done_bytes: Count = 0  # progress: of need_bytes, written and verified
    saved: list[str] = []  # done: each file's name in the inbox, in offer order
