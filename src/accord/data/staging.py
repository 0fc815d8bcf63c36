"""Catch-ups in progress, kept in the store file until they complete: the session
per source peer, each page's checked extras (merge rows, proofs, notes of its
groups), and the last-writer-wins rows of partial batches (whole ones go into
``rows`` as their page comes), which the final transaction moves into ``rows``
with one statement (last-writer-wins decided by SQLite, no row read in Python)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from accord.data.sqlite_file import IF_NEWER, UPSERT_SET, Flat, SqliteFile

NO_END: Final = 2**62  # a member's writes count whenever they were made


class Session(msgspec.Struct, frozen=True):
    """A catch-up in progress from one source peer."""

    session: int
    epoch: str
    cursor: int


# origin -> (its rows count above this seq, made at or before this wall_ms)
Filter = Mapping[str, tuple[int, int]]

# A staged row: (sid, n, ns, key, value, wall_ms, counter, origin number, seq, idx).
StagedRow = tuple[int, int, str, bytearray, bytearray | None, int, int, int, int, int | None]

# A staged row as its provenance leaf is hashed from: (ns, key, value, idx).
StagedLeaf = tuple[str, bytes, bytes | None, int | None]

_FILTERED: Final = (
    "FROM staged AS s JOIN temp.wanted AS w ON w.id = s.origin "
    "WHERE s.sid = (SELECT session FROM sessions WHERE source = ?) "
    "AND s.seq > w.above AND s.wall_ms <= w.until"
)

# The staged rows a catch-up takes, into ``rows``: {0} a conflict clause, {1} an upsert.
_INSERT_STAGED: Final = (
    "INSERT{0} INTO rows (lseq, ns, key, value, wall_ms, counter, origin, seq, idx, dots) "
    "SELECT ? + s.n, s.ns, s.key, s.value, s.wall_ms, s.counter, w.origin, s.seq, "
    "s.idx, x'' " + _FILTERED + " ORDER BY s.n{1}"
)

# The leaves of the stored rows of whole batches that staged rows will replace (those
# they win over; a staged row already in meets itself, and is not newer than itself):
# gone_leaves.
_KEEP_REPLACED: Final = (
    "INSERT OR IGNORE INTO gone (origin, seq, idx, leaf) "  # noqa: S608 (constant parts)
    "SELECT r.origin, r.seq, r.idx, accord_leaf(r.ns, r.key, r.value) "
    + _FILTERED.replace("WHERE", "JOIN rows AS r ON r.ns = s.ns AND r.key = s.key WHERE", 1)
    + " AND r.idx IS NOT NULL AND r.dots = x'' "
    "AND (s.wall_ms, s.counter, w.origin) > (r.wall_ms, r.counter, r.origin) "
    "AND EXISTS (SELECT 1 FROM batches AS b "
    "WHERE b.origin = r.origin AND b.seq = r.seq AND b.whole)"
)


class Staging(SqliteFile):
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

    def drop_session(self, source: str, *, rows: bool = True) -> None:
        """Forget the catch-up from ``source``; its staged rows too unless ``rows`` is
        False (a completed catch-up: :meth:`drop_leftovers` removes them later, off the
        path of the transaction that applied them)."""
        with self._mapped("write"):
            if rows:
                self._db.execute(
                    "DELETE FROM staged WHERE sid = "
                    "(SELECT session FROM sessions WHERE source = ?)",
                    (source,),
                )
            self._db.execute("DELETE FROM sessions WHERE source = ?", (source,))
            self._db.execute("DELETE FROM pages WHERE source = ?", (source,))

    def drop_leftovers(self) -> None:
        """Remove staged rows no catch-up in progress owns."""
        with self._mapped("delete"):
            self._db.execute("DELETE FROM staged WHERE sid NOT IN (SELECT session FROM sessions)")

    def origin_numbers(self, origins: Sequence[str]) -> list[int]:
        """The number of each device id in ``origins`` (new ones get one), in order.
        Inside the caller's transaction: numbers handed out in one that rolls back
        are handed out again."""
        with self._mapped("write"):
            self._db.executemany(
                "INSERT OR IGNORE INTO origins (origin) VALUES (?)", [(o,) for o in origins]
            )
            # Few rows (one per device the store ever heard of): read them all.
            found = dict(self._db.execute("SELECT origin, id FROM origins"))
        return [int(found[o]) for o in origins]

    def next_staged(self, sid: int) -> int:
        """The number (``n``) the next row staged for session ``sid`` gets."""
        with self._mapped("read"):
            (n,) = self._db.execute(
                "SELECT coalesce(max(n) + 1, 0) FROM staged WHERE sid = ?", (sid,)
            ).fetchone()
        return int(n)

    def stage(self, source: str, page: bytes, rows: Sequence[StagedRow]) -> None:
        """Keep one checked page of a catch-up from ``source`` until it completes: its
        last-writer-wins ``rows`` (numbered from :meth:`next_staged`, their origins
        from :meth:`origin_numbers`), and the rest of it (``page``, encoded)."""
        with self._mapped("write"):
            self._db.execute(
                "INSERT INTO pages (source, page, data) VALUES (?, coalesce("
                "(SELECT max(page) + 1 FROM pages WHERE source = ?), 0), ?)",
                (source, source, page),
            )
            if rows:
                self._db.executemany(
                    "INSERT INTO staged "
                    "(sid, n, ns, key, value, wall_ms, counter, origin, seq, idx) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
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

    def staged_origins(self, source: str) -> dict[str, int]:
        """Per origin, the highest seq among the rows staged from ``source``."""
        with self._mapped("read"):
            return dict(
                self._db.execute(
                    "SELECT o.origin, s.top FROM (SELECT origin, max(seq) AS top FROM staged "
                    "WHERE sid = (SELECT session FROM sessions WHERE source = ?) "
                    "GROUP BY origin) AS s JOIN origins AS o ON o.id = s.origin",
                    (source,),
                )
            )

    def _want(self, wanted: Filter) -> None:
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY, "
            "origin TEXT NOT NULL, above INTEGER NOT NULL, until INTEGER NOT NULL)"
        )
        self._db.execute("DELETE FROM temp.wanted")
        self._db.executemany(
            "INSERT INTO temp.wanted (id, origin, above, until) "
            "SELECT id, origin, ?, ? FROM origins WHERE origin = ?",
            [(above, until, origin) for origin, (above, until) in wanted.items()],
        )

    def staged_newest(self, source: str, wanted: Filter) -> tuple[int, int] | None:
        """The newest (wall_ms, counter) among the staged rows that ``wanted`` takes."""
        with self._mapped("read"):
            self._want(wanted)
            return self._db.execute(  # type: ignore[no-any-return]
                f"SELECT s.wall_ms, s.counter {_FILTERED} "
                "ORDER BY s.wall_ms DESC, s.counter DESC LIMIT 1",
                (source,),
            ).fetchone()

    def staged_rows(self, source: str, wanted: Filter) -> list[Flat]:
        """The staged rows that ``wanted`` takes, in the order they came."""
        with self._mapped("read"):
            self._want(wanted)
            return list(
                self._db.execute(
                    "SELECT s.ns, s.key, s.value, s.wall_ms, s.counter, w.origin, s.seq, "
                    f"s.idx {_FILTERED} ORDER BY s.n",
                    (source,),
                )
            )

    def staged_span(self, source: str, start: int, count: int) -> list[StagedLeaf]:
        """The ``count`` rows staged from ``source`` from number ``start`` on (one
        group's), in order: what their provenance leaves are hashed from."""
        with self._mapped("read"):
            return list(
                self._db.execute(
                    "SELECT ns, key, value, idx FROM staged "
                    "WHERE sid = (SELECT session FROM sessions WHERE source = ?) "
                    "AND n >= ? AND n < ? ORDER BY n",
                    (source, start, start + count),
                )
            )

    def apply_staged(self, source: str, wanted: Filter, *, find_batches: bool) -> int:
        """Move the staged rows that ``wanted`` takes into ``rows``, each replacing the
        stored row of its key only if it wins over it: one statement, in SQLite. The
        staged row numbered ``n`` gets lseq ``first + n``; ``first`` is returned. With
        ``find_batches``, the batches of those rows are recorded too, found with a pass
        over the staged rows (the caller records them itself when staging noted where
        each starts). Afterwards :attr:`all_new` says whether every row taken went in
        as a new key."""
        with self._mapped("write"):
            self._want(wanted)
            (last,) = self._db.execute(
                "SELECT coalesce(max(n), -1) FROM staged "
                "WHERE sid = (SELECT session FROM sessions WHERE source = ?)",
                (source,),
            ).fetchone()
            first = self._lseqs(last + 1)
            if find_batches:
                self._db.execute(
                    "INSERT INTO batches (origin, seq, first_lseq) "
                    f"SELECT w.origin, s.seq, ? + min(s.n) {_FILTERED} GROUP BY s.origin, s.seq "
                    "ON CONFLICT (origin, seq) DO UPDATE SET "
                    "first_lseq = min(first_lseq, excluded.first_lseq)",
                    (first, source),
                )
            # Rows of new keys first, as they are; then, only if some key was there
            # already, the upsert that replaces what they win over (keeping the
            # leaves of the rows replaced: gone_leaves). A row already in meets
            # itself there, and stays.
            self.all_new = False
            went_in = self._db.execute(_INSERT_STAGED.format(" OR IGNORE", ""), (first, source))
            (taken,) = self._db.execute(f"SELECT count(*) {_FILTERED}", (source,)).fetchone()
            self.all_new = went_in.rowcount == taken
            if not self.all_new:
                if self._keeps_leaves:
                    self._db.execute(_KEEP_REPLACED, (source,))
                self._db.execute(
                    _INSERT_STAGED.format("", " " + UPSERT_SET + IF_NEWER), (first, source)
                )
        return first
