"""A store on one device: reads, writes, batches, limits, namespaces, watch, files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import (
    COUNTER,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    SET_UNION,
    ChangeSet,
    Entry,
    Op,
    Replica,
    StaticPeers,
    Stores,
)
from accord.data.loopback import device_id
from accord.data.merge import Merge
from accord.data.rules import StoreKind
from accord.errors import (
    BatchTooLarge,
    InvalidKey,
    KeyTooLong,
    ReadOnlyNamespace,
    StoreError,
    StoreMismatch,
    UnknownStore,
    UnsupportedOperation,
    ValueTooLarge,
)

A, B = device_id(0), device_id(1)


def open_store(
    path: Path | None = None,
    *,
    device: str = A,
    kind: StoreKind = "shared",
    merge: Merge | None = None,
    clock: ManualClock | None = None,
) -> Replica:
    return Replica.open(
        path,
        name="s",
        device_id=device,
        hlc=HybridClock(clock or ManualClock()),
        peers=StaticPeers([A, B]),
        kind=kind,
        merge=merge,
    )


@pytest.fixture
def store() -> Iterator[Replica]:
    replica = open_store()
    yield replica
    replica.close()


def test_put_get_delete_scan(store: Replica) -> None:
    store.put("fruit/apple", b"red")
    store.put("fruit/banana", b"yellow")
    store.put("veg/leek", b"green")
    assert store.get("fruit/apple") == b"red"
    assert store.get("nope") is None
    assert [e.key for e in store.scan("fruit/")] == ["fruit/apple", "fruit/banana"]
    store.delete("fruit/apple")
    assert store.get("fruit/apple") is None
    assert store.scan("fruit/") == [Entry("", "fruit/banana", b"yellow")]
    assert store.tombstones() == 1
    assert [e.key for e in store.scan(limit=1)] == ["fruit/banana"]


def test_scan_prefixes_compare_bytes_of_utf8(store: Replica) -> None:
    for key in ["a", "a\x00", "ab", "a\uffff", "a\U0010ffff", "b", "é", "éa"]:
        store.put(key, key.encode())
    assert {e.key for e in store.scan("a")} == {"a", "a\x00", "ab", "a\uffff", "a\U0010ffff"}
    assert {e.key for e in store.scan("é")} == {"é", "éa"}
    assert len(store.scan("")) == 8


def test_a_batch_commits_atomically_as_one_seq(store: Replica) -> None:
    with store.batch() as b:
        b.put("x", b"1")
        b.put("y", b"2")
        b.delete("x")  # the last write of a key wins inside a batch
    assert b.committed is not None
    assert b.committed.seq == 1
    assert store.get("x") is None
    assert store.get("y") == b"2"
    assert store.version_vector() == {A: 1}

    def failing_block() -> None:
        with store.batch() as b2:
            b2.put("z", b"3")
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError):
        failing_block()
    assert store.get("z") is None
    assert store.commit([]) is None


def test_a_failing_batch_leaves_nothing(store: Replica) -> None:
    with pytest.raises(ValueTooLarge):
        store.commit([Op("a", b"1"), Op("b", b"x" * (MAX_VALUE_BYTES + 1))])
    assert store.get("a") is None
    assert store.version_vector() == {}


def test_limits_have_typed_errors(store: Replica) -> None:
    store.put("k" * MAX_KEY_BYTES, b"")
    store.put("v", b"x" * MAX_VALUE_BYTES)
    with pytest.raises(KeyTooLong, match="1024"):
        store.put("k" * (MAX_KEY_BYTES + 1), b"")
    with pytest.raises(KeyTooLong):
        store.put("é" * 513, b"")  # 1026 bytes of UTF-8
    with pytest.raises(InvalidKey):
        store.put("", b"")
    with pytest.raises(InvalidKey):
        store.put("\ud800", b"")
    with pytest.raises(ValueTooLarge, match="split"):
        store.put("v", b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(StoreError):
        store.put("v", "text")  # type: ignore[arg-type]
    with pytest.raises(BatchTooLarge):
        store.commit(Op(f"k{i}", b"") for i in range(1025))
    with pytest.raises(BatchTooLarge):
        store.commit([Op(f"k{i}", b"x" * MAX_VALUE_BYTES) for i in range(3)])


def test_per_device_namespaces() -> None:
    mine = open_store(kind="per-device")
    try:
        mine.put("name", b"laptop")
        assert mine.get("name") == b"laptop"
        assert mine.get("name", device=A) == b"laptop"
        assert mine.get("name", device=B) is None
        assert mine.scan() == [Entry(A, "name", b"laptop")]
        with pytest.raises(ReadOnlyNamespace, match="written only by"):
            mine.put("name", b"x", device=B)
        with pytest.raises(ReadOnlyNamespace):
            mine.delete("name", device=B)
        mine.put("other", b"ok", device=A)
    finally:
        mine.close()


def test_shared_store_has_no_namespaces(store: Replica) -> None:
    with pytest.raises(StoreError, match="shared"):
        store.get("k", device=B)
    with pytest.raises(StoreError, match="shared"):
        store.put("k", b"", device=B)


def test_counter_and_set_union_stores() -> None:
    hits = open_store(merge=COUNTER)
    tags = open_store(merge=SET_UNION)
    try:
        for amount in (5, -2, 10):
            hits.update("door", lambda s, n=amount: COUNTER.add(s, A, n))  # type: ignore[misc]
        assert COUNTER.value(hits.get("door")) == 13
        tags.put("colours", SET_UNION.of(b"red"))
        tags.put("colours", SET_UNION.of(b"blue", b"red"))
        assert SET_UNION.items(tags.get("colours")) == {b"red", b"blue"}
        with pytest.raises(UnsupportedOperation, match="no deletes"):
            tags.delete("colours")
        with pytest.raises(StoreError, match="not a valid set-union state"):
            tags.put("colours", b"\xc1garbage")
        # Two contributions to one key in a batch are joined.
        tags.commit([Op("c", SET_UNION.of(b"a")), Op("c", SET_UNION.of(b"b"))])
        assert SET_UNION.items(tags.get("c")) == {b"a", b"b"}
    finally:
        hits.close()
        tags.close()


def test_watch_gets_each_transaction_together(store: Replica) -> None:
    seen: list[ChangeSet] = []
    fruit: list[ChangeSet] = []
    undo = store.subscribe(seen.append)
    store.subscribe(fruit.append, "fruit/")
    with store.batch() as b:
        b.put("fruit/apple", b"1")
        b.put("veg/leek", b"2")
    store.delete("never-written")  # a tombstone over nothing changes nothing visible
    assert len(seen) == 1
    assert seen[0].source == "local"
    assert seen[0].peer == A
    assert [(c.key, c.value, c.origin) for c in seen[0].changes] == [
        ("fruit/apple", b"1", A),
        ("veg/leek", b"2", A),
    ]
    assert [c.key for c in fruit[0].changes] == ["fruit/apple"]
    undo()
    undo()
    store.put("veg/leek", b"3")
    assert len(seen) == 1
    assert len(fruit) == 1


def test_a_failing_watcher_is_logged_not_raised(
    store: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: ChangeSet) -> None:
        raise ValueError("boom")

    store.subscribe(broken)
    with caplog.at_level(logging.ERROR):
        store.put("k", b"v")
    assert store.get("k") == b"v"
    assert "watcher of store s failed" in caplog.text


def test_reopen_keeps_data_seq_and_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    first = open_store(tmp_path / "s.db", clock=clock)
    batch = first.put("k", b"v")
    first.close()
    clock_back = ManualClock(clock.wall() - 3600)  # the wall clock went back an hour
    again = Replica.open(
        tmp_path / "s.db",
        name="s",
        device_id=A,
        hlc=HybridClock(clock_back),
        peers=StaticPeers([A]),
    )
    try:
        assert again.get("k") == b"v"
        nxt = again.put("k2", b"w")
        assert nxt.seq == batch.seq + 1
        assert nxt.hlc > batch.hlc
    finally:
        again.close()


def test_reopening_with_other_settings_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path / "s.db").close()
    with pytest.raises(StoreMismatch, match="open it with those settings"):
        open_store(tmp_path / "s.db", merge=COUNTER)
    with pytest.raises(StoreMismatch, match="another device"):
        open_store(tmp_path / "s.db", device=B)
    open_store(tmp_path / "s.db").close()


def test_stores_registry(tmp_path: Path) -> None:
    stores = Stores(
        tmp_path / "data",
        device_id=A,
        hlc=HybridClock(ManualClock()),
        peers=StaticPeers([A]),
        synchronous="NORMAL",
    )
    try:
        notes = stores.open("notes", label="S2")
        assert stores.open("notes", label="S2") is notes
        with pytest.raises(StoreMismatch):
            stores.open("notes", label="S3")
        stores.open("hits", merge=COUNTER)
        assert stores.get("notes") is notes
        with pytest.raises(UnknownStore, match="no store named 'nope'"):
            stores.get("nope")
        with pytest.raises(StoreError, match="invalid store name"):
            stores.open("../escape")
        assert stores.names() == ["hits", "notes"]
        assert stores.on_disk() == ["hits", "notes"]
        assert (tmp_path / "data" / "notes.kv.sqlite").is_file()
    finally:
        stores.close()


def test_a_file_that_is_not_a_store_is_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bad\.db"):
        open_store(bad)


def test_the_data_package_exports_what_it_lists() -> None:
    import accord.data

    for name in accord.data.__all__:
        assert hasattr(accord.data, name), name
