"""A file being received: ``INBOX/.accord-partial/<key>.part`` holds its bytes and
``<key>.state`` the blocks verified so far (blocking I/O: call from a thread).

A block is hashed before it is written, and the state records it only after the
write, so a state file never claims a block that is not in the data file (a SIGKILL
loses at most the blocks since the last save, which are pulled again). On reopening,
the claimed blocks are hashed again: a damaged partial costs blocks, never a file
that looks complete but is not. Only a file whose every block is verified is renamed
into the inbox.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Final

import msgspec

from accord.continuity.errors import TransferError
from accord.continuity.transfer.assembly import missing_runs
from accord.continuity.transfer.blocks import HASH_BYTES, block_count, block_span, clash_free
from accord.continuity.transfer.messages import FileEntry, Run

SAVE_EVERY_S: Final = 0.25
# Linux starts writing dirty pages back when told they are not needed (and keeps
# them until they are written); elsewhere finish() writes the whole file at its end.
_START_WRITEBACK: Final = (
    getattr(os, "POSIX_FADV_DONTNEED", None) if sys.platform == "linux" else None
)


class PartialState(msgspec.Struct):
    sender: str
    name: str
    size: int
    block_size: int
    have: bytes
    updated: float


class PartialFile:
    def __init__(self, folder: Path, key: str, sender: str, entry: FileEntry) -> None:
        self.entry = entry
        self.sender = sender
        self.data_path = folder / f"{key}.part"
        self.state_path = folder / f"{key}.state"
        self.count = block_count(entry.size, entry.block_size)
        self.have = bytearray((self.count + 7) // 8)
        self._fd = -1
        self._dirty = False
        self._saved_at = 0.0

    @classmethod
    def open(cls, folder: Path, key: str, sender: str, entry: FileEntry) -> PartialFile:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = cls(folder, key, sender, entry)
        part._fd = os.open(part.data_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(part._fd).st_size != entry.size:
                os.ftruncate(part._fd, entry.size)
            part._load_claimed()
        except BaseException:
            os.close(part._fd)
            raise
        return part

    def _load_claimed(self) -> None:
        try:
            state = msgspec.msgpack.decode(self.state_path.read_bytes(), type=PartialState)
        except (OSError, msgspec.DecodeError):
            return  # none, or damaged: start over (the data file is only bytes)
        if len(state.have) != len(self.have):
            return
        for i in range(self.count):
            if state.have[i >> 3] & (1 << (i & 7)):
                offset, length = block_span(self.entry, i)
                if hashlib.sha256(os.pread(self._fd, length, offset)).digest() == self._hash(i):
                    self.have[i >> 3] |= 1 << (i & 7)

    def _hash(self, i: int) -> bytes:
        return self.entry.hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES]

    def has(self, i: int) -> bool:
        return bool(self.have[i >> 3] & (1 << (i & 7)))

    def have_bytes(self) -> int:
        return sum(block_span(self.entry, i)[1] for i in range(self.count) if self.has(i))

    def missing(self, file: int) -> list[Run]:
        return missing_runs(file, self.have, self.count)

    @property
    def complete(self) -> bool:
        return all(self.has(i) for i in range(self.count))

    def write_block(self, i: int, data: bytes | memoryview) -> None:
        """Verify block ``i`` against its hash, then write it."""
        offset, length = block_span(self.entry, i)
        if len(data) != length or hashlib.sha256(data).digest() != self._hash(i):
            raise TransferError(
                f"block {i} of {self.entry.name} does not match its hash (the file changed "
                "on the sender while it was sent, or the sender is faulty)"
            )
        written = os.pwrite(self._fd, data, offset)
        if written != length:
            raise OSError(28, "short write")
        if _START_WRITEBACK is not None:  # so finish()'s fsync has little left to wait for
            os.posix_fadvise(self._fd, offset, length, _START_WRITEBACK)
        self.have[i >> 3] |= 1 << (i & 7)
        self._dirty = True

    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._saved_at < SAVE_EVERY_S):
            return
        e = self.entry
        state = PartialState(
            self.sender, e.name, e.size, e.block_size, bytes(self.have), time.time()
        )
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # as private as the data
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.msgpack.encode(state))
        os.replace(tmp, self.state_path)
        self._dirty = False
        self._saved_at = now

    def finish(self, inbox: Path) -> Path:
        """Move the verified file into the inbox under a free name; returns where."""
        if not self.complete:
            raise TransferError(f"{self.entry.name} is not complete")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        rel = Path(self.entry.name)
        folder = inbox / rel.parent
        folder.mkdir(parents=True, exist_ok=True)
        target = clash_free(folder, rel.name)
        os.rename(self.data_path, target)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        return target

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.save(force=True)
            finally:
                os.close(self._fd)
                self._fd = -1


def interrupted(folder: Path) -> list[PartialState]:
    """The partial files an earlier attempt left in ``folder`` (for ``accord transfers``)."""
    out = []
    for path in sorted(folder.glob("*.state")):
        with contextlib.suppress(OSError, msgspec.DecodeError):
            out.append(msgspec.msgpack.decode(path.read_bytes(), type=PartialState))
    return out
