"""SQLite persistence for the device directory, so first-seen survives restarts."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec

from accord.bus.directory import DeviceRecord
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
        for device_id, blob in self._db.execute("SELECT device_id, record FROM devices"):
            try:
                out.append(self._decoder.decode(blob))
            except msgspec.DecodeError:
                log.warning("dropping unreadable directory record %s", device_id)
        return out

    def save(self, record: DeviceRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO devices (device_id, record) VALUES (?, ?)",
            (record.device_id, msgspec.msgpack.encode(record)),
        )

    def close(self) -> None:
        self._db.close()
