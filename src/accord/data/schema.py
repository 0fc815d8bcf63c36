"""The SQLite schema of a store file, and the migration of files older Accords wrote.

Tables:
  meta     settings and soft counters: config, device, epoch, hlc, schema, session
  rows     one per key: its state, the winning / newest write's (hlc, origin, seq),
           ``idx``, the row's place in that batch (for its proof; NULL if unknown),
           ``dots`` (empty when the row has the one dot (origin, seq); else every
           origin's highest seq, MessagePack), a per-row ``proof`` only in rows
           written before schema 2, and ``lseq``: a local change number, new on
           every change and never reused, which orders and resumes catch-up pages
  dots     (lseq, origin, seq) of rows with several dots (merge stores), so "rows
           changed beyond this version vector" is an indexed query for them too
  vv       highest contiguous seq applied per origin (our own: our last commit)
  batches  per (origin, seq) of a stored row: the lowest lseq any row of that batch
           had when written (so "rows beyond this version vector" starts its scan
           there: no per-row index on origin), and what proves its rows
           (provenance.Material; NULL without provenance)
  sessions catch-ups in progress, per source peer, and their staged pages
  pages    catch-up pages received but not yet applied (checked; encoded without
           their last-writer-wins rows, which wait in ``staged``)
  staged   the last-writer-wins rows of those pages, per session number (``sid``,
           the session's ``session``), numbered ``n`` in the order they came, with
           the origin as its number in ``origins``: small rows, so staging a
           catch-up costs little more than storing it
  origins  a number per device id, for the tables that would otherwise repeat the
           26-character id in every row (today: ``staged``)
  gone     the provenance leaf of each row of a ``whole`` batch (one kept without its
           leaves, provenance.Material ``rows``: every row went in as a new key, and
           its rows are its leaves) that was replaced
           or removed since, at its (origin, seq, idx): what the batch needs to
           prove the rest of its rows. Filled by triggers each connection of a store
           with provenance makes (TEMP, as they call a function of this process:
           :mod:`accord.data.gone_leaves`)

Schema 4 added ``gone`` and ``batches.whole`` (:func:`migrate_from_3`).
"""

from __future__ import annotations

import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 4

TABLES: Final = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (
    lseq    INTEGER PRIMARY KEY,
    ns      TEXT NOT NULL,
    key     BLOB NOT NULL,
    value   BLOB,
    wall_ms INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    origin  TEXT NOT NULL,
    dots    BLOB NOT NULL,
    proof   BLOB,
    seq     INTEGER NOT NULL DEFAULT 0,
    idx     INTEGER,
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
CREATE TABLE IF NOT EXISTS batches (
    origin     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    first_lseq INTEGER NOT NULL,
    material   BLOB,
    whole      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pages (
    source TEXT NOT NULL,
    page   INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (source, page)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staged (
    sid     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    ns      TEXT NOT NULL,
    key     BLOB NOT NULL,
    value   BLOB,
    wall_ms INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    origin  INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    idx     INTEGER,
    PRIMARY KEY (sid, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS origins (
    id     INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS gone (
    origin TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    leaf   BLOB NOT NULL,
    PRIMARY KEY (origin, seq, idx)
) WITHOUT ROWID
"""


def create(db: sqlite3.Connection) -> None:
    """Create what is missing (inside the caller's transaction: executescript would
    commit it, so one statement at a time)."""
    for statement in TABLES.split(";"):
        if statement.strip():
            db.execute(statement)


def migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept every row's dots in ``dots`` and staged catch-ups row by row.
    Move single-dot rows' seq into ``rows.seq`` and drop their ``dots`` entries; a
    catch-up that was in progress starts again (its staged rows are dropped)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(rows)")}
    if "proof" not in columns:  # a file written before provenance
        db.execute("ALTER TABLE rows ADD COLUMN proof BLOB")
    if "seq" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    if "idx" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN idx INTEGER")
    db.execute(
        "UPDATE rows SET seq = coalesce((SELECT d.seq FROM dots AS d "
        "WHERE d.lseq = rows.lseq AND d.origin = rows.origin), 0)"
    )
    db.execute(
        "DELETE FROM dots WHERE lseq IN (SELECT lseq FROM dots GROUP BY lseq HAVING count(*) = 1)"
    )
    db.execute("UPDATE rows SET dots = x'' WHERE lseq NOT IN (SELECT lseq FROM dots)")
    db.execute(
        "INSERT OR IGNORE INTO batches (origin, seq, first_lseq) "
        "SELECT origin, seq, min(lseq) FROM rows GROUP BY origin, seq"
    )
    db.execute("DROP TABLE IF EXISTS staging")
    migrate_from_2(db)


def migrate_from_2(db: sqlite3.Connection) -> None:
    """Schema 2 staged rows with their source's and origin's ids spelled out: catch-ups
    in progress start again (their staged rows and pages are dropped)."""
    db.execute("DROP TABLE IF EXISTS staged_rows")
    db.execute("DELETE FROM pages")
    db.execute("DELETE FROM sessions")
    migrate_from_3(db)


def migrate_from_3(db: sqlite3.Connection) -> None:
    """Schema 4 marks the batches kept without their leaves (``batches.whole``) and
    keeps the leaves of their rows that go (``gone``, which :func:`create` made)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
    if "whole" not in columns:
        db.execute("ALTER TABLE batches ADD COLUMN whole INTEGER NOT NULL DEFAULT 0")


def is_schema_1(db: sqlite3.Connection) -> bool:
    """A file Accord wrote before schema 2 (it has rows but no ``seq`` column, or the
    old staging table)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(rows)")}
    staging = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'staging'"
    ).fetchone()
    return bool(columns) and ("seq" not in columns or staging is not None)
