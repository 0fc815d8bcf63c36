"""A deterministic thermal model of a refrigerator's cabinets.

Each cabinet warms toward the room by Newton's law, much faster while its door is open,
and has its own compressor with hysteresis that pulls it down at a fixed rate. Time is
injected: the model never reads a clock. It integrates in fixed steps counted from the
start time, so the readings depend only on the times passed in, not on how often
``advance`` is called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import msgspec

__all__ = [
    "AMBIENT_C",
    "CabinetReading",
    "CabinetSpec",
    "FridgeModel",
    "SetpointOutOfRange",
    "UnknownCabinet",
]

AMBIENT_C = 22.0
"""Default room temperature."""

STEP_S = 1.0
"""Integration step, in seconds."""

LEAK_CLOSED_PER_S = 0.0002
"""Newton coefficient with the door shut: a 4 °C fridge in a 22 °C room gains ~0.2 °C/min."""

LEAK_OPEN_PER_S = 0.004
"""Newton coefficient with the door open: the same fridge gains ~4 °C/min."""

COOLING_C_PER_S = 0.02
"""How fast a running compressor pulls a cabinet down (1.2 °C/min); beats the closed leak
even for a freezer at -24 °C, so every reachable setpoint is held."""

HYSTERESIS_C = 0.5
"""The compressor starts above setpoint + this and stops below setpoint - this."""


class CabinetSpec(Protocol):
    """What the model needs of a cabinet; :class:`accord.profile.Cabinet` fits."""

    @property
    def name(self) -> str: ...
    @property
    def setpoint_c(self) -> float: ...
    @property
    def setpoint_min_c(self) -> float: ...
    @property
    def setpoint_max_c(self) -> float: ...


class CabinetReading(msgspec.Struct, frozen=True):
    name: str
    temperature_c: float
    """Rounded to 0.1 °C, as a sensor would report it."""
    setpoint_c: float
    door_open: bool
    compressor_on: bool


class SetpointOutOfRange(ValueError):
    """A setpoint outside the cabinet's allowed range."""

    def __init__(self, cabinet: str, value: float, minimum: float, maximum: float) -> None:
        super().__init__(
            f"setpoint {value:g} °C for cabinet {cabinet!r} is outside its allowed range "
            f"{minimum:g}..{maximum:g} °C"
        )
        self.cabinet = cabinet
        self.value = value
        self.minimum = minimum
        self.maximum = maximum


class UnknownCabinet(KeyError):
    """A cabinet name this refrigerator does not have."""

    def __init__(self, cabinet: str, known: Sequence[str]) -> None:
        super().__init__(cabinet)
        self.cabinet = cabinet
        self.known = tuple(known)

    def __str__(self) -> str:
        # KeyError would show only the repr of the key; say what exists instead.
        return f"no cabinet {self.cabinet!r}; this refrigerator has: {', '.join(self.known)}"


class _Cabinet:
    """The mutable state of one cabinet."""

    def __init__(self, spec: CabinetSpec) -> None:
        self.name = spec.name
        self.minimum = spec.setpoint_min_c
        self.maximum = spec.setpoint_max_c
        self.setpoint = spec.setpoint_c
        self.temperature = spec.setpoint_c
        self.door_open = False
        self.compressor_on = False

    def step(self, ambient: float, dt: float) -> None:
        leak = LEAK_OPEN_PER_S if self.door_open else LEAK_CLOSED_PER_S
        self.temperature += leak * (ambient - self.temperature) * dt
        if self.compressor_on:
            self.temperature -= COOLING_C_PER_S * dt
        if self.temperature > self.setpoint + HYSTERESIS_C:
            self.compressor_on = True
        elif self.temperature < self.setpoint - HYSTERESIS_C:
            self.compressor_on = False


class FridgeModel:
    """Cabinets of one refrigerator, each starting at its setpoint with the door shut.

    ``advance`` integrates in whole steps of :data:`STEP_S` from the start time. Setpoint
    and door changes apply from the model's current time, so call ``advance(now)`` first.
    """

    def __init__(
        self, cabinets: Sequence[CabinetSpec], *, ambient_c: float = AMBIENT_C, now: float = 0.0
    ) -> None:
        _check_time(now)
        names = [c.name for c in cabinets]
        if len(set(names)) != len(names):
            raise ValueError(f"cabinet names must be unique, got {names}")
        self._cabinets = {c.name: _Cabinet(c) for c in cabinets}
        self._ambient = ambient_c
        self._start = now
        self._steps = 0

    def advance(self, now: float) -> None:
        """Integrate up to ``now``; a time before the last one is ignored.

        The cost grows with the time skipped: a simulated day takes about 0.1 s.
        """
        _check_time(now)
        # Count steps from the start rather than adding up intervals, so one long call
        # and many short ones land on exactly the same steps.
        target = math.floor((now - self._start) / STEP_S)
        while self._steps < target:
            for cabinet in self._cabinets.values():
                cabinet.step(self._ambient, STEP_S)
            self._steps += 1

    def set_setpoint(self, cabinet: str, celsius: float) -> None:
        state = self._cabinet(cabinet)
        if not state.minimum <= celsius <= state.maximum:  # also refuses NaN
            raise SetpointOutOfRange(cabinet, celsius, state.minimum, state.maximum)
        state.setpoint = celsius

    def set_door(self, cabinet: str, open: bool) -> None:
        self._cabinet(cabinet).door_open = open

    def readings(self) -> list[CabinetReading]:
        return [
            CabinetReading(
                name=c.name,
                temperature_c=round(c.temperature, 1),
                setpoint_c=c.setpoint,
                door_open=c.door_open,
                compressor_on=c.compressor_on,
            )
            for c in self._cabinets.values()
        ]

    def _cabinet(self, name: str) -> _Cabinet:
        try:
            return self._cabinets[name]
        except KeyError:
            raise UnknownCabinet(name, list(self._cabinets)) from None


def _check_time(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"time must be a finite number of seconds, got {now!r}")
