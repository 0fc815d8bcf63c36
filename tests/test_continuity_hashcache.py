"""The sender's block-hash cache: a hit only for exactly the file it hashed, a miss
for any change, damage or race; entries kept private and bounded."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import msgspec
import pytest

from accord.continuity.transfer import blocks
from accord.continuity.transfer.blocks import block_size, hash_files
from accord.continuity.transfer.hashcache import DIGEST, Entry, HashCache, Stat

MIB = 1024 * 1024
SIZE = 3 * MIB + 5  # 128 KiB blocks, a short last one


def _cache(tmp_path: Path, **kw: object) -> HashCache:
    """A cache that keeps files of any size and takes any file as settled."""
    opts: dict[str, object] = {"racy_s": 0.0, "min_bytes": 1}
    opts.update(kw)
    return HashCache(tmp_path / "cache", **opts)  # type: ignore[arg-type]


def _file(tmp_path: Path, name: str = "movie.bin", size: int = SIZE) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _true_hashes(path: Path) -> bytes:
    data = path.read_bytes()
    bs = block_size(len(data))
    return b"".join(hashlib.sha256(data[i : i + bs]).digest() for i in range(0, len(data), bs))


def _entries(cache: HashCache) -> list[Path]:
    return [p for p in cache.folder.iterdir() if not p.name.endswith(".tmp")]


def test_a_file_sent_again_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cache = _file(tmp_path), _cache(tmp_path)
    first = hash_files([(path, "movie.bin")], cache)[0]
    assert first.hashes == _true_hashes(path)
    assert len(_entries(cache)) == 1

    def no_reading(job: object) -> bytes:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(blocks, "_hash_run", no_reading)
    again = hash_files([(path, "other name")], cache)[0]
    assert again.hashes == first.hashes
    assert (again.name, again.size, again.block_size) == ("other name", SIZE, first.block_size)
    st = os.stat(path)
    assert cache.lookup(Stat.of(st), first.block_size) == first.hashes


def test_any_change_of_the_file_is_a_miss(tmp_path: Path) -> None:
    path, cache = _file(tmp_path), _cache(tmp_path)
    hash_files([(path, "m")], cache)
    bs = block_size(SIZE)
    # Bytes written behind it with its mtime put back: ctime still moves (no call can
    # set it), and the rest of the key is checked field by field below.
    st = os.stat(path)
    with path.open("r+b") as f:
        f.write(b"\x00" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cache.lookup(Stat.of(os.stat(path)), bs) is None
    entry = hash_files([(path, "m")], cache)[0]
    assert entry.hashes == _true_hashes(path)
    # Each field of the key on its own is a miss.
    base = Stat.of(os.stat(path))
    assert cache.lookup(base, bs) == entry.hashes
    for field in ("dev", "ino", "size", "mtime_ns", "ctime_ns"):
        other = msgspec.structs.replace(base, **{field: getattr(base, field) + 1})
        assert cache.lookup(other, bs) is None, field
    assert cache.lookup(base, bs * 2) is None
    # A new file under the same name (a new inode) is hashed afresh.
    path.unlink()
    _file(tmp_path)
    assert hash_files([(path, "m")], cache)[0].hashes == _true_hashes(path)


def test_a_file_changed_just_before_it_was_hashed_is_not_kept(tmp_path: Path) -> None:
    """Git's racy-clean rule: a write in the same timestamp tick would leave the key
    unchanged, so a file younger than racy_s is hashed every time."""
    path = _file(tmp_path)
    st = Stat.of(os.stat(path))
    now = max(st.mtime_ns, st.ctime_ns)
    cache = _cache(tmp_path, racy_s=2.0, wall_ns=lambda: now + 1_000_000_000)
    hash_files([(path, "m")], cache)
    assert not cache.folder.exists() or not _entries(cache)
    settled = _cache(tmp_path, racy_s=2.0, wall_ns=lambda: now + 2_000_000_000)
    hash_files([(path, "m")], settled)
    assert settled.lookup(st, block_size(SIZE)) == _true_hashes(path)


def test_a_file_that_changes_while_hashed_is_not_kept(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    before = Stat(1, 2, SIZE, 10, 10)
    after = msgspec.structs.replace(before, ctime_ns=11)
    assert not cache.store(before, after, 10**12, block_size(SIZE), b"\x00" * 32 * 25)
    assert cache.store(before, before, 10**12, block_size(SIZE), b"\x00" * 32 * 25)


def test_small_files_are_not_cached(tmp_path: Path) -> None:
    path, cache = _file(tmp_path, size=4096), _cache(tmp_path, min_bytes=8 * MIB)
    hash_files([(path, "m")], cache)
    assert not cache.folder.exists() or not _entries(cache)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "resealed-junk"])
def test_a_damaged_entry_is_a_miss(tmp_path: Path, damage: str) -> None:
    path, cache = _file(tmp_path), _cache(tmp_path)
    hash_files([(path, "m")], cache)
    [entry] = _entries(cache)
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 1
    elif damage == "truncate":
        del raw[len(raw) - 7 :]
    elif damage == "empty":
        raw = bytearray()
    elif damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    else:  # a valid checksum over bytes that are no entry
        body = b"\x93\x01\x02"
        raw = bytearray(hashlib.sha256(body).digest() + body)
    entry.write_bytes(bytes(raw))
    assert cache.lookup(Stat.of(os.stat(path)), block_size(SIZE)) is None
    assert hash_files([(path, "m")], cache)[0].hashes == _true_hashes(path)


def test_entries_are_private_and_bounded(tmp_path: Path) -> None:
    cache = _cache(tmp_path, max_entries=3)
    paths = [_file(tmp_path, f"f{i}", 200_000) for i in range(5)]
    for p in paths:
        hash_files([(p, p.name)], cache)
    assert stat.S_IMODE(cache.folder.stat().st_mode) == 0o700
    kept = _entries(cache)
    assert len(kept) == 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    assert not list(cache.folder.glob("*.tmp"))
    # Temp files a killed node left: old ones go at the next store, fresh ones stay.
    old, fresh = cache.folder / "a.1.tmp", cache.folder / "b.2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, ns=(0, 0))
    hash_files([(_file(tmp_path, "f5", 200_000), "f5")], cache)
    assert sorted(p.name for p in cache.folder.glob("*.tmp")) == ["b.2.tmp"]


def test_forget_drops_the_entry_and_an_unwritable_folder_costs_only_hashing(
    tmp_path: Path,
) -> None:
    path, cache = _file(tmp_path), _cache(tmp_path)
    hash_files([(path, "m")], cache)
    cache.forget(path)
    assert cache.lookup(Stat.of(os.stat(path)), block_size(SIZE)) is None
    cache.forget(tmp_path / "gone")  # nothing to drop: no error
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    broken = HashCache(blocked / "cache", racy_s=0.0, min_bytes=1)
    assert hash_files([(path, "m")], broken)[0].hashes == _true_hashes(path)


def test_an_entry_names_its_format_version(tmp_path: Path) -> None:
    path, cache = _file(tmp_path), _cache(tmp_path)
    hash_files([(path, "m")], cache)
    [entry_path] = _entries(cache)
    raw = entry_path.read_bytes()
    entry = msgspec.msgpack.decode(raw[DIGEST:], type=Entry)
    future = msgspec.msgpack.encode(msgspec.structs.replace(entry, version=entry.version + 1))
    entry_path.write_bytes(hashlib.sha256(future).digest() + future)
    assert cache.lookup(entry.stat, entry.block_size) is None
