"""The hybrid logical clock: monotonic, after what it saw, guarded against skew."""

from __future__ import annotations

import logging

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.clock import (
    MAX_DRIFT_S,
    MAX_HLC_COUNTER,
    Hlc,
    HybridClock,
    ManualClock,
)
from accord.errors import ClockSkew, SyncError

START_S = 1_700_000_000.0


class SteppingClock:
    """A wall clock that can step backwards, as NTP may make it."""

    def __init__(self, wall: float = START_S) -> None:
        self.now = wall

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return 0.0


actions = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.just(0), st.just(0)),
        # remote timestamps around local time: behind, equal, ahead within and past the guard
        st.tuples(st.just("update"), st.integers(-120_000, 120_000), st.integers(0, 5)),
        st.tuples(st.just("wall"), st.integers(-5_000, 5_000), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_every_timestamp_is_after_everything_before(steps: list[tuple[str, int, int]]) -> None:
    wall = SteppingClock()
    clock = HybridClock(wall, max_drift_s=MAX_DRIFT_S)
    previous = clock.last
    for kind, delta, counter in steps:
        if kind == "wall":
            wall.now += delta / 1000  # may go backwards
            continue
        pt_ms = int(wall.now * 1000)
        if kind == "now":
            ts = clock.now()
        else:
            remote = Hlc(pt_ms + delta, counter)
            if delta > MAX_DRIFT_S * 1000:
                with pytest.raises(ClockSkew):
                    clock.update(remote)
                assert clock.last == previous  # refused: nothing moved
                continue
            ts = clock.update(remote)
            assert ts > remote
        assert ts > previous
        assert clock.last == ts
        # The physical part never lags the wall clock and never runs off on its own.
        assert ts.wall_ms >= pt_ms
        previous = ts


def test_wall_clock_stepping_back_never_moves_the_clock_back() -> None:
    wall = SteppingClock()
    clock = HybridClock(wall)
    before = clock.now()
    wall.now -= 30
    after = [clock.now() for _ in range(3)]
    assert before < after[0] < after[1] < after[2]
    assert all(ts.wall_ms == before.wall_ms for ts in after)
    wall.now += 60  # once the wall clock passes it again, the counter resets
    assert clock.now() == Hlc(int(wall.now * 1000), 0)


def test_update_is_after_both_clocks() -> None:
    clock = HybridClock(ManualClock(START_S))
    local = clock.now()
    remote = Hlc(local.wall_ms + 500, 7)
    got = clock.update(remote)
    assert got > remote
    assert got > local
    assert got == Hlc(remote.wall_ms, 8)
    assert clock.now() > got


def test_skew_is_refused_with_a_typed_error_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = HybridClock(ManualClock(START_S), max_drift_s=10)
    ahead = Hlc(int(START_S * 1000) + 10_001, 0)
    with caplog.at_level(logging.DEBUG, logger="accord.clock"):
        for _ in range(3):
            with pytest.raises(ClockSkew, match="ahead of this device's clock"):
                clock.update(ahead)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert issubclass(ClockSkew, SyncError)
    # Exactly at the bound is fine.
    assert (
        clock.update(Hlc(int(START_S * 1000) + 10_000, 0)).wall_ms == int(START_S * 1000) + 10_000
    )


def test_restore_is_unguarded_and_only_raises_the_clock() -> None:
    clock = HybridClock(ManualClock(START_S), max_drift_s=1)
    far = Hlc(int(START_S * 1000) + 3_600_000, 5)
    clock.restore(far)  # our own persisted timestamp: no guard
    clock.restore(Hlc(0, 0))
    assert clock.last == far
    assert clock.now() == Hlc(far.wall_ms, 6)


def test_counter_at_its_bound_spills_into_the_physical_part() -> None:
    clock = HybridClock(ManualClock(START_S))
    top = Hlc(int(START_S * 1000), MAX_HLC_COUNTER)
    clock.restore(top)
    nxt = clock.now()
    assert nxt == Hlc(top.wall_ms + 1, 0)
    assert nxt > top


def test_hlc_orders_as_a_tuple_and_round_trips() -> None:
    assert Hlc(1, 5) < Hlc(2, 0) < Hlc(2, 1)
    data = msgspec.msgpack.encode(Hlc(3, 4))
    assert msgspec.msgpack.decode(data, type=Hlc) == Hlc(3, 4)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(msgspec.msgpack.encode([-1, 0]), type=Hlc)
