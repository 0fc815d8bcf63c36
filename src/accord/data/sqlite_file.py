"""The SQLite file under a store: opening it (schema, migration), transactions, meta,
and the local change numbers (lseq) it hands out. See :mod:`accord.data.schema`.

One file per store, in WAL mode. Every change the replica makes runs in one
``transaction()`` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash at any point
leaves the file as it was before or after a whole batch or catch-up.

``synchronous`` is FULL by default: a commit that returned is on disk and survives
a power cut, not only a killed process. NORMAL (WAL still keeps every commit
atomic, and a killed process loses nothing; a power cut may lose the last commits)
is for tests and benchmarks that commit thousands of times.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final, Literal

import msgspec

from accord.data import schema
from accord.errors import StoreError

Synchronous = Literal["FULL", "NORMAL"]

# (ns, key, value, wall_ms, counter, origin, seq, idx): a row with one dot, idx its
# place in the batch that wrote it (None if unknown).
Flat = tuple[str, bytes, bytes | None, int, int, str, int, int | None]

# Store a one-dot row under a fresh lseq, replacing the row of its key.
UPSERT_SET: Final = (
    "ON CONFLICT (ns, key) DO UPDATE SET "
    "lseq = excluded.lseq, value = excluded.value, wall_ms = excluded.wall_ms, "
    "counter = excluded.counter, origin = excluded.origin, seq = excluded.seq, "
    "idx = excluded.idx, dots = x'', proof = NULL"
)
# ... only if it wins: row values compare like lww_wins (HLC, then device id: ASCII,
# so bytewise order is str order).
IF_NEWER: Final = (
    " WHERE (excluded.wall_ms, excluded.counter, excluded.origin) > "
    "(rows.wall_ms, rows.counter, rows.origin)"
)

_encoder: Final = msgspec.msgpack.Encoder()


def blob(value: bytes | None) -> bytearray | None:
    """A key or value as the statements that write rows by the thousand bind it.

    The sqlite3 module binds bytes (and None) only after a failed adapter lookup per
    parameter, which costs more than SQLite's own insert of a row; a bytearray binds
    directly, as the same BLOB."""
    return None if value is None else bytearray(value)


class SqliteFile:
    """A store's SQLite file: opening, schema, transactions, meta, local change numbers
    (``path`` None: in memory, for pure tests)."""

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
        self._at_commit: dict[str, bytes] = {}  # meta written as the transaction commits
        self._keeps_leaves = False  # see StoreFile.keep_gone_leaves
        self._keys_new = True  # the regime of StoreFile.upsert: rows of new keys only
        self._upserts = 0
        self._trigger_on: bool | None = False  # gone_leaves.replacing's; None: not known
        self.all_new = False  # did every row of the last upsert (or apply_staged) go in new?
        try:
            self._synchronous = synchronous
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
                elif version is not None and msgspec.msgpack.decode(version) == 2:
                    schema.migrate_from_2(self._db)
                    version = None
                elif version is not None and msgspec.msgpack.decode(version) == 3:
                    schema.migrate_from_3(self._db)
                    version = None
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

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[None]:
        """All or nothing: any exception inside rolls every change back.

        ``durable`` False: this commit need not survive a power cut (a catch-up's
        staged page, which is fetched again if it is lost), so it does not wait for
        the disk; it is still atomic, and the next durable commit syncs it too."""
        if durable or self._synchronous != "FULL":
            return self._transaction()
        return self._relaxed()

    @contextmanager
    def _relaxed(self) -> Iterator[None]:
        with self._mapped("begin"):  # SQLite refuses to change it inside a transaction
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                yield
        finally:
            with self._mapped("commit"):
                self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._mapped("begin"):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._at_commit.clear()
            self._load_lseq()
            self._trigger_on = None  # a trigger made or dropped inside went back
            raise
        try:
            with self._mapped("commit"):
                if self._next_lseq != self._saved_lseq:
                    self._at_commit["lseq"] = str(self._next_lseq - 1).encode()
                    self._saved_lseq = self._next_lseq
                if self._at_commit:  # one statement for them all: a batch's commit is short
                    self._db.executemany(
                        "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                        self._at_commit.items(),
                    )
                    self._at_commit.clear()
                self._db.execute("COMMIT")
        except BaseException:
            self._trigger_on = None
            raise

    def close(self) -> None:
        self._db.close()

    # -- meta ------------------------------------------------------------------

    def get_meta(self, k: str) -> bytes | None:
        with self._mapped("read"):
            row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta_at_commit(self, k: str, v: bytes) -> None:
        """:meth:`set_meta`, written with the current transaction's commit (together
        with the other meta it writes then), not now."""
        self._at_commit[k] = v

    def set_meta(self, k: str, v: bytes) -> None:
        with self._mapped("write"):
            self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))
