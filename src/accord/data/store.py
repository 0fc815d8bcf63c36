"""A store on this device: reads, writes, batches, and watchers of its changes.

Every write is one batch, committed in one SQLite transaction (so it is on disk
when the call returns) and numbered with this device's next seq; the batch is what
sync carries to the other devices (see :class:`accord.data.replica.Replica`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Self

import msgspec

from accord.clock import HLC_ZERO, Hlc, HybridClock
from accord.data import provenance
from accord.data.changes import Change, Entry, Listener, Watchers
from accord.data.limits import (
    DEFAULT_PAGE_BYTES,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    ROW_OVERHEAD,
    WRITER_WAIT_BATCHES,
    check_batch,
    check_value,
    key_bytes,
)
from accord.data.merge import Merge, lww_wins
from accord.data.model import (
    Batch,
    Op,
    Push,
    Row,
    op_bytes,
    pushes,
)
from accord.data.peers import Peers
from accord.data.provenance import Material, Signer
from accord.data.rules import (
    StoreConfig,
    StoreKind,
    resolve,
)
from accord.data.sqlite_store import Flat, StoreFile, Synchronous
from accord.errors import (
    ReadOnlyNamespace,
    StoreError,
    StoreMismatch,
    UnsupportedOperation,
    ValueTooLarge,
)
from accord.trust.levels import DataLabel

log = logging.getLogger(__name__)

TOMBSTONE_GRACE_S: Final = 600.0
"""Tombstones stay at least this long after their write even once every member has
acknowledged them: a device that joins later with a slow clock cannot revive a key
whose tombstone is gone (see docs/consistency.md)."""

MAX_OUTBOX: Final = 1024  # local batches awaiting take_pushes(); older ones are left to pull

_hlc_codec: Final = msgspec.msgpack.Decoder(Hlc)
_hlc_encoder: Final = msgspec.msgpack.Encoder()
_material_codec: Final = msgspec.msgpack.Encoder()
_config_codec: Final = msgspec.msgpack.Decoder(StoreConfig)


class BatchBuilder:
    """Collects puts and deletes; :meth:`Store.batch` commits them as one batch."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.committed: Batch | None = None

    def put(self, key: str, value: bytes) -> None:
        self.ops.append(Op(key, value))

    def delete(self, key: str) -> None:
        self.ops.append(Op(key, None))


class Store:
    """One device's copy of one store, without sync (see :class:`Replica`). Not
    thread-safe: call it from one thread (the node's event loop); every call is a
    short transaction."""

    def __init__(
        self,
        file: StoreFile,
        *,
        name: str,
        device_id: str,
        hlc: HybridClock,
        peers: Peers,
        kind: StoreKind = "shared",
        label: DataLabel = "S1",
        merge: Merge | None = None,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        tombstone_grace_s: float = TOMBSTONE_GRACE_S,
        signer: Signer | None = None,
        catchup_stall_ms: int = 2000,
        writer_wait_batches: int = WRITER_WAIT_BATCHES,
    ) -> None:
        """``catchup_stall_ms``: a catch-up source silent this long hands its turn on.
        ``writer_wait_batches``: a catch-up lacking this many of a writer's batches
        waits a moment for that writer as its source (see
        :meth:`accord.data.receiving.CatchingUp._writer_awaited`).
        ``signer`` (this device's identity key) turns provenance on: local batches
        are signed, and rows relayed by a member other than their origin are taken
        only with the origin's proof (see :mod:`accord.data.provenance`)."""
        self.name = name
        self._signer = signer
        self.device_id = device_id
        self.kind: StoreKind = kind
        self.label: DataLabel = label
        self.merge = merge
        self._file = file
        self._hlc = hlc
        self._peers = peers
        self._page_bytes = page_bytes
        self._stall_ms = catchup_stall_ms
        self._writer_wait_batches = writer_wait_batches
        self._grace_ms = int(tombstone_grace_s * 1000)
        self._watchers = Watchers(name)
        self._outbox: list[Batch] = []
        config = StoreConfig(kind, label, merge.name if merge else "")
        with file.transaction():
            stored = file.get_meta("config")
            owner = file.get_meta("device")
            if stored is None:
                file.set_meta("config", msgspec.msgpack.encode(config))
                file.set_meta("device", device_id.encode())
                # A fresh id for this file's lseq numbering: a cursor is only valid in it.
                file.set_meta("epoch", secrets.token_hex(8).encode())
            elif _config_codec.decode(stored) != config:
                have = _config_codec.decode(stored)
                raise StoreMismatch(
                    f"store {name!r} exists as {have.kind} {have.label} "
                    f"merge={have.merge or 'lww'}; open it with those settings"
                )
            elif owner != device_id.encode():
                raise StoreMismatch(f"store file {file.path} belongs to another device")
        self.epoch = (file.get_meta("epoch") or b"").decode()
        hlc_blob = file.get_meta("hlc")
        hlc.restore(_hlc_codec.decode(hlc_blob) if hlc_blob else HLC_ZERO)
        self._vv = file.read_vv()
        if signer is not None and merge is None:
            file.keep_gone_leaves()  # batches are kept without their leaves (Material.rows)
        self._loaded()

    def _loaded(self) -> None:
        """Called once the file is open and checked (subclasses load their state)."""

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        name: str,
        device_id: str,
        hlc: HybridClock,
        peers: Peers,
        kind: StoreKind = "shared",
        label: DataLabel = "S1",
        merge: Merge | None = None,
        synchronous: Synchronous = "FULL",
        page_bytes: int = DEFAULT_PAGE_BYTES,
        tombstone_grace_s: float = TOMBSTONE_GRACE_S,
        signer: Signer | None = None,
        catchup_stall_ms: int = 2000,
        writer_wait_batches: int = WRITER_WAIT_BATCHES,
    ) -> Self:
        """Open (or create) the store file at ``path`` (None: in memory)."""
        file = StoreFile(path, synchronous=synchronous)
        try:
            return cls(
                file,
                name=name,
                device_id=device_id,
                hlc=hlc,
                peers=peers,
                kind=kind,
                label=label,
                merge=merge,
                page_bytes=page_bytes,
                tombstone_grace_s=tombstone_grace_s,
                signer=signer,
                catchup_stall_ms=catchup_stall_ms,
                writer_wait_batches=writer_wait_batches,
            )
        except BaseException:
            file.close()
            raise

    def close(self) -> None:
        self._file.close()

    # -- reading ------------------------------------------------------------------

    @property
    def _own_ns(self) -> str:
        return self.device_id if self.kind == "per-device" else ""

    def _ns(self, device: str | None) -> str:
        if self.kind == "shared":
            if device:
                raise StoreError(f"store {self.name!r} is shared: it has no device namespaces")
            return ""
        return device or self.device_id

    def get(self, key: str, *, device: str | None = None) -> bytes | None:
        """The key's value (a merge store: its state), or None. In a per-device store
        ``device`` picks the namespace (default: this device's)."""
        key_bytes(key)
        found = self._file.read_row(self._ns(device), key)
        return None if found is None else found[1].value

    def scan(
        self, prefix: str = "", *, device: str | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Live keys starting with ``prefix``, in (device, key) order. In a per-device
        store ``device`` None means every device's namespace."""
        ns = None if self.kind == "per-device" and device is None else self._ns(device)
        rows = self._file.scan(ns, prefix, limit)
        return [Entry(r.ns, r.key, r.value) for r in rows if r.value is not None]

    def row(self, key: str, *, device: str | None = None) -> Row | None:
        """The stored row behind a key, tombstones included, with its timestamp and
        dots: for tools, tests and debugging."""
        key_bytes(key)
        found = self._file.read_row(self._ns(device), key)
        return None if found is None else found[1]

    def version_vector(self) -> dict[str, int]:
        return dict(self._vv)

    def count(self) -> int:
        """How many live keys the store holds (every namespace)."""
        return self._file.count_live()

    def tombstones(self) -> int:
        """How many deleted keys still hold a tombstone (see :meth:`collect_garbage`)."""
        return self._file.count_tombstones()

    # -- writing ------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, device: str | None = None) -> Batch:
        """Write ``value`` (a merge store: join it into the key's state). ``device``
        may only name this device: a per-device namespace is its owner's to write."""
        self._writable(device)
        batch = self.commit([Op(key, value)])
        assert batch is not None
        return batch

    def delete(self, key: str, *, device: str | None = None) -> Batch:
        """Delete ``key`` (a tombstone that wins over older writes everywhere)."""
        self._writable(device)
        batch = self.commit([Op(key, None)])
        assert batch is not None
        return batch

    def _writable(self, device: str | None) -> None:
        if device is None or device == self._own_ns:
            return
        if self.kind == "shared":
            raise StoreError(f"store {self.name!r} is shared: it has no device namespaces")
        raise ReadOnlyNamespace(
            f"{device}'s namespace in store {self.name!r} is written only by {device}"
        )

    def update(self, key: str, fn: Callable[[bytes | None], bytes]) -> Batch:
        """Write ``fn(current value)``: e.g. ``lambda s: COUNTER.add(s, me, 1)``."""
        return self.put(key, fn(self.get(key)))

    @contextmanager
    def batch(self) -> Iterator[BatchBuilder]:
        """``with replica.batch() as b: b.put(...); b.delete(...)`` commits all at the
        end of the block, atomically, as one batch (``b.committed``); nothing if it raises."""
        builder = BatchBuilder()
        yield builder
        builder.committed = self.commit(builder.ops)

    def commit(self, ops: Iterable[Op]) -> Batch | None:
        """Commit ``ops`` as one batch: on disk when this returns, pushed by the node
        (see :meth:`take_pushes`). A key written twice keeps its last write (a merge
        store: the join of both). None if ``ops`` is empty."""
        final, raws = self._merged(ops) if self.merge is not None else self._last_writes(ops)
        if not final:
            return None
        seq = self._vv.get(self.device_id, 0) + 1
        hlc = self._hlc.now()
        sig = b""
        leaves: list[bytes] | None = None
        if self._signer is not None:
            leaves = provenance.leaves(self._own_ns, final)
            sig = self._signer(
                provenance.message(
                    self.name, self.device_id, seq, hlc, len(final), provenance.root(leaves)
                )
            )
        batch = Batch(self.device_id, seq, hlc, final, sig)
        changes = self._apply_batch(batch, self._own_ns, local=True, raws=raws, leaves=leaves)
        self._outbox.append(batch)
        if len(self._outbox) > MAX_OUTBOX:
            del self._outbox[0]  # peers find the gap and pull
        self._watchers.notify("local", self.device_id, changes)
        return batch

    def _last_writes(self, ops: Iterable[Op]) -> tuple[tuple[Op, ...], list[bytes]]:
        """A last-writer-wins batch's ops, checked, a key written twice keeping its last
        write; and each key's UTF-8 bytes."""
        latest = {op.key: op for op in ops}
        final = tuple(latest.values())
        # Per row only what the common case needs; a key or value that may break a
        # rule goes through the full check, which raises the typed error.
        try:
            raws = [key.encode() for key in latest]
        except UnicodeEncodeError:
            raws = [key_bytes(key) for key in latest]
        if raws and (not all(raws) or max(map(len, raws)) > MAX_KEY_BYTES):
            raws = [key_bytes(key) for key in latest]
        size = len(final) * ROW_OVERHEAD + sum(map(len, raws))
        for op in final:
            value = op.value
            if value is not None:
                if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
                    check_value(value)
                size += len(value)
        check_batch(len(final), size)
        return final, raws

    def _merged(self, ops: Iterable[Op]) -> tuple[tuple[Op, ...], list[bytes]]:
        """A merge store's ops, checked, a key written twice keeping the join of both."""
        assert self.merge is not None
        merged: dict[str, bytes] = {}
        for op in ops:
            key_bytes(op.key)
            if op.value is None:
                raise UnsupportedOperation(
                    f"store {self.name!r} merges with {self.merge.name!r}: it has no deletes"
                )
            check_value(op.value)
            self._validate_state(op.value)
            earlier = merged.get(op.key)
            merged[op.key] = op.value if earlier is None else self._join(earlier, op.value)
        final = tuple(Op(k, v) for k, v in merged.items())
        check_batch(len(final), sum(op_bytes(op.key, op.value) for op in final))
        return final, [op.key.encode() for op in final]

    def _join(self, a: bytes, b: bytes) -> bytes:
        assert self.merge is not None
        try:
            return self.merge.join(a, b)
        except Exception as exc:  # a user's merge may raise anything
            raise StoreError(f"merge {self.merge.name!r} failed: {exc}") from exc

    def _validate_state(self, value: bytes) -> None:
        assert self.merge is not None
        try:
            self.merge.validate(value)
        except Exception as exc:
            raise StoreError(f"not a valid {self.merge.name} state: {exc}") from exc

    def take_pushes(self) -> list[Push]:
        """The local commits since the last call, as few Push messages as fit: send
        each to every online peer that :meth:`may_share` (coalescing is free)."""
        out = pushes(self.name, self._outbox)
        self._outbox = []
        return out

    # -- applying -----------------------------------------------------------------

    def _apply_batch(
        self,
        batch: Batch,
        ns: str,
        *,
        local: bool = False,
        raws: list[bytes] | None = None,
        leaves: list[bytes] | None = None,
    ) -> list[Change]:
        """Apply one whole batch in one transaction (``raws``: its keys' bytes, and
        ``leaves``: its provenance leaves, if known)."""
        return self._commit_batches([(batch, ns)], local, raws, leaves)[batch.origin]

    def _commit_batches(
        self,
        batches: list[tuple[Batch, str]],
        local: bool = False,
        raws: list[bytes] | None = None,
        leaves: list[bytes] | None = None,
    ) -> dict[str, list[Change]]:
        """Apply whole batches (of one origin or several, each origin's consecutive
        and in order) in one transaction: one sync to disk for all. The changes, per
        origin."""
        changes: dict[str, list[Change]] = {}
        last: dict[str, int] = {}
        with self._file.transaction():
            for batch, ns in batches:
                done = self._write_batch(batch, ns, local=local, raws=raws, leaves=leaves)
                changes.setdefault(batch.origin, []).extend(done)
                last[batch.origin] = batch.seq
            for origin, seq in last.items():
                self._file.set_vv(origin, seq)
            self._file.set_meta_at_commit("hlc", _hlc_encoder.encode(self._hlc.last))
        self._vv.update(last)
        return changes

    def _write_batch(
        self,
        batch: Batch,
        ns: str,
        *,
        local: bool,
        raws: list[bytes] | None,
        leaves: list[bytes] | None,
    ) -> list[Change]:
        """One batch's rows and its record (inside the caller's transaction)."""
        if self.merge is not None:
            dots = {batch.origin: batch.seq}
            rows = (Row(ns, op.key, op.value, batch.hlc, batch.origin, dots) for op in batch.ops)
            return [change for row in rows if (change := self._store_row(row, local=local))]
        changes, first, all_new = self._put_lww(batch, ns, raws, local=local)
        whole = all_new and self._signer is not None
        proof = self._material(batch, ns, whole=whole, leaves=leaves)
        self._file.record_batches([(batch.origin, batch.seq, first, proof)], whole=whole)
        return changes

    def _material(
        self, batch: Batch, ns: str, *, whole: bool, leaves: list[bytes] | None = None
    ) -> bytes | None:
        """What to keep of a whole batch just written (encoded :class:`Material`), to
        prove its rows to others: none without provenance; its signature alone if
        ``whole`` (every row went in, a new key each: its rows are its leaves,
        Material.rows, and the file keeps a leaf as its row goes); else its leaves
        (``leaves``, if known, or hashed here)."""
        if self._signer is None:
            return None
        if whole:
            return _material_codec.encode(Material(batch.sig, len(batch.ops), b"", rows=True))
        if leaves is None:
            leaves = provenance.leaves(ns, batch.ops)
        return _material_codec.encode(Material(batch.sig, len(leaves), b"".join(leaves)))

    def _put_lww(
        self, batch: Batch, ns: str, raws: list[bytes] | None, *, local: bool
    ) -> tuple[list[Change], int, bool]:
        """A last-writer-wins batch's rows, set-based, in one statement (``raws``: its
        keys' bytes, if known). A local batch wins over every stored row (its HLC is
        newer than every HLC this replica has seen); a peer's rows replace only rows
        they win over, which SQLite decides. Only when someone watches are the stored
        rows read, to report the changes. Also: did every row go in, a new key each?"""
        hlc, origin, seq = batch.hlc, batch.origin, batch.seq
        if not self._watchers.active:
            put = self._file.put_batch
            first = put(ns, raws, batch.ops, hlc, origin, seq, newer_only=not local)
            return [], first, self._file.all_new
        keys = raws if raws is not None else [op.key.encode() for op in batch.ops]
        rows: list[Flat] = [
            (ns, key, op.value, hlc.wall_ms, hlc.counter, origin, seq, i)
            for i, (op, key) in enumerate(zip(batch.ops, keys, strict=True))
        ]
        found = self._file.winners(ns, keys)
        won: list[Flat] = []
        changes: list[Change] = []
        for row, op in zip(rows, batch.ops, strict=True):
            old = found.get(row[1])
            if old is not None and not lww_wins(hlc, origin, Hlc(old[0], old[1]), old[2]):
                continue
            won.append(row)
            if op.value is not None or (old is not None and not old[3]):
                changes.append(Change(ns, op.key, op.value, origin, hlc))
        first = self._file.put_flat(won)
        return changes, first, len(won) == len(rows) and self._file.all_new

    def _store_row(self, incoming: Row, *, local: bool = False) -> Change | None:
        """Resolve one row against storage (inside a transaction)."""
        found = self._file.read_row(incoming.ns, incoming.key)
        old = None if found is None else found[1]
        new = resolve(old, incoming, self.merge)
        if new is None:
            return None
        if local and new.value is not None and len(new.value) > MAX_VALUE_BYTES:
            raise ValueTooLarge(f"the merged state of {new.key!r} would exceed {MAX_VALUE_BYTES}")
        self._file.write_row(new, None if found is None else found[0])
        old_value = None if old is None else old.value
        if new.value is None and old_value is None:
            return None  # a tombstone over nothing: no reader can tell
        if self.merge is not None and new.value == old_value:
            return None
        return Change(new.ns, new.key, new.value, new.origin, new.hlc)

    # -- watching -------------------------------------------------------------------

    def subscribe(
        self, listener: Listener, prefix: str = "", *, device: str | None = None
    ) -> Callable[[], None]:
        """Call ``listener`` after every transaction that changed keys starting with
        ``prefix`` (in ``device``'s namespace, or any), with those changes together,
        local or remote. Returns the function that unsubscribes."""
        return self._watchers.subscribe(listener, prefix, device)
