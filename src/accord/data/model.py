"""What data sync puts on the wire: msgspec structs, encoded as MessagePack.

Top-level messages are tagged maps (``{"t": "push", "v": 2, ...}``) that ignore
unknown fields, so a newer peer can add some; the many small inner values (ops,
batches, groups, timestamps) are arrays to keep catch-up pages compact. A page
names each device once, in its ``ids``; its rows refer to them by index, and the
rows one batch wrote travel together under that batch's origin, seq and time.

:func:`decode` is the one place peer bytes become messages: any input either
decodes to a well-formed message or raises :class:`MalformedSync`.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from accord.clock import Hlc
from accord.data.limits import (
    DOT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_OPS,
    MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_ORIGINS,
    MAX_VALUE_BYTES,
    ROW_OVERHEAD,
    STORE_NAME,
    check_batch,
)
from accord.data.provenance import GroupProof, Proof
from accord.errors import MalformedSync, StoreError
from accord.wire.messages import DECODE_ERRORS, DeviceId

DATA_VERSION: Final = 2
MAX_AHEAD: Final = 8  # pages a responder may send on one pull beyond the first
PULL_AHEAD: Final = 8  # what this node asks for: the responder builds while we apply
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
    """A key's current state, as a replica stores it (not on the wire: pages carry
    :class:`Group` and :class:`MergeRow`).

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


Index = Annotated[int, msgspec.Meta(ge=0, lt=MAX_ORIGINS)]


class Group(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """Rows of a last-writer-wins store that one batch wrote and that still win: the
    batch's ``origin`` (an index into the page's ``ids``), ``seq`` and ``hlc``, and
    each row's key and value. The namespace is the store's: "" in a shared store,
    the origin in a per-device store. ``proof`` lets a receiver check rows relayed by
    a member that is not their origin (accord.data.provenance)."""

    origin: Index
    seq: Seq
    hlc: Hlc
    items: Annotated[tuple[Op, ...], msgspec.Meta(min_length=1, max_length=MAX_BATCH_OPS)]
    proof: GroupProof | None = None


class MergeRow(msgspec.Struct, frozen=True, array_like=True):
    """A merge store's row: its state joins several origins' writes. ``ns`` is 0 for
    the shared namespace, else 1 + an index into ``ids``; ``origin`` and each dot's
    origin are indices into ``ids``."""

    ns: Index
    key: Key
    value: Value
    hlc: Hlc
    origin: Index
    dots: Annotated[
        tuple[tuple[Index, Seq], ...], msgspec.Meta(min_length=1, max_length=MAX_ORIGINS)
    ]


class Push(msgspec.Struct, frozen=True, tag="push", tag_field="t"):
    """Live: batches of the sender's own, in seq order, sent to online members."""

    v: int
    store: StoreName
    batches: Annotated[tuple[Batch, ...], msgspec.Meta(min_length=1)]


class Pull(msgspec.Struct, frozen=True, tag="pull", tag_field="t", omit_defaults=True):
    """Ask for what the sender's version vector ``vv`` misses. ``after`` resumes a
    paged answer from the responder's cursor (valid within ``epoch``), ``session``
    ties the pages to this catch-up. Also an acknowledgement of ``vv``. ``ahead``: the
    responder may send that many more pages after the first without waiting for
    another pull (each but the last marked ``more``), so it builds the next page
    while the receiver stores this one."""

    v: int
    store: StoreName
    vv: VersionVector
    session: Cursor
    after: Cursor = 0
    epoch: Epoch = ""
    ahead: Annotated[int, msgspec.Meta(ge=0, le=MAX_AHEAD)] = 0


class Page(msgspec.Struct, frozen=True, tag="page", tag_field="t"):
    """One bounded part of a catch-up. ``vv`` is the responder's version vector when
    this page was built; the receiver claims it only with the last page (``done``).
    ``ids`` is the page's dictionary of device ids; ``groups`` carries a
    last-writer-wins store's rows, ``rows`` a merge store's."""

    v: int
    store: StoreName
    session: Cursor
    epoch: Epoch
    after: Cursor
    next: Cursor
    done: bool
    vv: VersionVector
    ids: Annotated[tuple[DeviceId, ...], msgspec.Meta(max_length=MAX_ORIGINS)] = ()
    groups: tuple[Group, ...] = ()
    rows: tuple[MergeRow, ...] = ()
    more: bool = False  # the next page follows without a pull (see Pull.ahead)


class Summary(msgspec.Struct, frozen=True, tag="summary", tag_field="t", omit_defaults=True):
    """What the sender has applied: an acknowledgement (for tombstone collection)
    and an invitation to pull if it has more than the receiver. With ``ask``, also a
    question: a receiver that has what the sender lacks answers with its own summary
    (which asks nothing), so the sender pulls from it."""

    v: int
    store: StoreName
    vv: VersionVector
    ask: bool = False


SyncMessage = Push | Pull | Page | Summary

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(SyncMessage)


def encode(message: SyncMessage) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> SyncMessage:
    """Decode one sync message from a peer (its version and shape; the replica that
    takes it checks the rest); any failure is MalformedSync."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedSync(f"sync message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        msg: SyncMessage = _decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise MalformedSync(f"invalid sync message: {exc}") from exc
    if msg.v != DATA_VERSION:
        raise MalformedSync(
            f"unsupported data protocol version {msg.v} (this node speaks {DATA_VERSION})"
        )
    # Pushes and pages are checked where a replica takes them (rules.check_batch with
    # the sender; check_page): every one reaches a replica that way, so a second
    # check here would only double a per-row cost.
    return msg


def check_page(page: Page) -> None:
    """Indices within the page's dictionary, keys within their byte limit, a group's
    keys once each (one batch), a merge row's origin among its dots."""
    count = len(page.ids)
    for group in page.groups:
        if group.origin >= count:
            raise MalformedSync(f"group names device #{group.origin} of {count}")
        keys = {op.key for op in group.items}
        if len(keys) != len(group.items):
            raise MalformedSync(f"group {group.seq} holds a key twice")
        if keys and max(map(len, keys)) * 4 > MAX_KEY_BYTES:  # see _check_key
            for key in keys:
                _check_key(key)
    for row in page.rows:
        _check_key(row.key)
        if row.ns > count or row.origin >= count or any(o >= count for o, _ in row.dots):
            raise MalformedSync(f"row {row.key!r} names a device beyond the page's {count}")
        if all(o != row.origin for o, _ in row.dots):
            raise MalformedSync(f"row {row.key!r}: its origin is not among its dots")
        if len({o for o, _ in row.dots}) != len(row.dots):
            raise MalformedSync(f"row {row.key!r} names an origin twice in its dots")


def check_wire_batch(batch: Batch) -> None:
    """The rules every batch obeys, whoever made it: keys once each, bounded size."""
    ops = batch.ops
    if not ops:
        raise MalformedSync(f"batch {batch.origin}:{batch.seq} has no operations")
    if len({op.key for op in ops}) != len(ops):
        raise MalformedSync(f"batch {batch.origin}:{batch.seq} writes a key twice")
    # Key lengths in characters bound their UTF-8 bytes (at most 4 each): encode only
    # when the bound alone does not settle a limit.
    chars = [len(op.key) for op in ops]
    values = sum(len(op.value) for op in ops if op.value is not None)
    if max(chars) * 4 > MAX_KEY_BYTES:
        for op in ops:
            _check_key(op.key)
    upper = 4 * sum(chars) + values + ROW_OVERHEAD * len(ops)
    size = upper if upper <= MAX_BATCH_BYTES else batch_bytes(batch)
    try:
        check_batch(len(ops), size)
    except StoreError as exc:
        raise MalformedSync(f"batch {batch.origin}:{batch.seq}: {exc}") from exc


def _check_key(key: str) -> None:
    # msgspec bounds the length in characters; the limit is in UTF-8 bytes (at most
    # 4 per character, so a short key needs no encoding to check).
    if len(key) * 4 > MAX_KEY_BYTES and len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
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
