"""What data sync puts on the wire: msgspec structs, encoded as MessagePack.

Top-level messages are tagged maps (``{"t": "push", "v": 1, ...}``) that ignore
unknown fields, so a newer peer can add some; the many small inner values (ops,
batches, rows, timestamps) are arrays to keep catch-up pages compact.

:func:`decode` is the one place peer bytes become messages: any input either
decodes to a well-formed message or raises :class:`MalformedSync`.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from accord.clock import Hlc
from accord.data.limits import (
    DOT_OVERHEAD,
    MAX_BATCH_OPS,
    MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_ORIGINS,
    MAX_VALUE_BYTES,
    ROW_OVERHEAD,
    STORE_NAME,
    check_batch,
)
from accord.data.provenance import Proof
from accord.errors import MalformedSync, StoreError
from accord.wire.messages import DECODE_ERRORS, DeviceId

DATA_VERSION: Final = 1
MAX_SEQ: Final = 2**63 - 1

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_BYTES)]
Value = Annotated[bytes, msgspec.Meta(max_length=MAX_VALUE_BYTES)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
Cursor = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Namespace = Annotated[str, msgspec.Meta(pattern=r"^(|[a-z2-7]{26})$")]  # "" = shared
StoreName = Annotated[str, msgspec.Meta(pattern=STORE_NAME.pattern)]
Epoch = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{0,32}$")]
VersionVector = Annotated[dict[DeviceId, Cursor], msgspec.Meta(max_length=MAX_ORIGINS)]
Dots = Annotated[dict[DeviceId, Seq], msgspec.Meta(min_length=1, max_length=MAX_ORIGINS)]


class Op(msgspec.Struct, frozen=True, array_like=True):
    """One write of a batch: ``value`` None deletes (LWW stores only). In a merge
    store ``value`` is a state joined into the key's state."""

    key: Key
    value: Value | None = None


class Batch(msgspec.Struct, frozen=True, array_like=True):
    """One local commit: the ``seq``-th batch of ``origin``, all ops stamped ``hlc``.
    Every replica applies a batch whole or not at all."""

    origin: DeviceId
    seq: Seq
    hlc: Hlc
    ops: Annotated[tuple[Op, ...], msgspec.Meta(min_length=1, max_length=MAX_BATCH_OPS)]
    sig: bytes = b""  # the origin's signature over the batch's Merkle root (provenance)


class Row(msgspec.Struct, frozen=True, array_like=True):
    """A key's current state, as catch-up sends it.

    ``dots`` maps each origin that contributed to this state to the highest seq of
    its that did. LWW rows have exactly one dot, the winning write's, whose origin is
    ``origin``; merge rows carry the newest contribution's ``hlc`` and ``origin``.
    """

    ns: Namespace
    key: Key
    value: Value | None
    hlc: Hlc
    origin: DeviceId
    dots: Dots
    proof: Proof | None = None  # LWW rows: the origin's signature (accord.data.provenance)


class Push(msgspec.Struct, frozen=True, tag="push", tag_field="t"):
    """Live: batches of the sender's own, in seq order, sent to online members."""

    v: int
    store: StoreName
    batches: Annotated[tuple[Batch, ...], msgspec.Meta(min_length=1)]


class Pull(msgspec.Struct, frozen=True, tag="pull", tag_field="t", omit_defaults=True):
    """Ask for what the sender's version vector ``vv`` misses. ``after`` resumes a
    paged answer from the responder's cursor (valid within ``epoch``), ``session``
    ties the pages to this catch-up. Also an acknowledgement of ``vv``."""

    v: int
    store: StoreName
    vv: VersionVector
    session: Cursor
    after: Cursor = 0
    epoch: Epoch = ""


class Page(msgspec.Struct, frozen=True, tag="page", tag_field="t"):
    """One bounded part of a catch-up. ``vv`` is the responder's version vector when
    this page was built; the receiver claims it only with the last page (``done``)."""

    v: int
    store: StoreName
    session: Cursor
    epoch: Epoch
    after: Cursor
    next: Cursor
    done: bool
    vv: VersionVector
    rows: tuple[Row, ...]


class Summary(msgspec.Struct, frozen=True, tag="summary", tag_field="t"):
    """What the sender has applied: an acknowledgement (for tombstone collection)
    and an invitation to pull if it has more than the receiver."""

    v: int
    store: StoreName
    vv: VersionVector


SyncMessage = Push | Pull | Page | Summary

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(SyncMessage)


def encode(message: SyncMessage) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> SyncMessage:
    """Decode and check one sync message from a peer; any failure is MalformedSync."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedSync(f"sync message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        msg: SyncMessage = _decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise MalformedSync(f"invalid sync message: {exc}") from exc
    if msg.v != DATA_VERSION:
        raise MalformedSync(f"unsupported data protocol version {msg.v} (this node speaks 1)")
    if isinstance(msg, Push):
        for batch in msg.batches:
            check_wire_batch(batch)
    elif isinstance(msg, Page):
        for row in msg.rows:
            _check_key(row.key)
            if row.origin not in row.dots:
                raise MalformedSync(f"row {row.key!r}: origin {row.origin} is not among its dots")
    return msg


def check_wire_batch(batch: Batch) -> None:
    """The rules every batch obeys, whoever made it: keys once each, bounded size."""
    keys = set()
    for op in batch.ops:
        _check_key(op.key)
        keys.add(op.key)
    if len(keys) != len(batch.ops):
        raise MalformedSync(f"batch {batch.origin}:{batch.seq} writes a key twice")
    try:
        check_batch(len(batch.ops), batch_bytes(batch))
    except StoreError as exc:
        raise MalformedSync(f"batch {batch.origin}:{batch.seq}: {exc}") from exc


def _check_key(key: str) -> None:
    # msgspec bounds the length in characters; the limit is in UTF-8 bytes.
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise MalformedSync(f"key of more than {MAX_KEY_BYTES} UTF-8 bytes")


def op_bytes(key: str, value: bytes | None) -> int:
    return len(key.encode("utf-8", "surrogatepass")) + len(value or b"") + ROW_OVERHEAD


def batch_bytes(batch: Batch) -> int:
    return sum(op_bytes(op.key, op.value) for op in batch.ops)


def row_bytes(row: Row) -> int:
    proof = 0 if row.proof is None else 80 + len(row.proof.path)
    return op_bytes(row.key, row.value) + DOT_OVERHEAD * len(row.dots) + proof


def pushes(store: str, batches: list[Batch]) -> list[Push]:
    """Several local commits as few Push messages, each within the message limit,
    batches kept whole and in order."""
    out: list[Push] = []
    group: list[Batch] = []
    size = 0
    budget = MAX_MESSAGE_BYTES // 2  # room for encoding overhead beyond our estimate
    for batch in batches:
        n = batch_bytes(batch)
        if group and size + n > budget:
            out.append(Push(DATA_VERSION, store, tuple(group)))
            group, size = [], 0
        group.append(batch)
        size += n
    if group:
        out.append(Push(DATA_VERSION, store, tuple(group)))
    return out
