"""Catch-ups in progress, kept in the store file until they complete: the session
per source peer, and each page as it was checked (its kept groups, merge rows and
proofs), one encoded blob per page. The final transaction reads them back in
order and moves their rows into ``rows``.

A page is kept whole, not row by row: staging costs one insert per page, and the
rows go into SQLite once, when the catch-up applies (last-writer-wins decided by
SQLite, no row read in Python).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

from accord.data.sqlite_file import SqliteFile

NO_END: Final = 2**62  # a member's writes count whenever they were made


class Session(msgspec.Struct, frozen=True):
    """A catch-up in progress from one source peer."""

    session: int
    epoch: str
    cursor: int


# origin -> (its rows count above this seq, made at or before this wall_ms)
Filter = Mapping[str, tuple[int, int]]


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

    def drop_session(self, source: str) -> None:
        """Forget the catch-up from ``source`` and the pages staged for it."""
        with self._mapped("write"):
            self._db.execute("DELETE FROM sessions WHERE source = ?", (source,))
            self._db.execute("DELETE FROM pages WHERE source = ?", (source,))

    def stage(self, source: str, page: bytes) -> None:
        """Keep one checked page of a catch-up from ``source`` (encoded) until it
        completes."""
        with self._mapped("write"):
            self._db.execute(
                "INSERT INTO pages (source, page, data) VALUES (?, coalesce("
                "(SELECT max(page) + 1 FROM pages WHERE source = ?), 0), ?)",
                (source, source, page),
            )

    def staged(self, source: str) -> Iterator[bytes]:
        """The pages staged from ``source``, in the order they came, read one at a
        time (a catch-up may be larger than memory should hold at once)."""
        with self._mapped("read"):
            for (data,) in self._db.execute(
                "SELECT data FROM pages WHERE source = ? ORDER BY page", (source,)
            ):
                yield data
