"""The sender's block-hash cache: a file sent again (a resume, a second receiver) is
not read and hashed again before its offer (blocking I/O: call from a thread).

Syncthing's rule: an entry is keyed by the file's device, inode, size, mtime and
ctime (nanoseconds), and any change of one of them is a miss. Git's "racy clean"
rule on top: a file changed less than ``racy_s`` before it was hashed is not cached,
because a write in the same timestamp tick would leave every field unchanged. An
entry is one file under ``HOME/data/hash-cache/`` (folder 0700, files 0600), named
by device and inode, carrying its own SHA-256 so a torn or damaged entry is a miss.

What a wrong entry can do, by design: nothing worse than a failed send. The
receiver hashes every block it writes and every block it kept from an earlier
attempt against the offer, so a stale or tampered entry makes blocks fail their
check (the send stops with one line; the sender then drops the entries of that
send, so sending again hashes afresh). It can never make a half-right file look
complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

log = logging.getLogger(__name__)

VERSION: Final = 1
MIN_BYTES: Final = 8 * 1024 * 1024  # smaller files hash in < ~5 ms: not worth an entry
MAX_ENTRIES: Final = 1024  # entries kept; the least recently stored go first
RACY_S: Final = 2.0
STALE_TMP_NS: Final = 600 * 10**9  # a temp entry this old was left by a killed writer
DIGEST: Final = 32


class Stat(msgspec.Struct, frozen=True, array_like=True):
    """What an entry is keyed by: any change is a miss."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stat:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Entry(msgspec.Struct, frozen=True, array_like=True):
    version: int
    stat: Stat
    block_size: int
    hashes: bytes


class HashCache:
    """``lookup`` a file's block hashes by its stat, ``store`` them after hashing."""

    def __init__(
        self,
        folder: Path,
        *,
        wall_ns: Callable[[], int] = time.time_ns,
        racy_s: float = RACY_S,
        min_bytes: int = MIN_BYTES,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.folder = folder
        self._wall_ns = wall_ns
        self._racy_ns = int(racy_s * 1e9)
        self.min_bytes = min_bytes
        self._max_entries = max_entries

    def now_ns(self) -> int:
        """Take this before hashing starts; pass it to :meth:`store`."""
        return self._wall_ns()

    def _path(self, dev: int, ino: int) -> Path:
        name = hashlib.sha256(f"{dev}:{ino}".encode()).hexdigest()[:32]
        return self.folder / name

    def lookup(self, stat: Stat, block_size: int) -> bytes | None:
        """The block hashes stored for exactly this ``stat`` and block size, or None."""
        if stat.size < self.min_bytes:
            return None
        try:
            raw = self._path(stat.dev, stat.ino).read_bytes()
        except OSError:
            return None
        body = raw[DIGEST:]
        if len(raw) <= DIGEST or hashlib.sha256(body).digest() != raw[:DIGEST]:
            return None  # torn or damaged: hash the file again
        try:
            entry = msgspec.msgpack.decode(body, type=Entry)
        except msgspec.DecodeError:
            return None
        if entry.version != VERSION or entry.stat != stat or entry.block_size != block_size:
            return None
        return entry.hashes

    def store(
        self, before: Stat, after: Stat, hashed_at_ns: int, block_size: int, hashes: bytes
    ) -> bool:
        """Keep ``hashes`` if the file did not change while it was hashed (``before``
        and ``after`` are its stat around the hashing) and had not changed for
        ``racy_s`` before ``hashed_at_ns``. Returns whether it was kept. A failure
        to write is logged and costs only the next send's hashing."""
        if before != after or before.size < self.min_bytes:
            return False
        if hashed_at_ns - max(before.mtime_ns, before.ctime_ns) < self._racy_ns:
            return False
        body = msgspec.msgpack.encode(Entry(VERSION, before, block_size, hashes))
        path = self._path(before.dev, before.ino)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")  # sends run at once
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(body).digest() + body)
            os.replace(tmp, path)  # no fsync: a lost or torn entry is only a miss
        except OSError as exc:
            log.warning("cannot keep block hashes in %s: %s", self.folder, exc.strerror or exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        self._trim()
        return True

    def forget(self, path: Path) -> None:
        """Drop the entry of the file at ``path`` (its hashes proved wrong)."""
        with contextlib.suppress(OSError):
            st = os.stat(path)
            self._path(st.st_dev, st.st_ino).unlink()

    def _trim(self) -> None:
        try:
            found = list(os.scandir(self.folder))
        except OSError:
            return
        entries = [e for e in found if not e.name.endswith(".tmp")]
        stale = self._wall_ns() - STALE_TMP_NS
        for left in found:  # a temp file a killed node left behind
            if left.name.endswith(".tmp") and _stored_at(left) < stale:
                with contextlib.suppress(OSError):
                    os.unlink(left.path)
        if len(entries) <= self._max_entries:
            return
        entries.sort(key=_stored_at)
        for old in entries[: len(entries) - self._max_entries]:
            with contextlib.suppress(OSError):
                os.unlink(old.path)


def _stored_at(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat().st_mtime_ns
    except OSError:
        return 0  # gone meanwhile: first in line, and its unlink is a no-op
