"""The pure core of file send: block sizes, names a receiver takes, pieces back into
blocks, and a partial file's state across a restart."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.continuity.errors import TransferError, TransferRefused
from accord.continuity.transfer.assembly import BlockAssembler, missing_runs
from accord.continuity.transfer.blocks import (
    BLOCKS_PER_FILE,
    MAX_BLOCK,
    MIN_BLOCK,
    block_count,
    block_size,
    check_entry,
    check_name,
    clash_free,
    hash_file,
)
from accord.continuity.transfer.messages import FileEntry, Piece, Run
from accord.continuity.transfer.partial import PartialFile

KIB, MIB = 1024, 1024 * 1024


@given(st.integers(min_value=0, max_value=64 * 1024**3))
def test_block_size_follows_syncthing(size: int) -> None:
    bs = block_size(size)
    assert MIN_BLOCK <= bs <= MAX_BLOCK
    assert bs & (bs - 1) == 0
    assert block_count(size, bs) < BLOCKS_PER_FILE or bs == MAX_BLOCK
    if bs > MIN_BLOCK:  # the smallest size that keeps the count under the bound
        assert block_count(size, bs // 2) >= BLOCKS_PER_FILE


def test_block_sizes_of_everyday_files() -> None:
    assert block_size(0) == block_size(4 * KIB) == 128 * KIB
    assert block_size(400 * 10**6) == 256 * KIB
    assert block_size(1024 * MIB) == 1 * MIB


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/./b", "a\\..\\b", "a\x00b",
     ".accord-partial/x", "x" * 256, "/".join(["a"] * 33)],
)  # fmt: skip
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(TransferRefused):
        check_name(name)


def test_plain_names_pass() -> None:
    assert str(check_name("photos/2026/beach.jpg")) == "photos/2026/beach.jpg"
    assert str(check_name(".bashrc")) == ".bashrc"


def test_block_lists_must_fit_the_size() -> None:
    good = FileEntry("a", 300 * KIB, 128 * KIB, bytes(32 * 3))
    check_entry(good)
    for bad in (
        FileEntry("a", 300 * KIB, 128 * KIB, bytes(32 * 2)),  # too few hashes
        FileEntry("a", 300 * KIB, 256 * KIB, bytes(32 * 2)),  # not the rule's block size
        FileEntry("a", -1, 128 * KIB, b""),
        FileEntry("a", 10**15, MAX_BLOCK, b""),  # larger than the rule allows
    ):
        with pytest.raises(TransferRefused):
            check_entry(bad)


def test_name_clashes_get_a_number(tmp_path: Path) -> None:
    assert clash_free(tmp_path, "a.txt") == tmp_path / "a.txt"
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "a (1).txt").write_text("2")
    assert clash_free(tmp_path, "a.txt") == tmp_path / "a (2).txt"
    (tmp_path / "notes").write_text("x")
    assert clash_free(tmp_path, "notes") == tmp_path / "notes (1)"
    (tmp_path / "b.tar.gz").write_text("x")
    assert clash_free(tmp_path, "b.tar.gz") == tmp_path / "b (1).tar.gz"


def _entry(data: bytes, name: str = "f") -> FileEntry:
    bs = block_size(len(data))
    hashes = b"".join(hashlib.sha256(data[i : i + bs]).digest() for i in range(0, len(data), bs))
    return FileEntry(name, len(data), bs, hashes)


def test_assembler_rebuilds_blocks_from_pieces() -> None:
    data = os.urandom(300 * KIB)
    entry = _entry(data)
    asm = BlockAssembler([entry], [Run(0, 1, 2)])
    assert asm.feed(Piece(0, 128 * KIB, data[128 * KIB : 200 * KIB])) is None
    assert asm.feed(Piece(0, 200 * KIB, data[200 * KIB : 256 * KIB])) == (
        0, 1, data[128 * KIB : 256 * KIB],
    )  # fmt: skip
    assert asm.feed(Piece(0, 256 * KIB, data[256 * KIB :])) == (0, 2, data[256 * KIB :])
    assert asm.finished
    with pytest.raises(TransferError, match="more than was asked"):
        asm.feed(Piece(0, 0, b"x"))


@pytest.mark.parametrize(
    "piece",
    [Piece(1, 0, b"x"), Piece(0, 5, b"x"), Piece(0, 0, b""), Piece(0, 0, bytes(129 * KIB))],
)
def test_assembler_refuses_pieces_out_of_order_or_size(piece: Piece) -> None:
    entries = [_entry(os.urandom(200 * KIB)), _entry(b"abc", "g")]
    asm = BlockAssembler(entries, [Run(0, 0, 2), Run(1, 0, 1)])
    with pytest.raises(TransferError):
        asm.feed(piece)


def test_missing_runs() -> None:
    have = bytearray([0b1011_0110, 0b1])
    assert missing_runs(3, have, 10) == [Run(3, 0, 1), Run(3, 3, 1), Run(3, 6, 1), Run(3, 9, 1)]
    assert missing_runs(0, bytearray(1), 5) == [Run(0, 0, 5)]
    assert missing_runs(0, bytearray(), 0) == []


def test_a_partial_file_resumes_and_drops_damaged_blocks(tmp_path: Path) -> None:
    data = os.urandom(5 * 128 * KIB + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    entry = hash_file(src, "photo.bin")
    assert entry == _entry(data, "photo.bin")
    folder, inbox = tmp_path / "partial", tmp_path / "inbox"
    part = PartialFile.open(folder, "k", "sender", entry)
    for i in (0, 2, 3):
        part.write_block(i, data[i * 128 * KIB : (i + 1) * 128 * KIB])
    with pytest.raises(TransferError, match="does not match its hash"):
        part.write_block(1, bytes(128 * KIB))
    part.close()
    # What was received, and which blocks of it, stays private to this user.
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"k.part": 0o600, "k.state": 0o600}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with open(folder / "k.part", "r+b") as f:  # damage block 3 behind the state's back
        f.seek(3 * 128 * KIB)
        f.write(b"garbage")
    again = PartialFile.open(folder, "k", "sender", entry)
    assert [again.has(i) for i in range(6)] == [True, False, True, False, False, False]
    assert again.missing(0) == [Run(0, 1, 1), Run(0, 3, 3)]
    with pytest.raises(TransferError, match="not complete"):
        again.finish(inbox)
    for i in (1, 3, 4, 5):
        again.write_block(i, data[i * 128 * KIB : (i + 1) * 128 * KIB])
    saved = again.finish(inbox)
    assert saved == inbox / "photo.bin"
    assert saved.read_bytes() == data
    assert list(folder.iterdir()) == []
