"""The injectable clock. Code never reads global time directly; it takes a Clock.

Also the hybrid logical clock (HLC, after Kulkarni et al. 2014) that orders writes
across devices: a physical part in milliseconds that stays close to wall time, and
a logical counter that keeps every event after everything it has seen.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Final, Protocol

import msgspec

from accord.errors import ClockSkew

log = logging.getLogger(__name__)


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the Unix epoch (for timestamps shown to people and peers)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and deadlines)."""
        ...


class SystemClock:
    """The real clock."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to: for deterministic tests."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 0.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._wall += seconds
        self._monotonic += seconds


MAX_DRIFT_S: Final = 60.0
"""How far a remote timestamp may run ahead of local wall time before it is refused."""

MAX_HLC_WALL_MS: Final = 2**53 - 1  # exact in every msgpack and JSON reader
MAX_HLC_COUNTER: Final = 2**32 - 1


class Hlc(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A hybrid logical timestamp; totally ordered as the tuple (wall_ms, counter)."""

    wall_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_HLC_WALL_MS)]
    counter: Annotated[int, msgspec.Meta(ge=0, le=MAX_HLC_COUNTER)] = 0


HLC_ZERO: Final = Hlc(0, 0)


class HybridClock:
    """A hybrid logical clock over an injected :class:`Clock`.

    ``now()`` stamps a local event, ``update(remote)`` a receive event; both return a
    timestamp greater than every one this clock returned or saw before, even if the
    wall clock steps backwards (the physical part then holds and the counter moves).

    Guard: a remote timestamp more than ``max_drift_s`` ahead of local wall time is
    *refused* with :class:`ClockSkew`, not clamped. Clamping would rewrite a peer's
    timestamp differently on each device and break identical last-writer-wins
    decisions everywhere; refusing only delays the write until our clock catches up
    (sync retries it). The first refusal is logged as a warning, later ones at debug.
    """

    def __init__(self, clock: Clock, max_drift_s: float = MAX_DRIFT_S) -> None:
        if max_drift_s < 0:
            raise ValueError("max_drift_s must be >= 0")
        self._clock = clock
        self._max_drift_ms = int(max_drift_s * 1000)
        self._last = HLC_ZERO
        self._warned = False

    @property
    def last(self) -> Hlc:
        """The greatest timestamp returned or seen so far."""
        return self._last

    def wall_ms(self) -> int:
        """The injected wall clock, in milliseconds (not a timestamp: no tick)."""
        return max(0, int(self._clock.wall() * 1000))

    def monotonic_ms(self) -> int:
        """The injected monotonic clock, in milliseconds: for timeouts, not stamps."""
        return int(self._clock.monotonic() * 1000)

    def now(self) -> Hlc:
        """A timestamp for a local event (a commit)."""
        pt = self.wall_ms()
        last = self._last
        nxt = Hlc(pt, 0) if pt > last.wall_ms else _tick(last.wall_ms, last.counter + 1)
        self._last = nxt
        return nxt

    def check(self, remote: Hlc) -> None:
        """Raise :class:`ClockSkew` if ``remote`` is too far ahead; change nothing."""
        pt = self.wall_ms()
        if remote.wall_ms - pt > self._max_drift_ms:
            ahead = (remote.wall_ms - pt) / 1000
            msg = (
                f"remote timestamp is {ahead:.1f} s ahead of this device's clock "
                f"(allowed {self._max_drift_ms / 1000:g} s): check the clocks of both devices"
            )
            if not self._warned:
                self._warned = True
                log.warning("%s", msg)
            else:
                log.debug("%s", msg)
            raise ClockSkew(msg)

    def update(self, remote: Hlc) -> Hlc:
        """A receive event: the result is greater than ``remote`` and than ``last``."""
        self.check(remote)
        pt = self.wall_ms()
        last = self._last
        wall = max(last.wall_ms, remote.wall_ms, pt)
        if wall == last.wall_ms == remote.wall_ms:
            nxt = _tick(wall, max(last.counter, remote.counter) + 1)
        elif wall == last.wall_ms:
            nxt = _tick(wall, last.counter + 1)
        elif wall == remote.wall_ms:
            nxt = _tick(wall, remote.counter + 1)
        else:
            nxt = Hlc(wall, 0)
        self._last = nxt
        return nxt

    def restore(self, floor: Hlc) -> None:
        """Raise the clock to at least ``floor`` without the guard: for timestamps this
        device persisted itself, so it never goes backwards across a restart."""
        self._last = max(self._last, floor)


def _tick(wall_ms: int, counter: int) -> Hlc:
    # A counter at its bound spills into the physical part: order is kept, and the
    # timestamp stays valid on the wire.
    if counter > MAX_HLC_COUNTER:
        return Hlc(wall_ms + 1, 0)
    return Hlc(wall_ms, counter)
