"""The receiving side of file send: the ``files.receive`` stream.

Threat model: the offer and every piece come from a member that may be hostile.
Names are checked (:func:`check_entry`), sizes and block lists must fit the block
rule, pieces must be exactly the blocks asked for in the order asked for, and every
block must match its hash before it touches the disk. A sender gets at most
``MAX_SESSIONS`` transfers at once, the same file cannot be received twice at once,
and an offer that does not fit the disk is refused before any byte moves.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from accord.continuity.errors import TransferError, TransferRefused
from accord.continuity.settings import SettingsStore
from accord.continuity.transfer.assembly import BlockAssembler
from accord.continuity.transfer.blocks import PARTIAL_DIR, block_span, check_entry, partial_key
from accord.continuity.transfer.messages import (
    OUTBOX,
    SERVICE,
    Offer,
    PieceView,
    PullParams,
    ReceiveEvent,
    Run,
)
from accord.continuity.transfer.partial import PartialFile, interrupted
from accord.rpc import RpcClient, RpcServer

log = logging.getLogger(__name__)

MAX_SESSIONS: Final = 4  # transfers from one sender at once
ROOM_MARGIN: Final = 64 * 1024 * 1024  # left free on the receiver's disk
PULL_WINDOW: Final = 8  # items of up to 4 MiB in flight from the sender
APPLY_AHEAD: Final = 2  # items handed to the disk thread and not yet written
ITEM_TIMEOUT_S: Final = 30.0  # the sender's next piece, at most this late
PROGRESS_EVERY_S: Final = 0.2
RECENT: Final = 50


@dataclass
class Incoming:
    sender: str
    sender_name: str
    files: list[str]
    bytes_total: int
    need_bytes: int
    started: float
    done_bytes: int = 0
    state: str = "receiving"  # receiving, done, interrupted
    saved: list[str] = field(default_factory=list)
    error: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "from": self.sender_name,
            "from_id": self.sender,
            "files": self.files,
            "bytes_total": self.bytes_total,
            "bytes_needed": self.need_bytes,
            "bytes_done": self.done_bytes,
            "state": self.state,
            "saved": self.saved,
            "error": self.error,
        }


class Receiver:
    def __init__(
        self,
        rpc: RpcClient,
        settings: SettingsStore,
        name: str,
        name_of: Callable[[str], str],
    ) -> None:
        self._rpc = rpc
        self._settings = settings
        self._name = name
        self._name_of = name_of
        self._busy: set[str] = set()
        self._sessions: dict[str, int] = {}
        self._active: list[Incoming] = []
        self._recent: deque[Incoming] = deque(maxlen=RECENT)

    def register(self, server: RpcServer) -> None:
        server.register_stream(SERVICE, "receive", self.receive, Offer)

    def transfers(self) -> dict[str, Any]:
        partial_dir = self._settings.inbox() / PARTIAL_DIR
        active_names = {(t.sender, n) for t in self._active for n in t.files}
        waiting = [
            {
                "from": self._name_of(s.sender),
                "from_id": s.sender,
                "file": s.name,
                "bytes_total": s.size,
                "bytes_done": min(
                    s.size, bin(int.from_bytes(s.have, "little")).count("1") * s.block_size
                ),
            }
            for s in interrupted(partial_dir)
            if (s.sender, s.name) not in active_names
        ]
        return {
            "inbox": str(self._settings.inbox()),
            "active": [t.json() for t in self._active],
            "recent": [t.json() for t in reversed(self._recent)],
            "partial": waiting,
        }

    async def receive(self, offer: Offer, caller: str) -> AsyncIterator[ReceiveEvent]:
        """Take the offered files: answer what is missing, pull it, verify, rename."""
        if self._sessions.get(caller, 0) >= MAX_SESSIONS:
            raise TransferRefused(f"{self._name} already receives {MAX_SESSIONS} sends from you")
        names = set()
        for entry in offer.files:
            check_entry(entry)
            if entry.name in names:
                raise TransferRefused(f"{entry.name} is offered twice")
            names.add(entry.name)
        keys = [partial_key(caller, e) for e in offer.files]
        if self._busy.intersection(keys):
            raise TransferRefused(f"{self._name} is already receiving these files from you")
        self._busy.update(keys)
        self._sessions[caller] = self._sessions.get(caller, 0) + 1
        inbox = self._settings.inbox()
        partials: list[PartialFile] = []
        total = sum(e.size for e in offer.files)
        info = Incoming(
            caller, self._name_of(caller), [e.name for e in offer.files], total, 0, time.time()
        )
        # One worker thread does this transfer's disk work, in order: a block being
        # written when the transfer is cancelled is done before the files close.
        io = ThreadPoolExecutor(1, thread_name_prefix="accord-receive")
        loop = asyncio.get_running_loop()
        try:
            partials = await loop.run_in_executor(io, self._open_all, inbox, caller, offer, keys)
            need = total - sum(p.have_bytes() for p in partials)
            await loop.run_in_executor(io, self._check_room, inbox, need)
            info.need_bytes = need
            self._active.append(info)
            yield ReceiveEvent("accepted", need_bytes=need, have_bytes=total - need)
            async for done in self._pull(offer, caller, partials, io):
                info.done_bytes = done
                yield ReceiveEvent("progress", done_bytes=done)
            saved = await loop.run_in_executor(io, _finish_all, partials, inbox)
            info.saved, info.state = saved, "done"
            log.info("%s: received %d files from %s", self._name, len(saved), info.sender_name)
            yield ReceiveEvent("done", saved=saved)
        except OSError as exc:
            info.state, info.error = "interrupted", str(exc.strerror or exc)
            raise TransferError(
                f"{self._name} cannot write the file: {exc.strerror or exc}"
            ) from None
        except BaseException as exc:
            info.state, info.error = "interrupted", str(exc) or type(exc).__name__
            raise
        finally:
            self._busy.difference_update(keys)
            self._sessions[caller] -= 1
            if not self._sessions[caller]:
                del self._sessions[caller]
            if info in self._active:
                self._active.remove(info)
                self._recent.append(info)
            closing = loop.run_in_executor(io, _close_all, partials)
            io.shutdown(wait=False)
            await asyncio.shield(closing)

    @staticmethod
    def _open_all(inbox: Path, caller: str, offer: Offer, keys: list[str]) -> list[PartialFile]:
        inbox.mkdir(parents=True, exist_ok=True)
        folder = inbox / PARTIAL_DIR
        out: list[PartialFile] = []
        try:
            for key, entry in zip(keys, offer.files, strict=True):
                out.append(PartialFile.open(folder, key, caller, entry))
        except BaseException:
            _close_all(out)
            raise
        return out

    def _check_room(self, inbox: Path, need: int) -> None:
        free = shutil.disk_usage(inbox).free
        if need + ROOM_MARGIN > free:
            raise TransferRefused(
                f"{self._name} has no room: the files need {need / 1e6:.1f} MB and "
                f"{max(0, free - ROOM_MARGIN) / 1e6:.1f} MB is free"
            )

    async def _pull(
        self, offer: Offer, caller: str, partials: list[PartialFile], io: ThreadPoolExecutor
    ) -> AsyncIterator[int]:
        """Pull the missing blocks; yields the bytes verified and written so far.

        Items are opened on the loop and hashed and written by the ``io`` thread, up to
        APPLY_AHEAD behind, so the next item is opened while the last one is hashed
        (both let go of the GIL)."""
        runs: list[Run] = [run for i, p in enumerate(partials) for run in p.missing(i)]
        if not runs:
            return
        assembler = BlockAssembler(offer.files, runs)
        done = 0
        last = time.monotonic()
        params = PullParams(offer.transfer, runs)
        stream = self._rpc.stream(
            caller,
            OUTBOX,
            "blocks",
            params,
            list[PieceView],
            window=PULL_WINDOW,
            timeout=ITEM_TIMEOUT_S,
        )
        loop = asyncio.get_running_loop()
        applying: deque[asyncio.Future[int]] = deque()
        try:
            async with stream:
                async for pieces in stream:
                    applying.append(loop.run_in_executor(io, _apply, assembler, partials, pieces))
                    while applying and (len(applying) > APPLY_AHEAD or applying[0].done()):
                        done += await applying.popleft()
                    now = time.monotonic()
                    if now - last >= PROGRESS_EVERY_S:
                        last = now
                        yield done
            while applying:
                done += await applying.popleft()
        finally:
            for left in applying:  # failed or cancelled meanwhile: the first error counts
                left.add_done_callback(_ignore_result)
        if not assembler.finished:
            raise TransferError("the sender ended the transfer early; send again to resume")
        yield done


def _ignore_result(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


def _apply(assembler: BlockAssembler, partials: list[PartialFile], pieces: list[PieceView]) -> int:
    """Verify and write whole blocks (in a worker thread); returns the bytes written."""
    written = 0
    touched: set[int] = set()
    for piece in pieces:
        block = assembler.feed(piece)
        if block is not None:
            file, index, data = block
            partials[file].write_block(index, data)
            written += block_span(partials[file].entry, index)[1]
            touched.add(file)
    for file in touched:
        partials[file].save()
    return written


def _finish_all(partials: list[PartialFile], inbox: Path) -> list[str]:
    return [str(p.finish(inbox).relative_to(inbox)) for p in partials]


def _close_all(partials: list[PartialFile]) -> None:
    for p in partials:
        try:
            p.close()
        except OSError as exc:
            log.warning("cannot save the state of %s: %s", p.entry.name, exc)
