"""A wrong entry in the sender's hash cache never makes a wrong file (in-process
nodes on real Zenoh): the receiver checks every block against the offer, the send
stops with a typed error, nothing half-right lands, and sending again hashes afresh."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.continuity.transfer import blocks
from accord.continuity.transfer.blocks import block_size
from accord.continuity.transfer.hashcache import DIGEST, Entry, HashCache, Stat
from accord.errors import RemoteError
from accord.node import Node
from tests.nodes import Mesh, household

MIB = 1024 * 1024
SIZE = 2 * MIB + 3


@pytest.fixture
async def two(mesh: Mesh, tmp_path: Path) -> tuple[Node, Node]:
    laptop, phone = await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"))
    # Every file counts as settled and big enough, so the test's fresh file is cached.
    laptop.continuity.sender.cache = HashCache(tmp_path / "cache", racy_s=0.0, min_bytes=1)
    return laptop, phone


async def _send(laptop: Node, phone: Node, path: Path) -> dict[str, Any]:
    sender = laptop.continuity.sender
    events = [e async for e in sender.send(phone.home.device_id, "phone", [path])]
    return events[-1]


def _received(phone: Node) -> dict[str, bytes]:
    inbox = phone.home.path / "inbox"
    return {p.name: p.read_bytes() for p in inbox.iterdir() if p.is_file()}


def _rewrite_entry(cache: HashCache, path: Path, hashes: bytes | None) -> None:
    """Make the cache claim ``path`` as it is now, with ``hashes`` (None: keep the
    stored ones): what a stale entry whose key did not catch a change, or a tampered
    one with a valid checksum, looks like."""
    [entry_path] = [p for p in cache.folder.iterdir() if not p.name.endswith(".tmp")]
    old = msgspec.msgpack.decode(entry_path.read_bytes()[DIGEST:], type=Entry)
    new = Entry(old.version, Stat.of(os.stat(path)), old.block_size, hashes or old.hashes)
    body = msgspec.msgpack.encode(new)
    entry_path.write_bytes(hashlib.sha256(body).digest() + body)


@pytest.mark.parametrize("wrong", ["stale", "tampered"])
async def test_a_wrong_cache_entry_stops_the_send_and_the_next_send_is_right(
    two: tuple[Node, Node], tmp_path: Path, wrong: str
) -> None:
    laptop, phone = two
    cache = laptop.continuity.sender.cache
    assert cache is not None
    path = tmp_path / "movie.bin"
    first = os.urandom(SIZE)
    path.write_bytes(first)
    done = await _send(laptop, phone, path)
    assert done["bytes_sent"] == SIZE
    assert _received(phone) == {"movie.bin": first}
    # The file changes; the cache goes on claiming the old hashes (or junk) for it.
    second = bytearray(first)
    second[SIZE // 2] ^= 0xFF
    path.write_bytes(bytes(second))
    _rewrite_entry(cache, path, None if wrong == "stale" else os.urandom(len(cache_hashes(cache))))
    with pytest.raises(RemoteError, match="does not match its hash"):
        await _send(laptop, phone, path)
    assert _received(phone) == {"movie.bin": first}  # nothing half-right landed
    # The failed send dropped the entry: this one hashes the file again.
    done = await _send(laptop, phone, path)
    assert done["files"][0]["saved_as"] == "movie (1).bin"
    assert _received(phone) == {"movie.bin": first, "movie (1).bin": bytes(second)}


def cache_hashes(cache: HashCache) -> bytes:
    [entry_path] = [p for p in cache.folder.iterdir() if not p.name.endswith(".tmp")]
    return msgspec.msgpack.decode(entry_path.read_bytes()[DIGEST:], type=Entry).hashes


async def test_an_unchanged_file_is_offered_from_the_cache(
    two: tuple[Node, Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, phone = two
    cache = laptop.continuity.sender.cache
    assert cache is not None
    path = tmp_path / "movie.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    await _send(laptop, phone, path)
    assert cache.lookup(Stat.of(os.stat(path)), block_size(SIZE)) == cache_hashes(cache)

    def no_hashing(job: object) -> bytes:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(blocks, "_hash_run", no_hashing)
    done = await _send(laptop, phone, path)
    assert done["bytes_sent"] == SIZE
    assert _received(phone)["movie (1).bin"] == data
