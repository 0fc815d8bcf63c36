"""Bad input from a peer: a typed error, and stored data neither corrupted nor lost."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.clock import Hlc, HybridClock, ManualClock
from accord.data import (
    COUNTER,
    MAX_MESSAGE_BYTES,
    Batch,
    Op,
    Page,
    Push,
    Replica,
    StaticPeers,
    Summary,
    decode,
    encode,
)
from accord.data.loopback import device_id, pull
from accord.data.merge import Merge
from accord.data.model import DATA_VERSION, MAX_AHEAD, Group, MergeRow
from accord.errors import (
    ClockSkew,
    ForgedOrigin,
    MalformedSync,
    PeerNotAllowed,
    StoreError,
    SyncError,
)

A, B, STRANGER = device_id(0), device_id(1), device_id(9)
NOW_MS = 1_700_000_000_000


class Pair:
    def __init__(self, merge: Merge | None = None) -> None:
        self.clock = ManualClock()
        peers = StaticPeers([A, B])
        self.r = {
            d: Replica.open(
                None, name="s", device_id=d, hlc=HybridClock(self.clock), peers=peers, merge=merge
            )
            for d in (A, B)
        }
        self.a, self.b = self.r[A], self.r[B]

    def snapshot(self) -> tuple[object, ...]:
        b = self.b
        return (b.scan(), b.version_vector(), [b.row(k) for k in ("k", "j", "x")])

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    p.b.put("k", b"mine")
    p.a.put("j", b"theirs")
    pull(p.r, B, A)
    yield p
    p.close()


def batch(origin: str = A, seq: int = 2, *ops: Op, hlc: Hlc = Hlc(NOW_MS, 9)) -> Batch:
    return Batch(origin, seq, hlc, ops or (Op("x", b"1"),))


def push(*batches: Batch, store: str = "s", v: int = DATA_VERSION) -> Push:
    return Push(v, store, batches)


def page(
    *groups: Group, rows: tuple[MergeRow, ...] = (), ids: tuple[str, ...] = (A,), store: str = "s"
) -> Page:
    return Page(DATA_VERSION, store, 1, "", 0, 0, True, {A: 2}, ids, groups, rows)


def group(origin: int = 0, hlc: Hlc = Hlc(NOW_MS, 0), *ops: Op) -> Group:
    return Group(origin, 2, hlc, ops or (Op("x", b"1"),))


def merge_row(
    value: bytes | None = b"1",
    origin: int = 0,
    dots: tuple[tuple[int, int], ...] = ((0, 2),),
    ns: int = 0,
) -> MergeRow:
    return MergeRow(ns, "x", value, Hlc(NOW_MS, 0), origin, dots)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_malformed_sync(data: bytes) -> None:
    with contextlib.suppress(MalformedSync):
        decode(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_messages_never_corrupt_the_store(data: st.DataObject) -> None:
    p = Pair()
    try:
        p.b.put("k", b"mine")
        p.a.put("j", b"theirs")
        p.a.take_pushes()
        p.a.put("x", b"new")
        p.a.delete("j")
        message = data.draw(
            st.sampled_from(
                [
                    p.a.take_pushes()[0],
                    p.a.receive(B, p.b.pull_from(A))[0],
                    p.a.summary(),
                ]
            )
        )
        raw = bytearray(encode(message))
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(1, len(raw)))
        before = p.snapshot()
        try:
            p.b.receive_bytes(A, bytes(raw[:cut]))
        except SyncError:
            assert p.snapshot() == before
        # Whatever happened, the store still works and still syncs.
        p.b.put("after", b"ok")
        pull(p.r, B, A)
        pull(p.r, A, B)
        assert p.a.get("after") == b"ok"
    finally:
        p.close()


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: push(batch(), store="other"), MalformedSync),
        (lambda: push(batch(), v=DATA_VERSION + 1), MalformedSync),
        (lambda: push(batch(B)), ForgedOrigin),  # B's write, sent by A
        (lambda: push(batch(A, 2, Op("x", b"1"), Op("x", b"2"))), MalformedSync),
        (lambda: push(batch(A, 2, Op("é" * 1000, b"1"))), MalformedSync),
        (lambda: push(batch(hlc=Hlc(NOW_MS + 3_600_000, 0))), ClockSkew),
        # several dots (a merge row) in a last-writer-wins store
        (lambda: page(rows=(merge_row(dots=((0, 2), (1, 2))),), ids=(A, B)), MalformedSync),
        (lambda: page(rows=(merge_row(dots=((1, 2),)),), ids=(A, B)), MalformedSync),
        (lambda: page(group(origin=1)), MalformedSync),  # beyond the page's ids
        (lambda: page(group(0, Hlc(NOW_MS, 0), Op("x", b"1"), Op("x", b"2"))), MalformedSync),
        # a key of 1,000 characters, 2,000 bytes of UTF-8: beyond the limit only in bytes
        (lambda: page(group(0, Hlc(NOW_MS, 0), Op("é" * 1000, b"1"))), MalformedSync),
        (lambda: page(group(hlc=Hlc(NOW_MS + 3_600_000, 0))), ClockSkew),
    ],
)
def test_bad_messages_raise_typed_errors_and_change_nothing(
    pair: Pair, make: object, error: type[SyncError]
) -> None:
    assert callable(make)
    message = make()
    before = pair.snapshot()
    with pytest.raises(error):
        pair.b.receive(A, message)
    assert pair.snapshot() == before
    with pytest.raises(SyncError):  # the same through the bytes path
        pair.b.receive_bytes(A, encode(message))
    assert pair.snapshot() == before


def test_wire_level_bounds(pair: Pair) -> None:
    huge = b"\x00" * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(MalformedSync, match="exceeds"):
        decode(huge)
    too_big_value = msgspec.msgpack.encode(
        {
            "t": "push",
            "v": DATA_VERSION,
            "store": "s",
            "batches": [[A, 2, [NOW_MS, 0], [["x", bytes(5 << 20)]]]],
        }
    )
    with pytest.raises(MalformedSync):
        decode(too_big_value)
    v = DATA_VERSION
    wrong_type = msgspec.msgpack.encode({"t": "summary", "v": v, "store": "s", "vv": {A: "x"}})
    with pytest.raises(MalformedSync):
        decode(wrong_type)
    bad_device = msgspec.msgpack.encode({"t": "summary", "v": v, "store": "s", "vv": {"Z": 1}})
    with pytest.raises(MalformedSync):
        decode(bad_device)
    assert isinstance(decode(encode(Summary(v, "s", {A: 1}))), Summary)
    greedy = msgspec.msgpack.encode(
        {"t": "pull", "v": v, "store": "s", "vv": {}, "session": 1, "ahead": MAX_AHEAD + 1}
    )
    with pytest.raises(MalformedSync):
        decode(greedy)  # a pull may ask for at most MAX_AHEAD pages ahead
    old_version = msgspec.msgpack.encode({"t": "summary", "v": 1, "store": "s", "vv": {}})
    with pytest.raises(MalformedSync, match="version 1"):
        decode(old_version)


def test_a_future_clock_is_accepted_once_ours_catches_up(pair: Pair) -> None:
    early = push(batch(hlc=Hlc(NOW_MS + 120_000, 0)))
    with pytest.raises(ClockSkew):
        pair.b.receive(A, early)
    pair.clock.advance(61)
    assert pair.b.receive(A, early) == []
    assert pair.b.get("x") == b"1"


def test_strangers_are_refused(pair: Pair) -> None:
    with pytest.raises(PeerNotAllowed):
        pair.b.receive(STRANGER, pair.a.summary())


def test_merge_stores_refuse_invalid_states_and_deletes() -> None:
    p = Pair(merge=COUNTER)
    try:
        p.b.update("k", lambda s: COUNTER.add(s, B, 1))
        before = p.snapshot()
        for bad in (
            push(batch(A, 1, Op("k", b"\xc1"))),
            push(batch(A, 1, Op("k", None))),
            page(rows=(merge_row(b"junk"),)),
            page(rows=(merge_row(None),)),
            page(group()),  # a last-writer-wins group in a merge store
        ):
            with pytest.raises(MalformedSync):
                p.b.receive(A, bad)
            assert p.snapshot() == before
    finally:
        p.close()


def test_errors_are_store_errors() -> None:
    assert issubclass(SyncError, StoreError)
