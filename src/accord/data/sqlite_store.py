"""SQLite persistence of one replica: rows, their dots, version vector, staging.

One file per store, in WAL mode. Every change the replica makes runs in one
``transaction()`` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash at any point
leaves the file as it was before or after a whole batch or page.

``synchronous`` is FULL by default: a commit that returned is on disk and survives
a power cut, not only a killed process. NORMAL (WAL still keeps every commit
atomic, and a killed process loses nothing; a power cut may lose the last commits)
is for tests and benchmarks that commit thousands of times.

Tables:
  rows    one per key: its state, the winning / newest (hlc, origin), the origin's
          proof (LWW stores; see accord.data.provenance), and ``lseq``,
          a local change number that is new on every change (AUTOINCREMENT never
          reuses one), which orders and resumes catch-up pages
  dots    (lseq, origin, seq): the index that makes "rows changed since this
          version vector" an indexed query, one range per origin
  vv      highest contiguous seq applied per origin (our own: our last commit)
  staging catch-up pages received but not yet applied, per source peer
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from accord.clock import Hlc
from accord.data.model import Row, row_bytes
from accord.data.provenance import Proof
from accord.errors import StoreError

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (
    lseq    INTEGER PRIMARY KEY AUTOINCREMENT,
    ns      TEXT NOT NULL,
    key     BLOB NOT NULL,
    value   BLOB,
    wall_ms INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    origin  TEXT NOT NULL,
    dots    BLOB NOT NULL,
    proof   BLOB,
    UNIQUE (ns, key)
);
CREATE INDEX IF NOT EXISTS rows_tombstones ON rows (wall_ms) WHERE value IS NULL;
CREATE TABLE IF NOT EXISTS dots (
    lseq   INTEGER NOT NULL,
    origin TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (lseq, origin)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dots_by_origin ON dots (origin, seq, lseq);
CREATE TABLE IF NOT EXISTS vv (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    source  TEXT PRIMARY KEY,
    session INTEGER NOT NULL,
    epoch   TEXT NOT NULL,
    cursor  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (
    source  TEXT NOT NULL,
    ns      TEXT NOT NULL,
    key     BLOB NOT NULL,
    row     BLOB NOT NULL,
    PRIMARY KEY (source, ns, key)
) WITHOUT ROWID;
"""

_dots_decoder: Final = msgspec.msgpack.Decoder(dict[str, int])
_row_decoder: Final = msgspec.msgpack.Decoder(Row)
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
                # executescript would COMMIT our transaction: one statement at a time.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(rows)")}
                if "proof" not in columns:  # a file written before provenance
                    self._db.execute("ALTER TABLE rows ADD COLUMN proof BLOB")
                version = self.get_meta("schema")
                if version is None:
                    self.set_meta("schema", _encoder.encode(_SCHEMA_VERSION))
        if version is not None and msgspec.msgpack.decode(version) != _SCHEMA_VERSION:
            raise StoreError(f"{self.path} has an unknown schema version: a newer Accord wrote it")

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
            raise
        with self._mapped("commit"):
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
                "SELECT lseq, ns, key, value, wall_ms, counter, origin, dots, proof FROM rows "
                "WHERE ns = ? AND key = ?",
                (ns, key.encode()),
            ).fetchone()
        return None if found is None else (found[0], _row(found[1:]))

    def write_row(self, row: Row, old_lseq: int | None) -> int:
        """Store ``row`` under a fresh lseq (replacing the row at ``old_lseq``)."""
        with self._mapped("write"):
            if old_lseq is not None:
                self._db.execute("DELETE FROM dots WHERE lseq = ?", (old_lseq,))
                self._db.execute("DELETE FROM rows WHERE lseq = ?", (old_lseq,))
            cur = self._db.execute(
                "INSERT INTO rows (ns, key, value, wall_ms, counter, origin, dots, proof) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.ns,
                    row.key.encode(),
                    row.value,
                    row.hlc.wall_ms,
                    row.hlc.counter,
                    row.origin,
                    _encoder.encode(row.dots),
                    None if row.proof is None else _encoder.encode(row.proof),
                ),
            )
            lseq = cur.lastrowid
            assert lseq is not None
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
        sql = (
            "SELECT ns, key, value, wall_ms, counter, origin, dots, proof FROM rows "
            "WHERE value IS NOT NULL AND key >= ?"
        )
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

    def changed_rows(
        self, want: Mapping[str, int], after: int, max_bytes: int
    ) -> tuple[list[Row], int, bool]:
        """Rows with a dot beyond ``want`` (origin -> seq; every origin we know must be
        listed), lseq > ``after``, in lseq order, until ``max_bytes`` (at least one
        row). Returns (rows, cursor to resume after, done)."""
        if not want:
            return [], after, True
        values = ", ".join("(?, ?)" for _ in want)
        args: list[object] = [x for item in want.items() for x in item]
        args.append(after)
        sql = (
            f"WITH want(origin, seq) AS (VALUES {values}) "  # noqa: S608 - placeholders only
            "SELECT r.lseq, r.ns, r.key, r.value, r.wall_ms, r.counter, r.origin, r.dots, "
            "r.proof "
            "FROM rows AS r WHERE r.lseq IN (SELECT d.lseq FROM want AS w JOIN dots AS d "
            "ON d.origin = w.origin AND d.seq > w.seq) AND r.lseq > ? ORDER BY r.lseq"
        )
        rows: list[Row] = []
        size = 0
        cursor = after
        with self._mapped("catch-up query"):
            for found in self._db.execute(sql, args):
                row = _row(found[1:])
                n = row_bytes(row)
                if rows and size + n > max_bytes:
                    return rows, cursor, False
                rows.append(row)
                size += n
                cursor = found[0]
        return rows, cursor, True

    def tombstones(self, before_wall_ms: int) -> list[tuple[int, str, int]]:
        """(lseq, origin, seq) of tombstones written at or before ``before_wall_ms``."""
        with self._mapped("read"):
            return [
                (lseq, origin, seq)
                for lseq, origin, seq in self._db.execute(
                    "SELECT r.lseq, d.origin, d.seq FROM rows AS r "
                    "JOIN dots AS d ON d.lseq = r.lseq "
                    "WHERE r.value IS NULL AND r.wall_ms <= ?",
                    (before_wall_ms,),
                )
            ]

    def count_live(self) -> int:
        with self._mapped("read"):
            found = self._db.execute("SELECT count(*) FROM rows WHERE value IS NOT NULL").fetchone()
        return int(found[0])

    def count_tombstones(self) -> int:
        with self._mapped("read"):
            found = self._db.execute("SELECT count(*) FROM rows WHERE value IS NULL").fetchone()
        return int(found[0])

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
            self._db.execute("DELETE FROM staging WHERE source = ?", (source,))

    def stage(self, source: str, rows: tuple[Row, ...]) -> None:
        # A source's later version of a row supersedes its earlier one: its rows
        # only ever grow (LWW winners rise, merge states join).
        with self._mapped("write"):
            self._db.executemany(
                "INSERT OR REPLACE INTO staging (source, ns, key, row) VALUES (?, ?, ?, ?)",
                [(source, r.ns, r.key.encode(), _encoder.encode(r)) for r in rows],
            )

    def staged(self, source: str) -> list[Row]:
        with self._mapped("read"):
            return [
                _row_decoder.decode(blob)
                for (blob,) in self._db.execute(
                    "SELECT row FROM staging WHERE source = ? ORDER BY ns, key", (source,)
                )
            ]


def _row(found: tuple[Any, ...]) -> Row:
    ns, key, value, wall_ms, counter, origin, dots, proof = found
    return Row(
        ns,
        key.decode(),
        value,
        Hlc(wall_ms, counter),
        origin,
        _dots_decoder.decode(dots),
        None if proof is None else _proof_decoder.decode(proof),
    )


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
