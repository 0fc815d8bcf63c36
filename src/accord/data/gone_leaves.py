"""Keeping the provenance leaf of a row as it leaves a store file (the ``gone`` table).

A batch written or pushed whole is kept without its leaves (provenance.Material
``rows``): its rows are its leaves. To prove the rest of such a batch later, the
leaf of each of its rows that is replaced or removed is kept as it goes:

* removed (a collected tombstone, a row deleted): a TEMP trigger on DELETE, for as
  long as the connection is open;
* replaced: the statements that replace rows first insert every row whose key is
  new (``INSERT OR IGNORE``); only if some key was already there do they run the
  replacing upsert, with a TEMP trigger on UPDATE that lives for that statement
  alone. A trigger on UPDATE makes every insert into the table slower (about 0.6 µs
  a row measured, even when it never fires), and most rows a node stores are new.

The triggers are TEMP because they call ``accord_leaf``, a function of this process
that another program opening the file would lack.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from accord.data.provenance import leaf

_KEEP: Final = (
    "WHEN old.idx IS NOT NULL AND old.dots = x'' BEGIN "
    "INSERT OR IGNORE INTO gone (origin, seq, idx, leaf) VALUES "
    "(old.origin, old.seq, old.idx, accord_leaf(old.ns, old.key, old.value)); END"
)
_ON_DELETE: Final = "CREATE TEMP TRIGGER IF NOT EXISTS gone_removed AFTER DELETE ON main.rows "
_ON_UPDATE: Final = "CREATE TEMP TRIGGER gone_replaced AFTER UPDATE ON main.rows "


def row_leaf(ns: str, key: bytes, value: bytes | None) -> bytes:
    """A stored row's provenance leaf (its key is stored as UTF-8)."""
    return leaf(ns, key.decode(), value)


def install(db: sqlite3.Connection) -> None:
    """Keep the leaf of every row removed from now on (and make :func:`replacing`
    work) on this connection."""
    db.create_function("accord_leaf", 3, row_leaf, deterministic=True)
    db.execute(_ON_DELETE + _KEEP)


@contextmanager
def replacing(db: sqlite3.Connection, keep: bool) -> Iterator[None]:
    """Inside: rows that are replaced keep their leaves (if ``keep``)."""
    if not keep:
        yield
        return
    db.execute(_ON_UPDATE + _KEEP)
    try:
        yield
    finally:
        db.execute("DROP TRIGGER temp.gone_replaced")
