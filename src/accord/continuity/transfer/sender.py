"""The sending side of file send: offers files and serves the ``outbox.blocks`` stream.

Only the device a transfer was offered to may pull its blocks (the caller id is
authenticated by the pairwise channel), and only blocks of the files offered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from accord.continuity.errors import TransferError, TransferRefused
from accord.continuity.transfer.blocks import block_count, block_span, hash_files
from accord.continuity.transfer.hashcache import HashCache
from accord.continuity.transfer.messages import (
    ITEM_BYTES,
    ITEM_PIECES,
    MAX_FILES,
    OUTBOX,
    SERVICE,
    FileEntry,
    Offer,
    Piece,
    PullParams,
    ReceiveEvent,
    Run,
)
from accord.errors import DeviceUnavailable
from accord.rpc import RpcClient, RpcServer

log = logging.getLogger(__name__)

OFFER_BYTES: Final = 768 * 1024  # an offer's encoded size, under rpc MAX_PARAMS
EVENT_TIMEOUT_S: Final = 60.0  # the receiver's next progress event, at most this late


@dataclass
class Outgoing:
    receiver: str
    paths: list[Path]
    entries: list[FileEntry]
    sent: int = 0


class Sender:
    def __init__(self, rpc: RpcClient, name: str, cache: HashCache | None = None) -> None:
        self._rpc = rpc
        self._name = name
        self.cache = cache  # block hashes of files sent before (None: always hash)
        self._outgoing: dict[str, Outgoing] = {}

    def register(self, server: RpcServer) -> None:
        server.register_stream(OUTBOX, "blocks", self.blocks, PullParams)

    async def blocks(self, params: PullParams, caller: str) -> AsyncIterator[list[Piece]]:
        """The blocks asked for, in order: whole blocks packed into items of at most
        ITEM_BYTES (a bigger block is cut into ITEM_BYTES pieces). The next item is
        read from disk while this one is sealed and sent."""
        out = self._outgoing.get(params.transfer)
        if out is None or out.receiver != caller:
            raise TransferRefused("no such transfer was offered to you")
        for run in params.runs:
            if run.file >= len(out.entries):
                raise TransferRefused("a pull names a file that was not offered")
            entry = out.entries[run.file]
            if run.first + run.count > block_count(entry.size, entry.block_size):
                raise TransferRefused("a pull names blocks past the end of a file")
        plans = _plan_items(out.entries, params.runs)
        plan = next(plans, None)
        reading = _read_soon(out.paths, plan)
        try:
            while reading is not None:
                pieces = await reading
                plan = next(plans, None)
                reading = _read_soon(out.paths, plan)
                yield pieces
                out.sent += sum(len(p.data) for p in pieces)
        finally:
            if reading is not None:  # closed early: the read in flight is not wanted
                reading.add_done_callback(_ignore_result)

    async def send(self, to: str, to_name: str, paths: list[Path]) -> AsyncIterator[dict[str, Any]]:
        """Send ``paths`` (files and folders) to member ``to``; yields progress events
        and a final ``done`` with what was saved where."""
        started = time.monotonic()
        found = await asyncio.to_thread(scan, paths)
        entries = await asyncio.to_thread(_hash_all, found, self.cache)
        total = sum(e.size for e in entries)
        yield {"kind": "start", "files": [e.name for e in entries], "bytes_total": total}
        saved: list[str] = []
        sent = skipped = base = 0
        for first, last in _batches(entries):
            tid = secrets.token_hex(8)
            batch = entries[first:last]
            out = Outgoing(to, [p for p, _ in found[first:last]], batch)
            self._outgoing[tid] = out
            base_done = base
            try:
                stream = self._rpc.stream(
                    to, SERVICE, "receive", Offer(tid, batch), ReceiveEvent, timeout=EVENT_TIMEOUT_S
                )
                async with stream:
                    async for ev in stream:
                        if ev.kind == "accepted":
                            skipped += ev.have_bytes
                            base_done = base + ev.have_bytes
                        elif ev.kind == "progress":
                            yield {"kind": "progress", "bytes_done": base_done + ev.done_bytes}
                        else:
                            saved.extend(ev.saved)
            except DeviceUnavailable:
                raise TransferError(
                    f"the link to {to_name} was interrupted after {(sent + out.sent) / 1e6:.1f} "
                    f"of {total / 1e6:.1f} MB; send again to resume (only missing blocks move)"
                ) from None
            except Exception:
                # Refused, or blocks that failed the receiver's check (a file changed
                # behind a cached hash list): the next send hashes these files afresh.
                if self.cache is not None:
                    await asyncio.to_thread(_forget_all, self.cache, out.paths)
                raise
            finally:
                del self._outgoing[tid]
                sent += out.sent
            base += sum(e.size for e in batch)
            yield {"kind": "progress", "bytes_done": base}
        if len(saved) != len(entries):
            raise TransferError(f"{to_name} did not confirm every file; send again")
        yield {
            "kind": "done",
            "to": to_name,
            "files": [
                {"name": e.name, "saved_as": s, "bytes": e.size}
                for e, s in zip(entries, saved, strict=True)
            ],
            "bytes_total": total,
            "bytes_sent": sent,
            "bytes_skipped": skipped,
            "seconds": round(time.monotonic() - started, 3),
        }


def scan(paths: list[Path]) -> list[tuple[Path, str]]:
    """Every regular file under ``paths`` with the name it gets on the receiver
    (a folder's files keep their path under the folder's name)."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            raise TransferError(f"no such file or folder: {path}")
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            base = path.resolve()
            for root, dirs, files in os.walk(base):
                dirs.sort()
                for name in sorted(files):
                    full = Path(root, name)
                    if full.is_file() and not full.is_symlink():
                        found.append((full, f"{base.name}/{full.relative_to(base).as_posix()}"))
        else:
            raise TransferError(f"{path} is neither a file nor a folder")
    if not found:
        raise TransferError("there are no files to send in " + ", ".join(map(str, paths)))
    names: set[str] = set()
    for _, name in found:
        if name in names:
            raise TransferError(f"two of the files to send are both named {name}")
        names.add(name)
    return found


def _hash_all(found: list[tuple[Path, str]], cache: HashCache | None) -> list[FileEntry]:
    try:
        return hash_files(found, cache)
    except OSError as exc:
        raise TransferError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None


def _forget_all(cache: HashCache, paths: list[Path]) -> None:
    for path in paths:
        cache.forget(path)


def _batches(entries: list[FileEntry]) -> list[tuple[int, int]]:
    """Index ranges of offers that each fit the request size limit."""
    out, first, size = [], 0, 0
    for i, e in enumerate(entries):
        cost = len(msgspec.msgpack.encode(e)) + 8
        if i > first and (size + cost > OFFER_BYTES or i - first >= MAX_FILES):
            out.append((first, i))
            first, size = i, 0
        size += cost
    out.append((first, len(entries)))
    return out


Plan = list[tuple[int, int, int]]  # the pieces of one item: file, offset, length


def _plan_items(entries: list[FileEntry], runs: list[Run]) -> Iterator[Plan]:
    """The items that carry ``runs``: whole blocks while they fit, else one piece
    per item (blocks are powers of two, so a big block is cut into whole items)."""
    plan: Plan = []
    size = 0
    for run in runs:
        entry = entries[run.file]
        for index in range(run.first, run.first + run.count):
            offset, length = block_span(entry, index)
            if plan and (size + length > ITEM_BYTES or len(plan) >= ITEM_PIECES):
                yield plan
                plan, size = [], 0
            while length > ITEM_BYTES:
                yield [(run.file, offset, ITEM_BYTES)]
                offset += ITEM_BYTES
                length -= ITEM_BYTES
            plan.append((run.file, offset, length))
            size += length
    if plan:
        yield plan


def _read_soon(paths: list[Path], plan: Plan | None) -> asyncio.Future[list[Piece]] | None:
    """Start reading ``plan`` in a worker thread (None: nothing left to read)."""
    if plan is None:
        return None
    return asyncio.ensure_future(asyncio.to_thread(_read, paths, plan))


def _ignore_result(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: an abandoned read's failure is nobody's error


def _read(paths: list[Path], pending: Plan) -> list[Piece]:
    pieces = []
    fd, fd_file = -1, -1
    try:
        for file, offset, length in pending:
            if file != fd_file:
                if fd >= 0:
                    os.close(fd)
                fd, fd_file = os.open(paths[file], os.O_RDONLY), file
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise TransferError(f"{paths[file]} got shorter while it was sent")
            pieces.append(Piece(file, offset, data))
    except OSError as exc:
        raise TransferError(f"cannot read {paths[file]}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    return pieces
