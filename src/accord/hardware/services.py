"""The hardware services a device serves to its circle, built from its profile.

Each service has a driver: *simulated* (deterministic; `accord sim` and tests) or
*host* (real readings where the host has them; otherwise the simulated one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

from accord.clock import Clock
from accord.errors import HardwareError
from accord.hardware.host import HostBattery
from accord.hardware.messages import (
    MAX_TEXT,
    BatteryStatus,
    CameraInfo,
    CaptureHeader,
    CaptureParams,
    DoorParams,
    PreviewParams,
    Ringing,
    SayParams,
    SensorReadings,
    Setpoint,
    SetpointParams,
    Shown,
    ShowParams,
    Sound,
    ToneParams,
    WatchParams,
)
from accord.hardware.simulated import (
    SimBattery,
    SimCamera,
    SimDisplay,
    SimSensors,
    SimSpeaker,
    image_type,
)
from accord.profile import Profile
from accord.rpc.server import RpcServer

Drivers = Literal["simulated", "host"]
# The service that serves each profile capability (capabilities without one, such
# as modem or chipset, are described in device.info only).
SERVICE_OF = {
    "battery": "battery",
    "camera": "camera",
    "display": "display",
    "speaker": "speaker",
    "sensors": "sensors",
    "door-sensor": "sensors",
    "temperature-control": "thermostat",
}


class Hardware:
    """Registers the profile's services on an RPC server."""

    def __init__(
        self, profile: Profile, device_id: str, name: str, clock: Clock, drivers: Drivers
    ) -> None:
        hw = profile.hardware
        self.drivers: dict[str, str] = {}
        self._clock = clock
        self._battery: SimBattery | HostBattery | None = None
        if drivers == "host" and HostBattery.available():
            self._battery = HostBattery(profile)
        elif hw.battery is not None:
            self._battery = SimBattery(profile, device_id, clock)
        self._camera = SimCamera(profile, name) if hw.cameras else None
        self._display = SimDisplay(profile, clock) if hw.displays else None
        self._speaker = SimSpeaker() if hw.speaker else None
        has_sensors = hw.sensors or hw.cabinets or hw.door_sensor
        self._sensors = SimSensors(profile, clock) if has_sensors else None
        self._has_cabinets = bool(hw.cabinets)
        self._simulated = drivers == "simulated"

    def register(self, server: RpcServer) -> None:
        if self._battery is not None:
            server.register("battery", "status", self._battery_status)
            self.drivers["battery"] = self._battery.driver
        if self._camera is not None:
            server.register("camera", "list", self._camera_list)
            server.register_stream("camera", "capture", self._capture, CaptureParams)
            server.register_stream("camera", "preview", self._preview, PreviewParams)
            self.drivers["camera"] = self._camera.driver
        if self._display is not None:
            server.register("display", "show", self._show, ShowParams)
            server.register("display", "current", self._current)
            server.register("display", "clear", self._clear)
            self.drivers["display"] = self._display.driver
        if self._speaker is not None:
            server.register("speaker", "tone", self._tone, ToneParams)
            server.register("speaker", "say", self._say, SayParams)
            server.register("speaker", "history", self._history)
            server.register("speaker", "ring", self._ring)
            server.register("speaker", "stop_ring", self._stop_ring)
            server.register("speaker", "ringing", self._ringing)
            self.drivers["speaker"] = self._speaker.driver
        if self._sensors is not None:
            server.register("sensors", "read", self._read)
            server.register_stream("sensors", "watch", self._watch, WatchParams)
            self.drivers["sensors"] = self._sensors.driver
            if self._simulated:  # the simulation's own handle on the physical world
                server.register("sim", "door", self._door, DoorParams)
        if self._has_cabinets:
            server.register("thermostat", "setpoints", self._setpoints)
            server.register("thermostat", "set", self._set_setpoint, SetpointParams)
            self.drivers["thermostat"] = "simulated"

    def show_local(self, text: str | None) -> None:
        """Show ``text`` on this device's own display (the newest notification);
        None clears it. Devices without a display ignore it."""
        if self._display is None:
            return
        now, res = self._clock.wall(), self._display.resolution
        if text:
            self._display.show(Shown("text", now, "notifications", text=text, resolution=res))
        else:
            self._display.show(Shown("nothing", now, "notifications", resolution=res))

    # -- battery, camera ---------------------------------------------------

    async def _battery_status(self, _: None, caller: str) -> BatteryStatus:
        assert self._battery is not None
        return self._battery.status()

    async def _camera_list(self, _: None, caller: str) -> list[CameraInfo]:
        assert self._camera is not None
        return self._camera.cameras()

    async def _capture(
        self, params: CaptureParams, caller: str
    ) -> AsyncIterator[CaptureHeader | bytes]:
        assert self._camera is not None
        cam = self._camera.pick(params.camera)
        width, height = self._camera.frame_size(cam, params.width, params.height)
        total, chunks = self._camera.capture(cam, width, height)
        yield CaptureHeader(width, height, total)
        for chunk in chunks:  # rendered one chunk at a time: never the whole image
            yield chunk

    async def _preview(self, params: PreviewParams, caller: str) -> AsyncIterator[bytes]:
        assert self._camera is not None
        cam = self._camera.pick(params.camera)
        n = 0
        while params.frames == 0 or n < params.frames:
            yield self._camera.frame(cam, params.width, params.height, n)
            n += 1
            await asyncio.sleep(1 / params.fps)

    # -- display, speaker --------------------------------------------------

    async def _show(self, params: ShowParams, caller: str) -> Shown:
        assert self._display is not None
        given = [k for k in ("text", "image", "url") if getattr(params, k)]
        if len(given) != 1:
            raise HardwareError("show exactly one of text, image or url")
        now = self._clock.wall()
        res = self._display.resolution
        if params.text:
            shown = Shown("text", now, caller, text=params.text, resolution=res)
        elif params.url:
            if not params.url.startswith(("http://", "https://")):
                raise HardwareError("a url to show must start with http:// or https://")
            shown = Shown("url", now, caller, url=params.url, resolution=res)
        else:
            kind = image_type(params.image)
            shown = Shown("image", now, caller, image=params.image, image_type=kind, resolution=res)
        self._display.show(shown)
        return shown

    async def _current(self, _: None, caller: str) -> Shown:
        assert self._display is not None
        return self._display.current()

    async def _clear(self, _: None, caller: str) -> Shown:
        assert self._display is not None
        shown = Shown("nothing", self._clock.wall(), caller, resolution=self._display.resolution)
        self._display.show(shown)
        return shown

    async def _tone(self, params: ToneParams, caller: str) -> Sound:
        assert self._speaker is not None
        sound = Sound("tone", self._clock.wall(), caller, params.hz, params.duration_ms)
        self._speaker.play(sound)
        return sound

    async def _say(self, params: SayParams, caller: str) -> Sound:
        assert self._speaker is not None
        sound = Sound("speech", self._clock.wall(), caller, text=params.text[:MAX_TEXT])
        self._speaker.play(sound)
        return sound

    async def _ring(self, _: None, caller: str) -> Ringing:
        """Find my device: ring until stopped here or by any member."""
        assert self._speaker is not None
        self._speaker.ring(Sound("ring", self._clock.wall(), caller))
        return await self._ringing(None, caller)

    async def _stop_ring(self, _: None, caller: str) -> Ringing:
        assert self._speaker is not None
        self._speaker.stop_ring(Sound("ring-stopped", self._clock.wall(), caller))
        return await self._ringing(None, caller)

    async def _ringing(self, _: None, caller: str) -> Ringing:
        assert self._speaker is not None
        now = self._speaker.ringing
        return Ringing(True, now.at, now.by) if now is not None else Ringing(False)

    async def _history(self, _: None, caller: str) -> list[Sound]:
        assert self._speaker is not None
        return self._speaker.history()

    # -- sensors, thermostat -------------------------------------------------

    async def _read(self, _: None, caller: str) -> SensorReadings:
        assert self._sensors is not None
        return self._sensors.read()

    async def _watch(self, params: WatchParams, caller: str) -> AsyncIterator[SensorReadings]:
        assert self._sensors is not None
        last: SensorReadings | None = None
        while True:
            now = self._sensors.read()
            if not params.changes_only or last is None or _changed(last, now):
                yield now
                last = now
            await asyncio.sleep(params.interval_s)

    async def _door(self, params: DoorParams, caller: str) -> SensorReadings:
        assert self._sensors is not None
        self._sensors.set_door(params.door, params.open)
        return self._sensors.read()

    async def _setpoints(self, _: None, caller: str) -> list[Setpoint]:
        assert self._sensors is not None
        return self._sensors.setpoints()

    async def _set_setpoint(self, params: SetpointParams, caller: str) -> Setpoint:
        assert self._sensors is not None
        return self._sensors.set_setpoint(params.cabinet, params.celsius)


def _changed(a: SensorReadings, b: SensorReadings) -> bool:
    return (a.cabinets, a.doors, a.values) != (b.cabinets, b.doors, b.values)
