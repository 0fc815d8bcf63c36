"""Keeping the provenance leaf of a row as it leaves a store file (the ``gone`` table).

A batch whose rows all went in as new keys is kept without its leaves
(provenance.Material ``rows``, ``batches.whole``): its rows are its leaves. To
prove the rest of such a batch later, the leaf of each of its rows that is replaced
or removed is kept as it goes:

* removed (a collected tombstone, a row deleted): a TEMP trigger on DELETE, for as
  long as the connection is open;
* replaced by a write or a push: a TEMP trigger on UPDATE, but only while the file
  is replacing rows (:meth:`accord.data.sqlite_store.StoreFile.upsert` says when).
  A trigger on UPDATE that merely exists makes every insert into the table slower
  (about 0.6 µs a row measured, even when it never fires), and while a household
  fills a store every row it stores is new: then rows go in with ``INSERT OR
  IGNORE``, and a key that was there turns the trigger on. A batch written while
  the file replaces rows keeps its leaves (as every batch did before), so a store
  whose keys are rewritten over and over keeps no leaf per replaced row;
* replaced by a catch-up: the leaves of the rows its staged rows win over, read in
  one statement before they go in (:mod:`accord.data.staging`).

(Reading the rows about to be replaced, per batch, cost more than keeping every
batch's leaves; making and dropping the trigger around each replacing statement
cost more still: every prepared statement is compiled again after a schema change.)
The triggers are TEMP because they call ``accord_leaf``, a function of this process
that another program opening the file would lack.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from accord.data.provenance import leaf

# Not INSERT OR IGNORE: inside a trigger, the conflict policy of the statement that
# fired it (an upsert's is ABORT) would override the IGNORE.
_KEEP: Final = (
    "WHEN old.idx IS NOT NULL AND old.dots = x'' AND EXISTS "
    "(SELECT 1 FROM batches AS b WHERE b.origin = old.origin AND b.seq = old.seq "
    "AND b.whole) BEGIN "
    "INSERT INTO gone (origin, seq, idx, leaf) "
    "SELECT old.origin, old.seq, old.idx, accord_leaf(old.ns, old.key, old.value) "
    "WHERE NOT EXISTS (SELECT 1 FROM gone AS g "
    "WHERE g.origin = old.origin AND g.seq = old.seq AND g.idx = old.idx); END"
)
_ON_DELETE: Final = "CREATE TEMP TRIGGER IF NOT EXISTS gone_removed AFTER DELETE ON main.rows "
_ON_UPDATE: Final = "CREATE TEMP TRIGGER IF NOT EXISTS gone_replaced AFTER UPDATE ON main.rows "


def row_leaf(ns: str, key: bytes, value: bytes | None) -> bytes:
    """A stored row's provenance leaf (its key is stored as UTF-8)."""
    return leaf(ns, key.decode(), value)


def install(db: sqlite3.Connection) -> None:
    """Keep the leaf of every row removed from now on, on this connection (and give
    it ``accord_leaf(ns, key, value)``)."""
    db.create_function("accord_leaf", 3, row_leaf, deterministic=True)
    db.execute(_ON_DELETE + _KEEP)


def replacing(db: sqlite3.Connection, on: bool) -> None:
    """Keep the leaf of every row replaced from now on (``on``), or no longer."""
    db.execute(_ON_UPDATE + _KEEP if on else "DROP TRIGGER IF EXISTS temp.gone_replaced")
