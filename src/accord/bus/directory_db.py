"""SQLite persistence for the device directory, so first-seen survives restarts.

Only records the directory keeps (this device and its members, see
:func:`accord.bus.directory.is_kept`) are stored; saving any other record deletes
its row, and rows of strangers written by older versions are dropped on load.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec

from accord.bus.directory import DeviceRecord, is_kept
from accord.errors import HomeError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    record    BLOB NOT NULL
)
"""


class DirectoryDB:
    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise HomeError(f"cannot open {path}: {exc}") from exc
        self._decoder = msgspec.msgpack.Decoder(DeviceRecord)

    def load(self) -> list[DeviceRecord]:
        out: list[DeviceRecord] = []
        drop: list[str] = []
        for device_id, blob in self._db.execute("SELECT device_id, record FROM devices"):
            try:
                record = self._decoder.decode(blob)
            except msgspec.DecodeError:
                log.warning("dropping unreadable directory record %s", device_id)
                continue
            if is_kept(record):
                out.append(record)
            else:
                drop.append(device_id)
        if drop:
            log.info("dropping %d stored records of non-members", len(drop))
            self._db.executemany("DELETE FROM devices WHERE device_id = ?", [(d,) for d in drop])
        return out

    def save(self, record: DeviceRecord) -> None:
        """Store a kept record; for any other, delete what is stored under its id."""
        if not is_kept(record):
            self._db.execute("DELETE FROM devices WHERE device_id = ?", (record.device_id,))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO devices (device_id, record) VALUES (?, ?)",
            (record.device_id, msgspec.msgpack.encode(record)),
        )

    def ids(self) -> list[str]:
        """The ids of every stored record (for tests and diagnostics)."""
        return [d for (d,) in self._db.execute("SELECT device_id FROM devices")]

    def close(self) -> None:
        self._db.close()
