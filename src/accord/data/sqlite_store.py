"""SQLite persistence of one replica: rows, their dots, version vector, batch proofs,
catch-up staging (the tables: :mod:`accord.data.schema`).

One file per store, in WAL mode. Every change the replica makes runs in one
``transaction()`` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash at any point
leaves the file as it was before or after a whole batch or catch-up.

``synchronous`` is FULL by default: a commit that returned is on disk and survives
a power cut, not only a killed process. NORMAL (WAL still keeps every commit
atomic, and a killed process loses nothing; a power cut may lose the last commits)
is for tests and benchmarks that commit thousands of times.

Writes are set-based: a batch's rows go in with one ``executemany``, each under a
fresh ``lseq`` this file hands out itself (so no row needs a read first).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from accord.clock import Hlc
from accord.data import schema
from accord.data.model import Row
from accord.data.provenance import Proof
from accord.errors import StoreError

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]

# (ns, key, value, wall_ms, counter, origin, seq, idx): a row with one dot, idx its
# place in the batch that wrote it (None if unknown).
Flat = tuple[str, bytes, bytes | None, int, int, str, int, int | None]
# What a row read for resolution holds: (wall_ms, counter, origin, is a tombstone).
Winner = tuple[int, int, str, bool]
# A stored row as the page builder reads it.
RawRow = tuple[int, str, bytes, bytes | None, int, int, str, int, bytes, bytes | None, int | None]

_UPSERT: Final = (
    "INSERT INTO rows (lseq, ns, key, value, wall_ms, counter, origin, seq, idx, dots) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, x'') ON CONFLICT (ns, key) DO UPDATE SET "
    "lseq = excluded.lseq, value = excluded.value, wall_ms = excluded.wall_ms, "
    "counter = excluded.counter, origin = excluded.origin, seq = excluded.seq, "
    "idx = excluded.idx, dots = x'', proof = NULL"
)
# Row values compare like lww_wins: HLC, then device id (ASCII: bytewise = str order).
_IF_NEWER: Final = (
    " WHERE (excluded.wall_ms, excluded.counter, excluded.origin) > "
    "(rows.wall_ms, rows.counter, rows.origin)"
)
_IN_CHUNK: Final = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit
_COLUMNS: Final = "ns, key, value, wall_ms, counter, origin, dots, proof, seq"

_dots_decoder: Final = msgspec.msgpack.Decoder(dict[str, int])
_proof_decoder: Final = msgspec.msgpack.Decoder(Proof)
_encoder: Final = msgspec.msgpack.Encoder()


class Session(msgspec.Struct, frozen=True):
    """A catch-up in progress from one source peer."""

    session: int
    epoch: str
    cursor: int


class StoreFile:
    """One store's SQLite file (``path`` None: in memory, for pure tests)."""

    def __init__(self, path: Path | None, *, synchronous: Synchronous = "FULL") -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(
                # One caller at a time (the replica is not thread-safe), but that caller
                # may be a worker thread: the node may run a FULL-sync commit off its loop.
                ":memory:" if path is None else path,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store file {path}: {exc}") from exc
        self._next_lseq = self._saved_lseq = 1
        try:
            self._setup(synchronous)
        except BaseException:
            self._db.close()
            raise

    def _setup(self, synchronous: Synchronous) -> None:
        with self._mapped("open"):
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            with self.transaction():
                old = schema.is_schema_1(self._db)
                schema.create(self._db)
                version = self.get_meta("schema")
                if old and (version is None or msgspec.msgpack.decode(version) == 1):
                    schema.migrate_from_1(self._db)
                    version = None
                self._db.execute(schema.INDEXES)
                if version is None:
                    self.set_meta("schema", _encoder.encode(schema.SCHEMA_VERSION))
        if version is not None and msgspec.msgpack.decode(version) != schema.SCHEMA_VERSION:
            raise StoreError(f"{self.path} has an unknown schema version: a newer Accord wrote it")
        self._load_lseq()

    def _load_lseq(self) -> None:
        """The next lseq: beyond every one handed out, even of rows since deleted (a
        peer's cursor may point past them). Files of schema 1 counted in sqlite_sequence."""
        last = [int(self._db.execute("SELECT coalesce(max(lseq), 0) FROM rows").fetchone()[0])]
        kept = self._db.execute("SELECT v FROM meta WHERE k = 'lseq'").fetchone()
        if kept is not None:
            last.append(int(bytes(kept[0])))
        if self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone():
            found = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'")
            last += [int(seq) for (seq,) in found]
        self._next_lseq = self._saved_lseq = max(last) + 1

    def _lseqs(self, count: int) -> int:
        first = self._next_lseq
        self._next_lseq += count
        return first

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"store file {self.path}: {what} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: any exception inside rolls every change back."""
        with self._mapped("begin"):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._load_lseq()
            raise
        with self._mapped("commit"):
            if self._next_lseq != self._saved_lseq:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (k, v) VALUES ('lseq', ?)",
                    (str(self._next_lseq - 1).encode(),),
                )
                self._saved_lseq = self._next_lseq
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- meta ------------------------------------------------------------------

    def get_meta(self, k: str) -> bytes | None:
        with self._mapped("read"):
            row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, k: str, v: bytes) -> None:
        with self._mapped("write"):
            self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

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

    def put_flat(self, rows: Sequence[Flat], *, newer_only: bool = False) -> None:
        """Store rows with one dot each, replacing the row of the same key (which must
        have one dot too: a last-writer-wins store), each under a fresh lseq. With
        ``newer_only``, a row replaces a stored one only if it wins over it (later
        (hlc, origin)): last-writer-wins resolved by SQLite, set-based, with no read."""
        first = self._lseqs(len(rows))
        sql = _UPSERT + (_IF_NEWER if newer_only else "")
        with self._mapped("write"):
            self._db.executemany(sql, [(first + i, *row) for i, row in enumerate(rows)])

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
        """The lowest lseq of a row with a dot beyond ``want`` (origin -> seq; every
        origin we know listed), by the origin indexes; None if there is none."""
        best: int | None = None
        with self._mapped("catch-up query"):
            for origin, seq in want.items():
                for sql in (
                    "SELECT min(lseq) FROM rows WHERE origin = ? AND seq > ?",
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
        with self._mapped("read"):
            found = self._db.execute("SELECT count(*) FROM rows WHERE value IS NOT NULL").fetchone()
        return int(found[0])

    def count_tombstones(self) -> int:
        with self._mapped("read"):
            found = self._db.execute("SELECT count(*) FROM rows WHERE value IS NULL").fetchone()
        return int(found[0])

    # -- batch proofs ------------------------------------------------------------

    def put_materials(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        with self._mapped("write"):
            self._db.executemany(
                "INSERT OR REPLACE INTO batches (origin, seq, material) VALUES (?, ?, ?)", items
            )

    def material(self, origin: str, seq: int) -> bytes | None:
        with self._mapped("read"):
            found = self._db.execute(
                "SELECT material FROM batches WHERE origin = ? AND seq = ?", (origin, seq)
            ).fetchone()
        return None if found is None else bytes(found[0])

    def drop_unused_materials(self) -> int:
        """Forget the proofs of batches none of whose rows is still stored."""
        with self._mapped("delete"):
            cur = self._db.execute(
                "DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM rows AS r "
                "WHERE r.origin = batches.origin AND r.seq = batches.seq)"
            )
        return cur.rowcount

    # -- version vector -----------------------------------------------------------

    def read_vv(self) -> dict[str, int]:
        with self._mapped("read"):
            return dict(self._db.execute("SELECT origin, seq FROM vv"))

    def set_vv(self, origin: str, seq: int) -> None:
        with self._mapped("write"):
            self._db.execute("INSERT OR REPLACE INTO vv (origin, seq) VALUES (?, ?)", (origin, seq))

    # -- catch-up staging -------------------------------------------------------

    def sessions(self) -> dict[str, Session]:
        with self._mapped("read"):
            return {
                source: Session(session, epoch, cursor)
                for source, session, epoch, cursor in self._db.execute(
                    "SELECT source, session, epoch, cursor FROM sessions"
                )
            }

    def set_session(self, source: str, session: Session) -> None:
        with self._mapped("write"):
            self._db.execute(
                "INSERT OR REPLACE INTO sessions (source, session, epoch, cursor) "
                "VALUES (?, ?, ?, ?)",
                (source, session.session, session.epoch, session.cursor),
            )

    def drop_session(self, source: str) -> None:
        with self._mapped("write"):
            self._db.execute("DELETE FROM sessions WHERE source = ?", (source,))
            self._db.execute("DELETE FROM pages WHERE source = ?", (source,))

    def stage(self, source: str, page: bytes) -> None:
        """Keep one checked page of a catch-up from ``source`` until it completes."""
        with self._mapped("write"):
            self._db.execute(
                "INSERT INTO pages (source, page, data) VALUES (?, coalesce("
                "(SELECT max(page) + 1 FROM pages WHERE source = ?), 0), ?)",
                (source, source, page),
            )

    def staged(self, source: str) -> list[bytes]:
        """The pages staged from ``source``, in the order they came."""
        with self._mapped("read"):
            return [
                bytes(data)
                for (data,) in self._db.execute(
                    "SELECT data FROM pages WHERE source = ? ORDER BY page", (source,)
                )
            ]


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
