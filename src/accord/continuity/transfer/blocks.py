"""The pure core of file send: block sizes, names a receiver accepts, clash names.

Block size follows Syncthing's rule: the smallest power of two from 128 KiB to
16 MiB that cuts the file into fewer than 2,000 blocks (16 MiB for anything larger).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Final

from accord.continuity.errors import TransferRefused
from accord.continuity.transfer.hashcache import HashCache, Stat
from accord.continuity.transfer.messages import FileEntry

MIN_BLOCK: Final = 128 * 1024
MAX_BLOCK: Final = 16 * 1024 * 1024
BLOCKS_PER_FILE: Final = 2000
HASH_BYTES: Final = 32
MAX_FILE_BYTES: Final = MAX_BLOCK * BLOCKS_PER_FILE  # ~31 GiB: the rule's own bound
MAX_NAME_BYTES: Final = 255  # one path component
MAX_PATH_BYTES: Final = 1024
MAX_DEPTH: Final = 32
HASH_THREADS: Final = min(4, os.cpu_count() or 1)
PARTIAL_DIR: Final = ".accord-partial"  # inside the inbox; never shown as received


def block_size(size: int) -> int:
    """Syncthing's block size for a file of ``size`` bytes."""
    bs = MIN_BLOCK
    while bs < MAX_BLOCK and size >= BLOCKS_PER_FILE * bs:
        bs *= 2
    return bs


def block_count(size: int, bs: int) -> int:
    return -(-size // bs)


def block_span(entry: FileEntry, index: int) -> tuple[int, int]:
    """(offset, length) of block ``index`` of ``entry``."""
    offset = index * entry.block_size
    return offset, min(entry.block_size, entry.size - offset)


def hash_file(path: Path, name: str) -> FileEntry:
    """Read ``path`` once and describe it for an offer (blocking: run in a thread)."""
    return hash_files([(path, name)])[0]


def hash_files(files: list[tuple[Path, str]], cache: HashCache | None = None) -> list[FileEntry]:
    """Describe each ``(path, name)`` for an offer (blocking: run in a thread). Runs of
    blocks are hashed on HASH_THREADS threads at once (hashlib lets go of the GIL):
    this is the one step of a send that nothing else overlaps, so a file ``cache``
    holds unchanged is not read at all. An OSError names its file."""
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="accord-hash") as pool:
        return [_hash_one(pool, path, name, cache) for path, name in files]


def _hash_one(
    pool: ThreadPoolExecutor, path: Path, name: str, cache: HashCache | None
) -> FileEntry:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            if cache is None:
                return _describe(pool, fd, name)
            return _describe_cached(pool, fd, name, cache)
        finally:
            os.close(fd)
    except OSError as exc:
        exc.filename = exc.filename or str(path)
        raise


def _describe_cached(pool: ThreadPoolExecutor, fd: int, name: str, cache: HashCache) -> FileEntry:
    before = Stat.of(os.fstat(fd))
    bs = block_size(before.size)
    hashes = cache.lookup(before, bs)
    if hashes is not None:
        return FileEntry(name, before.size, bs, hashes)
    started = cache.now_ns()
    entry = _describe(pool, fd, name)
    cache.store(before, Stat.of(os.fstat(fd)), started, entry.block_size, entry.hashes)
    return entry


def _describe(pool: ThreadPoolExecutor, fd: int, name: str) -> FileEntry:
    size = os.fstat(fd).st_size
    bs = block_size(size)
    count = block_count(size, bs)
    step = max(1, -(-count // (4 * HASH_THREADS)))  # a few runs per thread
    runs = [(fd, size, bs, first, min(first + step, count)) for first in range(0, count, step)]
    if len(runs) > 1:
        hashes = b"".join(pool.map(_hash_run, runs))
    else:
        hashes = b"".join(map(_hash_run, runs))  # one small file: no hand-off
    if os.fstat(fd).st_size != size:
        raise OSError(0, "the file changed while it was read")
    return FileEntry(name, size, bs, hashes)


def _hash_run(job: tuple[int, int, int, int, int]) -> bytes:
    fd, size, bs, first, end = job
    out = []
    for i in range(first, end):
        length = min(bs, size - i * bs)
        data = os.pread(fd, length, i * bs)
        if len(data) != length:
            raise OSError(0, "the file got shorter while it was read")
        out.append(hashlib.sha256(data).digest())
    return b"".join(out)


def check_entry(entry: FileEntry) -> None:
    """What a receiver checks before it takes a file: a safe relative name, and a
    block list that fits the size (so a hostile sender cannot make it allocate)."""
    check_name(entry.name)
    if not 0 <= entry.size <= MAX_FILE_BYTES:
        raise TransferRefused(f"{entry.name}: size {entry.size} is out of range")
    if entry.block_size != block_size(entry.size):
        raise TransferRefused(f"{entry.name}: block size {entry.block_size} breaks the rule")
    if len(entry.hashes) != HASH_BYTES * block_count(entry.size, entry.block_size):
        raise TransferRefused(f"{entry.name}: the block list does not match the size")


def check_name(name: str) -> PurePosixPath:
    """A relative POSIX path of plain components, or TransferRefused."""
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise TransferRefused("a file name is empty or too long")
    if "\x00" in name or "\\" in name or name.startswith("/"):
        raise TransferRefused(f"unsafe file name {name!r}")
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        raise TransferRefused(f"{name!r} is nested too deep")
    for part in parts:
        if part in ("", ".", "..") or len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise TransferRefused(f"unsafe file name {name!r}")
    if parts[0] == PARTIAL_DIR:
        raise TransferRefused(f"unsafe file name {name!r}")
    return PurePosixPath(name)


def clash_free(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (1).ext``, ``name (2).ext``... if that exists."""
    target = folder / name
    if not target.exists():
        return target
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    n = 1
    while True:
        candidate = folder / f"{stem} ({n}){dot}{ext}"
        if not candidate.exists():
            return candidate
        n += 1


def partial_key(sender: str, entry: FileEntry) -> str:
    """The name of a file's partial state: the same file from the same sender finds
    the blocks an earlier attempt left."""
    h = hashlib.sha256()
    for part in (sender, entry.name, str(entry.size), str(entry.block_size)):
        h.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    h.update(entry.hashes)
    return h.hexdigest()[:32]
