"""Simulated drivers: deterministic hardware for `accord sim`, tests and demos.

Each driver is built from the device's profile and reads time only from the
injected clock, so two runs with the same clock see the same readings.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator

from accord.clock import Clock
from accord.errors import HardwareError
from accord.hardware.jpeg import TestPattern, render
from accord.hardware.messages import (
    BatteryStatus,
    CameraInfo,
    SensorReadings,
    Setpoint,
    Shown,
    Sound,
)
from accord.hardware.thermal import FridgeModel, SetpointOutOfRange, UnknownCabinet
from accord.profile import Profile

CHUNK = 256 * 1024  # capture stream item: well under the RPC item limit
# An image to show travels in one call, whose parameters are at most 1 MiB
# (rpc.messages.MAX_PARAMS), base64 text when it comes from the CLI: 640 KiB fits both.
MAX_IMAGE_BYTES = 640 * 1024
DRAIN_PCT_PER_HOUR = 4.0
HISTORY = 100


def full_resolution(megapixels: float) -> tuple[int, int]:
    """The 4:3 frame of a sensor with this many megapixels (even sides)."""
    width = int(math.sqrt(megapixels * 1e6 * 4 / 3)) // 2 * 2
    return min(width, 65534), min(width * 3 // 4 // 2 * 2, 65534)


class SimBattery:
    """Starts at a level derived from the device id, drains slowly unless on mains."""

    driver = "simulated"

    def __init__(self, profile: Profile, device_id: str, clock: Clock) -> None:
        assert profile.hardware.battery is not None
        self._capacity = profile.hardware.battery.capacity_mah
        self._mains = profile.power == "mains"
        self._clock = clock
        self._start = clock.monotonic()
        self._level = 55.0 + hashlib.sha256(device_id.encode()).digest()[0] % 40

    def status(self) -> BatteryStatus:
        hours = (self._clock.monotonic() - self._start) / 3600
        if self._mains:
            level = min(100.0, self._level + 20 * hours)
        else:
            level = max(5.0, self._level - DRAIN_PCT_PER_HOUR * hours)
        return BatteryStatus(round(level, 1), self._mains and level < 100, self._capacity, "sim")


class SimCamera:
    """Renders a test card at any resolution up to each camera's megapixels."""

    driver = "simulated"

    def __init__(self, profile: Profile, label: str) -> None:
        self._label = label
        self._cameras = []
        for cam in profile.hardware.cameras:
            w, h = full_resolution(cam.megapixels)
            self._cameras.append(CameraInfo(cam.position, cam.megapixels, w, h))

    def cameras(self) -> list[CameraInfo]:
        return list(self._cameras)

    def pick(self, position: str) -> CameraInfo:
        """The camera at ``position``; "" for the main one: the rear camera, else the
        one with the most megapixels (so a device with one camera needs no name)."""
        if not position and self._cameras:
            rear = [c for c in self._cameras if c.position == "rear"]
            return rear[0] if rear else max(self._cameras, key=lambda c: c.megapixels)
        for cam in self._cameras:
            if cam.position == position:
                return cam
        known = ", ".join(c.position for c in self._cameras) or "none"
        raise HardwareError(f"no {position!r} camera here; cameras: {known}")

    def frame_size(self, cam: CameraInfo, width: int, height: int) -> tuple[int, int]:
        """The requested size, 0 meaning "full" (keeping 4:3 when one side is given)."""
        if width == 0 and height == 0:
            return cam.max_width, cam.max_height
        if width == 0:
            width = max(1, height * 4 // 3)
        if height == 0:
            height = max(1, width * 3 // 4)
        if width * height > cam.megapixels * 1e6 * 1.001 or width > 65535 or height > 65535:
            raise HardwareError(
                f"{width}x{height} is more than the {cam.megapixels:g} MP {cam.position} "
                f"camera gives; at most {cam.max_width}x{cam.max_height}"
            )
        return width, height

    def capture(self, cam: CameraInfo, width: int, height: int) -> tuple[int, Iterator[bytes]]:
        """(total bytes, the JPEG in chunks), rendered as it is sent."""
        pattern = TestPattern(width, height, label=f"{self._label} {cam.position}")
        return pattern.total_bytes, pattern.chunks(CHUNK)

    def frame(self, cam: CameraInfo, width: int, height: int, n: int) -> bytes:
        return render(width, height, frame=n)


def image_type(data: bytes) -> str:
    if len(data) > MAX_IMAGE_BYTES:
        raise HardwareError(
            f"an image to show is at most {MAX_IMAGE_BYTES} bytes; this one is {len(data)}"
        )
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    raise HardwareError("an image to show must be JPEG or PNG")


class SimDisplay:
    """Keeps what it was asked to show, for the API (and later the dashboard)."""

    driver = "simulated"

    def __init__(self, profile: Profile, clock: Clock) -> None:
        biggest = max(profile.hardware.displays, key=lambda d: d.diagonal_in)
        self.resolution = (int(biggest.resolution[0]), int(biggest.resolution[1]))
        self._current = Shown("nothing", at=clock.wall(), resolution=self.resolution)

    def show(self, shown: Shown) -> None:
        self._current = shown

    def current(self) -> Shown:
        return self._current


class SimSpeaker:
    """Records what it plays (the most recent HISTORY sounds)."""

    driver = "simulated"

    def __init__(self) -> None:
        self._played: deque[Sound] = deque(maxlen=HISTORY)
        self.ringing: Sound | None = None  # find my device: rings until stopped

    def play(self, sound: Sound) -> None:
        self._played.append(sound)

    def ring(self, sound: Sound) -> None:
        if self.ringing is None:  # ringing again changes nothing
            self.ringing = sound
            self._played.append(sound)

    def stop_ring(self, sound: Sound) -> bool:
        was, self.ringing = self.ringing, None
        if was is not None:
            self._played.append(sound)
        return was is not None

    def history(self) -> list[Sound]:
        return list(self._played)


class SimSensors:
    """The refrigerator's cabinets (a thermal model) and doors, and a phone's motion and
    light sensors as smooth functions of time."""

    driver = "simulated"

    def __init__(self, profile: Profile, clock: Clock) -> None:
        hw = profile.hardware
        self._clock = clock
        self._fridge = FridgeModel(hw.cabinets, now=clock.monotonic()) if hw.cabinets else None
        self._specs = {c.name: c for c in hw.cabinets}
        self._doors = dict.fromkeys(hw.door_sensor.doors, False) if hw.door_sensor else {}
        self._kinds = list(hw.sensors.kinds) if hw.sensors else []

    def read(self) -> SensorReadings:
        now = self._clock.monotonic()
        cabinets = []
        if self._fridge is not None:
            self._fridge.advance(now)
            cabinets = self._fridge.readings()
        values = {k: _synthetic(k, now) for k in self._kinds}
        return SensorReadings(self._clock.wall(), cabinets, dict(self._doors), values)

    def set_door(self, door: str, is_open: bool) -> None:
        if door not in self._doors:
            known = ", ".join(self._doors) or "none"
            raise HardwareError(f"no door {door!r} here; doors: {known}")
        self._doors[door] = is_open
        if self._fridge is not None and door in self._specs:
            self._fridge.advance(self._clock.monotonic())
            self._fridge.set_door(door, is_open)

    def setpoints(self) -> list[Setpoint]:
        readings = {r.name: r for r in self._fridge.readings()} if self._fridge else {}
        return [
            Setpoint(name, readings[name].setpoint_c, spec.setpoint_min_c, spec.setpoint_max_c)
            for name, spec in self._specs.items()
        ]

    def set_setpoint(self, cabinet: str, celsius: float) -> Setpoint:
        if self._fridge is None:
            raise HardwareError("this device has no temperature-controlled cabinets")
        self._fridge.advance(self._clock.monotonic())
        try:
            self._fridge.set_setpoint(cabinet, celsius)
        except (SetpointOutOfRange, UnknownCabinet) as exc:
            raise HardwareError(str(exc)) from None
        spec = self._specs[cabinet]
        return Setpoint(cabinet, celsius, spec.setpoint_min_c, spec.setpoint_max_c)


def _synthetic(kind: str, t: float) -> float:
    """A deterministic, slowly varying reading for a sensor kind."""
    phase = int.from_bytes(hashlib.sha256(kind.encode()).digest()[:2], "big") / 65535
    base = {"ambient-light": 300.0, "accelerometer": 9.81, "proximity": 5.0}.get(kind, 1.0)
    return round(base * (1 + 0.1 * math.sin(t / 30 + phase * 2 * math.pi)), 3)
