"""File send against a hostile member (in-process nodes on real Zenoh): bad names,
lying block lists and pieces, floods of offers, pulls of transfers offered to
someone else. Each gets a typed error; nothing half-received appears; the node
keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accord.continuity.transfer.blocks import block_size
from accord.continuity.transfer.messages import (
    FileEntry,
    Offer,
    Piece,
    PullParams,
    ReceiveEvent,
    Run,
)
from accord.errors import RemoteError
from accord.node import Node
from tests.nodes import Mesh, household

KIB = 1024


@pytest.fixture
async def two(mesh: Mesh) -> tuple[Node, Node]:
    laptop, phone = await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"))
    return laptop, phone


def _entry(name: str, data: bytes) -> FileEntry:
    bs = block_size(len(data))
    hashes = b"".join(hashlib.sha256(data[i : i + bs]).digest() for i in range(0, len(data), bs))
    return FileEntry(name, len(data), bs, hashes)


async def _offer(hostile: Node, victim: Node, *files: FileEntry, tid: str = "ab") -> list[Any]:
    stream = hostile.rpc.stream(
        victim.home.device_id, "files", "receive", Offer(tid, list(files)), ReceiveEvent
    )
    async with stream:
        return [ev async for ev in stream]


async def _drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


def _inbox(node: Node) -> list[str]:
    inbox = node.home.path / "inbox"
    return sorted(p.name for p in inbox.iterdir() if p.name != ".accord-partial")


async def _honest_send(laptop: Node, phone: Node, path: Path) -> dict[str, Any]:
    events = [e async for e in laptop.continuity.sender.send(phone.home.device_id, "phone", [path])]
    return events[-1]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (FileEntry("../../.bashrc", 1, 128 * KIB, bytes(32)), "unsafe file name"),
        (FileEntry("/etc/passwd", 1, 128 * KIB, bytes(32)), "unsafe file name"),
        (FileEntry("a", 10 * KIB * KIB, 128 * KIB, bytes(32)), "does not match the size"),
        (FileEntry("a", 1, 1, bytes(32)), "breaks the rule"),
    ],
)
async def test_bad_offers_are_refused_and_nothing_lands(
    two: tuple[Node, Node], entry: FileEntry, why: str
) -> None:
    laptop, phone = two
    with pytest.raises(RemoteError, match=why) as info:
        await _offer(laptop, phone, entry)
    assert info.value.remote_type == "TransferRefused"
    assert not (phone.home.path / ".bashrc").exists()
    with pytest.raises(RemoteError, match="offered twice"):
        await _offer(laptop, phone, _entry("x", b"1"), _entry("x", b"1"))


async def test_lying_pieces_never_become_a_file(two: tuple[Node, Node], tmp_path: Path) -> None:
    laptop, phone = two
    data = os.urandom(300 * KIB)

    async def evil(params: PullParams, caller: str) -> AsyncIterator[list[Piece]]:
        yield [Piece(0, 0, bytes(128 * KIB))]  # zeros, not the block offered

    laptop.services.register_stream("outbox", "blocks", evil, PullParams)
    with pytest.raises(RemoteError, match="does not match its hash"):
        await _offer(laptop, phone, _entry("photo.jpg", data))
    assert _inbox(phone) == []

    async def overrun(params: PullParams, caller: str) -> AsyncIterator[list[Piece]]:
        yield [Piece(0, 0, data[: 128 * KIB]), Piece(0, 128 * KIB, data[128 * KIB :])]

    laptop.services.register_stream("outbox", "blocks", overrun, PullParams)
    with pytest.raises(RemoteError, match="overruns its block"):
        await _offer(laptop, phone, _entry("photo.jpg", data))
    assert _inbox(phone) == []
    # The phone keeps serving: an honest sender still gets the file across, and what
    # the first lie left (block 0 was never written) is not taken for a block.
    laptop.continuity.sender.register(laptop.services)
    (tmp_path / "photo.jpg").write_bytes(data)
    done = await _honest_send(laptop, phone, tmp_path / "photo.jpg")
    assert (phone.home.path / "inbox" / done["files"][0]["saved_as"]).read_bytes() == data


async def test_a_flood_of_offers_is_bounded(two: tuple[Node, Node]) -> None:
    laptop, phone = two
    hold = asyncio.Event()

    async def stall(params: PullParams, caller: str) -> AsyncIterator[list[Piece]]:
        await hold.wait()
        yield []

    laptop.services.register_stream("outbox", "blocks", stall, PullParams)
    accepted = [asyncio.Event() for _ in range(4)]

    async def offer(i: int) -> None:
        seen = accepted[i]
        stream = laptop.rpc.stream(
            phone.home.device_id, "files", "receive",
            Offer(f"{i:02x}", [_entry(f"f{i}", b"x")]), ReceiveEvent,
        )  # fmt: skip
        async with stream:
            async for _ in stream:
                seen.set()

    tasks = [asyncio.create_task(offer(i)) for i in range(4)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in accepted)), 10)
        with pytest.raises(RemoteError, match="already receives 4 sends"):
            await _offer(laptop, phone, _entry("g", b"y"))
        assert len(phone.continuity.receiver.transfers()["active"]) == 4
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert _inbox(phone) == []


async def test_only_the_receiver_may_pull_a_transfer(two: tuple[Node, Node]) -> None:
    laptop, phone = two
    stream = phone.rpc.stream(
        laptop.home.device_id, "outbox", "blocks", PullParams("beef", [Run(0, 0, 1)]), list[Piece]
    )
    with pytest.raises(RemoteError, match="no such transfer was offered to you"):
        await _drain(stream)


async def test_an_offer_that_does_not_fit_is_refused_before_a_byte_moves(
    two: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, phone = two
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=70 * KIB * KIB))
    with pytest.raises(RemoteError, match=r"phone has no room: the files need 8\.4 MB"):
        await _offer(laptop, phone, _entry("big", bytes(8 * KIB * KIB)))
