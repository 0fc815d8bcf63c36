"""Pieces from a sender back into whole blocks, in the order the receiver asked for
them (pure: a hostile sender's pieces either fit that order or raise; after one
raises, every later piece does too)."""

from __future__ import annotations

from collections.abc import Iterator

from accord.continuity.errors import TransferError
from accord.continuity.transfer.blocks import block_span
from accord.continuity.transfer.messages import FileEntry, Piece, PieceView, Run

BlockData = bytes | memoryview


class BlockAssembler:
    """Checks that each piece is the next slice of the next block asked for and
    emits ``(file, block, bytes)`` for each block once it is whole."""

    def __init__(self, files: list[FileEntry], runs: list[Run]) -> None:
        self._files = files
        self._order = _blocks(runs)
        self._current: tuple[int, int, int, int] | None = None  # file, block, offset, length
        self._buf = bytearray()
        self._failed = False
        self._advance()

    def _advance(self) -> None:
        nxt = next(self._order, None)
        if nxt is None:
            self._current = None
            return
        file, block = nxt
        offset, length = block_span(self._files[file], block)
        self._current = (file, block, offset, length)
        self._buf = bytearray()

    @property
    def finished(self) -> bool:
        return self._current is None

    def feed(self, piece: Piece | PieceView) -> tuple[int, int, BlockData] | None:
        """Take one piece; a whole block when this piece completes one."""
        if self._failed:
            raise TransferError("the sender already sent a piece out of order")
        self._failed = True  # until this piece is known to fit
        if self._current is None:
            raise TransferError("the sender sent more than was asked for")
        file, block, offset, length = self._current
        if piece.file != file or piece.offset != offset + len(self._buf):
            raise TransferError("the sender sent a piece out of the order asked for")
        if not piece.data or len(self._buf) + len(piece.data) > length:
            raise TransferError("the sender sent a piece that overruns its block")
        self._failed = False
        if not self._buf and len(piece.data) == length:  # the common case: no copy
            self._advance()
            return file, block, piece.data
        self._buf += piece.data
        if len(self._buf) < length:
            return None
        data = bytes(self._buf)
        self._advance()
        return file, block, data


def _blocks(runs: list[Run]) -> Iterator[tuple[int, int]]:
    for run in runs:
        for block in range(run.first, run.first + run.count):
            yield run.file, block


def missing_runs(file: int, have: bytearray, count: int) -> list[Run]:
    """The runs of blocks of ``file`` whose bit in ``have`` is clear."""
    runs: list[Run] = []
    start = -1
    for i in range(count + 1):
        missing = i < count and not have[i >> 3] & (1 << (i & 7))
        if missing and start < 0:
            start = i
        elif not missing and start >= 0:
            runs.append(Run(file, start, i - start))
            start = -1
    return runs
