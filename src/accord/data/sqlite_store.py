"""SQLite persistence of one replica: rows, their dots, the version vector, batch
proofs (the tables: :mod:`accord.data.schema`; opening and transactions:
:mod:`accord.data.sqlite_file`; catch-ups in progress: :mod:`accord.data.staging`).

Writes are set-based: a batch's rows go in with one ``executemany``, each under a
fresh ``lseq`` the file hands out itself (so no row needs a read first).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import msgspec

from accord.clock import Hlc
from accord.data import gone_leaves
from accord.data.model import Op, Row
from accord.data.provenance import Proof
from accord.data.sqlite_file import IF_NEWER, UPSERT_SET, Flat, Synchronous, blob
from accord.data.staging import Session, Staging

__all__ = ["Flat", "RawRow", "Session", "StoreFile", "Synchronous", "WholeBatch", "Winner"]

log = logging.getLogger(__name__)

# What a row read for resolution holds: (wall_ms, counter, origin, is a tombstone).
Winner = tuple[int, int, str, bool]
# A whole batch of a peer's, as a catch-up page brings it: (ns, ops in order, hlc,
# origin, seq).
WholeBatch = tuple[str, Sequence[Op], Hlc, str, int]
# A stored row as the page builder reads it.
RawRow = tuple[int, str, bytes, bytes | None, int, int, str, int, bytes, bytes | None, int | None]

_UPSERT: Final = (
    "INSERT INTO rows (lseq, ns, key, value, wall_ms, counter, origin, seq, idx, dots) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, x'') " + UPSERT_SET
)
_NEW_ONLY: Final = (
    "INSERT OR IGNORE INTO rows (lseq, ns, key, value, wall_ms, counter, origin, seq, idx, dots) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, x'')"
)
_IN_CHUNK: Final = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit
_COLUMNS: Final = "ns, key, value, wall_ms, counter, origin, dots, proof, seq"

_dots_decoder: Final = msgspec.msgpack.Decoder(dict[str, int])
_proof_decoder: Final = msgspec.msgpack.Decoder(Proof)
_encoder: Final = msgspec.msgpack.Encoder()


class StoreFile(Staging):
    """One store's SQLite file: rows, version vector, batch proofs, and catch-ups in
    progress (:class:`Staging`)."""

    # -- rows ------------------------------------------------------------------

    def read_row(self, ns: str, key: str) -> tuple[int, Row] | None:
        with self._mapped("read"):
            found = self._db.execute(
                f"SELECT lseq, {_COLUMNS} FROM rows WHERE ns = ? AND key = ?",  # noqa: S608
                (ns, key.encode()),
            ).fetchone()
        return None if found is None else (found[0], _row(found[1:]))

    def winners(self, ns: str, keys: Sequence[bytes]) -> dict[bytes, Winner]:
        """The stored (hlc, origin, tombstone?) of those ``keys`` in ``ns`` that exist."""
        out: dict[bytes, Winner] = {}
        with self._mapped("read"):
            for i in range(0, len(keys), _IN_CHUNK):
                part = keys[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(part))
                for key, wall_ms, counter, origin, tomb in self._db.execute(
                    "SELECT key, wall_ms, counter, origin, value IS NULL FROM rows "  # noqa: S608
                    f"WHERE ns = ? AND key IN ({marks})",
                    (ns, *part),
                ):
                    out[key] = (wall_ms, counter, origin, bool(tomb))
        return out

    def put_flat(self, rows: Sequence[Flat], *, newer_only: bool = False) -> int:
        """Store rows with one dot each, replacing the row of the same key (which must
        have one dot too: a last-writer-wins store), each under a fresh lseq (the
        first is returned; the caller records the batch, :meth:`record_batches`). With
        ``newer_only``, a row replaces a stored one only if it wins over it (later
        (hlc, origin)): last-writer-wins resolved by SQLite, set-based, with no read."""
        first = self._lseqs(len(rows))
        params = [
            (first + i, ns, bytearray(key), blob(value), wall_ms, counter, origin, seq, idx)
            for i, (ns, key, value, wall_ms, counter, origin, seq, idx) in enumerate(rows)
        ]
        self.upsert(params, newer_only=newer_only)
        return first

    def put_batch(
        self, ns: str, keys: Sequence[bytes] | None, ops: Sequence[Op], at: Hlc, origin: str,
        seq: int, *, newer_only: bool,
    ) -> int:  # fmt: skip
        """:meth:`put_flat` of one whole batch's ops (``keys``: their keys' bytes, or
        None to encode them here), each row at its place in the batch: the path every
        write and every push takes, so its parameters are built in one pass, binding
        as :func:`blob` would without a call per row."""
        first = self._lseqs(len(ops))
        wall_ms, counter = at.wall_ms, at.counter
        if keys is None:
            params = _params(first, ns, ops, at, origin, seq)
        else:
            params = [
                (first + i, ns, bytearray(key),
                 None if (value := op.value) is None else bytearray(value),
                 wall_ms, counter, origin, seq, i)
                for i, (key, op) in enumerate(zip(keys, ops, strict=True))
            ]  # fmt: skip
        self.upsert(params, newer_only=newer_only)
        return first

    def put_batches(self, batches: Sequence[WholeBatch]) -> int:
        """:meth:`put_batch` of several whole batches of peers at once (a catch-up
        page's), in one statement, each row replacing only a row it wins over. The
        first batch's rows start at the returned lseq, each next one's right after."""
        first = self._lseqs(sum(len(ops) for _ns, ops, *_ in batches))
        params: list[tuple[Any, ...]] = []
        at = first
        for ns, ops, hlc, origin, seq in batches:
            params += _params(at, ns, ops, hlc, origin, seq)
            at += len(ops)
        self.upsert(params, newer_only=True)
        return first

    def upsert(self, params: list[tuple[Any, ...]], *, newer_only: bool) -> None:
        """The one statement one-dot rows go in by: (lseq, ns, key, value, wall_ms,
        counter, origin, seq, idx) each (the fault net cuts it short here).
        Afterwards :attr:`all_new` says whether every row went in as a new key.

        Keeping leaves (:mod:`accord.data.gone_leaves`), a store file is in one of two
        regimes. While rows come with new keys (a household filling a store), they
        go in with ``INSERT OR IGNORE``; if some key was there, the file turns to
        replacing: the trigger that keeps a replaced row's leaf is made, and the
        rest are upserted. Replacing, rows are upserted under that trigger, and
        every 16th time they are tried as new first: if all were, the trigger goes."""
        upsert = _UPSERT + (IF_NEWER if newer_only else "")
        self.all_new = False
        with self._mapped("write"):
            if not self._keeps_leaves:
                self._db.executemany(upsert, params)
                return
            self._upserts += 1
            if self._keys_new or self._upserts % 16 == 0:
                if self._db.executemany(_NEW_ONLY, params).rowcount == len(params):
                    self._keys_new = self.all_new = True
                    self._replacing(False)
                    return
                params = self._not_in(params)
                self._keys_new = False
            self._replacing(True)
            self._db.executemany(upsert, params)

    def _replacing(self, on: bool) -> None:
        """Make or drop the trigger that keeps a replaced row's leaf, if it is not so
        (not known after a rollback: one takes a trigger made inside it along)."""
        if self._trigger_on is not on:
            gone_leaves.replacing(self._db, on)
            self._trigger_on = on

    def _not_in(self, params: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Those of ``params`` (under fresh lseqs) that ``INSERT OR IGNORE`` did not put
        in ``rows``: matched by lseq and key, so a row whose lseq some other row holds
        (a bug, never a key's) goes on to the upsert, which refuses it, rather than
        being taken for in and lost."""
        lseqs = [row[0] for row in params]
        span = (min(lseqs), max(lseqs))
        found = self._db.execute(
            "SELECT lseq, ns, key FROM rows WHERE lseq >= ? AND lseq <= ?", span
        )
        went_in = {(lseq, ns, bytes(key)) for lseq, ns, key in found}
        return [row for row in params if (row[0], row[1], bytes(row[2])) not in went_in]

    def write_row(self, row: Row, old_lseq: int | None) -> int:
        """Store ``row`` under a fresh lseq (replacing the row at ``old_lseq``)."""
        lseq = self._lseqs(1)
        several = len(row.dots) > 1
        with self._mapped("write"):
            if old_lseq is not None:
                self._db.execute("DELETE FROM dots WHERE lseq = ?", (old_lseq,))
                self._db.execute("DELETE FROM rows WHERE lseq = ?", (old_lseq,))
            self._db.execute(
                f"INSERT INTO rows (lseq, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    lseq,
                    row.ns,
                    row.key.encode(),
                    row.value,
                    row.hlc.wall_ms,
                    row.hlc.counter,
                    row.origin,
                    _encoder.encode(row.dots) if several else b"",
                    None if row.proof is None else _encoder.encode(row.proof),
                    row.dots[row.origin],
                ),
            )
            if several:
                self._db.executemany(
                    "INSERT INTO dots (lseq, origin, seq) VALUES (?, ?, ?)",
                    [(lseq, origin, seq) for origin, seq in row.dots.items()],
                )
            else:
                self.record_batches([(row.origin, row.dots[row.origin], lseq, None)])
        return lseq

    def delete_row(self, lseq: int) -> None:
        with self._mapped("delete"):
            self._db.execute("DELETE FROM dots WHERE lseq = ?", (lseq,))
            self._db.execute("DELETE FROM rows WHERE lseq = ?", (lseq,))

    def scan(self, ns: str | None, prefix: str, limit: int | None) -> list[Row]:
        """Live rows (not tombstones) whose key starts with ``prefix``, in key order."""
        low = prefix.encode()
        high = _prefix_end(low)
        sql = f"SELECT {_COLUMNS} FROM rows WHERE value IS NOT NULL AND key >= ?"  # noqa: S608
        args: list[object] = [low]
        if high is not None:
            sql += " AND key < ?"
            args.append(high)
        if ns is not None:
            sql += " AND ns = ?"
            args.append(ns)
        sql += " ORDER BY ns, key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._mapped("scan"):
            return [_row(r) for r in self._db.execute(sql, args)]

    def first_wanted(self, want: Mapping[str, int]) -> int | None:
        """At most the lowest lseq of a row with a dot beyond ``want`` (origin -> seq;
        every origin we know listed): from the batches table (one-dot rows) and the
        dots index (rows with several); None if there is none."""
        best: int | None = None
        with self._mapped("catch-up query"):
            for origin, seq in want.items():
                for sql in (
                    "SELECT min(first_lseq) FROM batches WHERE origin = ? AND seq > ?",
                    "SELECT min(lseq) FROM dots WHERE origin = ? AND seq > ?",
                ):
                    (found,) = self._db.execute(sql, (origin, seq)).fetchone()
                    if found is not None and (best is None or found < best):
                        best = found
        return best

    def rows_after(self, after: int) -> Iterator[RawRow]:
        """Every row with lseq > ``after``, in lseq order, read lazily (stop early)."""
        with self._mapped("catch-up query"):
            yield from self._db.execute(
                "SELECT lseq, ns, key, value, wall_ms, counter, origin, seq, dots, proof, idx "
                "FROM rows WHERE lseq > ? ORDER BY lseq",
                (after,),
            )

    def tombstones(self, before_wall_ms: int) -> list[tuple[int, str, int]]:
        """(lseq, origin, seq) of tombstones written at or before ``before_wall_ms``
        (a last-writer-wins row: its one dot)."""
        with self._mapped("read"):
            return list(
                self._db.execute(
                    "SELECT lseq, origin, seq FROM rows WHERE value IS NULL AND wall_ms <= ?",
                    (before_wall_ms,),
                )
            )

    def count_live(self) -> int:
        # Every row, counted on the smallest index, less the tombstones (their partial
        # index): no pass over the table's values.
        with self._mapped("read"):
            (every,) = self._db.execute("SELECT count(*) FROM rows").fetchone()
        return int(every) - self.count_tombstones()

    def count_tombstones(self) -> int:
        with self._mapped("read"):
            found = self._db.execute("SELECT count(*) FROM rows WHERE value IS NULL").fetchone()
        return int(found[0])

    # -- batch proofs ------------------------------------------------------------

    def record_batches(
        self, items: Sequence[tuple[str, int, int, bytes | None]], *, whole: bool = False
    ) -> None:
        """Note batches whose rows were just written: (origin, seq, first lseq used,
        encoded Material or None). Keeps the lowest lseq, and a material once known.
        ``whole``: kept without their leaves (Material ``rows``), so a row of theirs
        that goes keeps its leaf (:mod:`accord.data.gone_leaves`); a later material
        decides it again."""
        with self._mapped("write"):
            self._db.executemany(
                "INSERT INTO batches (origin, seq, first_lseq, material, whole) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (origin, seq) DO UPDATE SET "
                "first_lseq = min(first_lseq, excluded.first_lseq), "
                "material = coalesce(excluded.material, material), "
                "whole = iif(excluded.material IS NULL, whole, excluded.whole)",
                [(*item, whole) for item in items],
            )

    def material(self, origin: str, seq: int) -> bytes | None:
        with self._mapped("read"):
            found = self._db.execute(
                "SELECT material FROM batches WHERE origin = ? AND seq = ?", (origin, seq)
            ).fetchone()
        return None if found is None or found[0] is None else bytes(found[0])

    def drop_unused_batches(self) -> int:
        """Forget batches none of whose rows is still stored (one pass over the rows),
        and the leaves of rows gone from them."""
        with self._mapped("delete"):
            cur = self._db.execute(
                "DELETE FROM batches WHERE (origin, seq) NOT IN "
                "(SELECT origin, seq FROM rows UNION SELECT origin, seq FROM dots)"
            )
            self._db.execute(
                "DELETE FROM gone WHERE (origin, seq) NOT IN (SELECT origin, seq FROM batches)"
            )
        return cur.rowcount

    def keep_gone_leaves(self) -> None:
        """From now on, keep the provenance leaf of every row of a ``whole`` batch
        (:meth:`record_batches`) as it is replaced or removed (in ``gone``; see
        :mod:`accord.data.gone_leaves`)."""
        with self._mapped("open"):
            gone_leaves.install(self._db)
        self._keeps_leaves = True

    def batch_leaves(self, origin: str, seq: int, n: int) -> dict[int, bytes]:
        """The leaves of batch (origin, seq)'s ``n`` rows, by place, as far as they are
        known: hashed from those still stored (each at the lseq it went in at, from
        the batch's first on) and kept of those gone."""
        out: dict[int, bytes] = {}
        with self._mapped("read"):
            gone = self._db.execute(
                "SELECT idx, leaf FROM gone WHERE origin = ? AND seq = ?", (origin, seq)
            )
            for idx, value in gone:
                out[int(idx)] = bytes(value)
            stored = self._db.execute(
                "SELECT r.idx, r.ns, r.key, r.value FROM batches AS b JOIN rows AS r "
                "ON r.lseq >= b.first_lseq AND r.lseq < b.first_lseq + ? "
                "WHERE b.origin = ? AND b.seq = ? AND r.origin = b.origin AND r.seq = b.seq "
                "AND r.idx IS NOT NULL AND r.dots = x''",
                (n, origin, seq),
            )
            for idx, ns, key, value in stored:
                out[int(idx)] = gone_leaves.row_leaf(ns, key, value)
        return out

    # -- version vector -----------------------------------------------------------

    def read_vv(self) -> dict[str, int]:
        with self._mapped("read"):
            return dict(self._db.execute("SELECT origin, seq FROM vv"))

    def set_vv(self, origin: str, seq: int) -> None:
        with self._mapped("write"):
            self._db.execute("INSERT OR REPLACE INTO vv (origin, seq) VALUES (?, ?)", (origin, seq))


def _params(
    first: int, ns: str, ops: Sequence[Op], at: Hlc, origin: str, seq: int
) -> list[tuple[Any, ...]]:
    """A whole batch's rows as :meth:`StoreFile.upsert` binds them, each at its place
    in the batch: the loop every write, push and caught-up batch runs per row, so
    it binds as :func:`blob` would without a call per row."""
    wall_ms, counter = at.wall_ms, at.counter
    return [
        (first + i, ns, bytearray(op.key, "utf-8"),
         None if (value := op.value) is None else bytearray(value),
         wall_ms, counter, origin, seq, i)
        for i, op in enumerate(ops)
    ]  # fmt: skip


def _row(found: tuple[Any, ...]) -> Row:
    ns, key, value, wall_ms, counter, origin, dots, proof, seq = found
    return Row(
        ns,
        key.decode(),
        value,
        Hlc(wall_ms, counter),
        origin,
        _dots_decoder.decode(dots) if dots else {origin: seq},
        None if proof is None else _proof_decoder.decode(proof),
    )


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
