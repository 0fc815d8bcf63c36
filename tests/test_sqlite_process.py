"""A node turns SQLite's memory statistics off before it opens anything (each
allocation SQLite makes would otherwise take a global mutex to count it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from accord.data.sqlite_process import loaded_library

# Run in a fresh interpreter: tune() must come before the first connection, and
# this test process has opened many. Prints what SQLite counted after real work.
PROBE = """
import ctypes, sqlite3, sys
from accord.data import sqlite_process
done = sqlite_process.tune() if sys.argv[1] == "tuned" else None
lib = ctypes.CDLL(sqlite_process.loaded_library())
lib.sqlite3_memory_used.restype = ctypes.c_int64
db = sqlite3.connect(sys.argv[2], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
db.executemany("INSERT INTO t VALUES (?, ?)", [(bytes([i]) * 8, bytes(100)) for i in range(200)])
assert db.execute("SELECT count(*) FROM t").fetchone() == (200,)
print(done, lib.sqlite3_memory_used())
"""


def _probe(mode: str, path: Path) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(
    loaded_library() is None, reason="this Python links SQLite statically: nothing to tune"
)
def test_tuned_sqlite_counts_no_memory_and_still_works(tmp_path: Path) -> None:
    assert _probe("tuned", tmp_path / "a.sqlite") == ("True", 0)
    done, used = _probe("plain", tmp_path / "b.sqlite")
    assert done == "None"
    assert used > 0  # the default it turns off: counted, under a global mutex


def test_the_library_is_found_in_the_maps_or_left_alone(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "55d0c0000000-55d0c0001000 r--p 00000000 fe:01 1 /usr/bin/python3.11\n"
        "7f00-7f01 r-xp 00000000 fe:01 2 /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6\n"
    )
    assert loaded_library(maps) == "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6"
    maps.write_text("55d0c0000000-55d0c0001000 r--p 00000000 fe:01 1 /usr/bin/python3.11\n\n")
    assert loaded_library(maps) is None  # statically linked: tune() leaves SQLite alone
    assert loaded_library(tmp_path / "gone") is None
