"""The shipped merges are semilattice joins: commutative, associative, idempotent,
and canonical (equal states are equal bytes)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.clock import Hlc
from accord.data import COUNTER, SET_UNION
from accord.data.loopback import device_id
from accord.data.merge import Merge, lww_wins

DEVICES = [device_id(i) for i in range(4)]


@st.composite
def counter_states(draw: st.DrawFn) -> bytes:
    state: bytes | None = None
    for who, amount in draw(
        st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(-50, 50)), max_size=6)
    ):
        delta = COUNTER.add(state, who, amount)
        state = COUNTER.join(state, delta) if state else COUNTER.join(delta, delta)
    return state or COUNTER.join(COUNTER.add(None, DEVICES[0], 0), COUNTER.add(None, DEVICES[0], 0))


set_states = st.lists(st.binary(max_size=4), max_size=6).map(lambda xs: SET_UNION.of(*xs))


def laws(merge: Merge, a: bytes, b: bytes, c: bytes) -> None:
    join = merge.join
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == join(join(a, a), a)
    assert join(join(a, b), b) == join(a, b)
    merge.validate(join(a, b))


@settings(max_examples=150, deadline=None)
@given(counter_states(), counter_states(), counter_states())
def test_counter_is_a_join(a: bytes, b: bytes, c: bytes) -> None:
    laws(COUNTER, a, b, c)
    assert COUNTER.join(a, a) == a  # canonical states are fixed points


@settings(max_examples=150, deadline=None)
@given(set_states, set_states, set_states)
def test_set_union_is_a_join(a: bytes, b: bytes, c: bytes) -> None:
    laws(SET_UNION, a, b, c)
    assert SET_UNION.join(a, a) == a
    assert SET_UNION.items(SET_UNION.join(a, b)) == SET_UNION.items(a) | SET_UNION.items(b)


def test_counter_counts_up_and_down_per_device() -> None:
    a, b = DEVICES[:2]
    s1 = COUNTER.add(None, a, 5)
    s2 = COUNTER.join(s1, COUNTER.add(s1, a, -2))
    s3 = COUNTER.join(s2, COUNTER.add(None, b, 10))
    assert COUNTER.value(s3) == 13
    assert COUNTER.value(None) == 0
    # A device's later contribution contains its earlier ones: re-joining old ones is a no-op.
    assert COUNTER.join(s3, s1) == s3


@pytest.mark.parametrize(
    ("merge", "bad"),
    [
        (COUNTER, b"\xc1"),
        (COUNTER, msgspec.msgpack.encode({"not-a-device": [1, 2]})),
        (COUNTER, msgspec.msgpack.encode({DEVICES[0]: [-1, 0]})),
        (SET_UNION, msgspec.msgpack.encode([b"b", b"a"])),  # not canonical
        (SET_UNION, msgspec.msgpack.encode([b"a", b"a"])),
        (SET_UNION, msgspec.msgpack.encode(["text"])),
    ],
)
def test_validate_rejects_what_is_not_a_state(merge: Merge, bad: bytes) -> None:
    with pytest.raises(ValueError, match="not"):
        merge.validate(bad)


def test_lww_ties_break_by_device_id() -> None:
    t = Hlc(10, 0)
    assert lww_wins(Hlc(10, 1), DEVICES[0], t, DEVICES[1])
    assert lww_wins(t, DEVICES[1], t, DEVICES[0])
    assert not lww_wins(t, DEVICES[0], t, DEVICES[1])
    assert not lww_wins(t, DEVICES[0], t, DEVICES[0])  # the same write: no change
