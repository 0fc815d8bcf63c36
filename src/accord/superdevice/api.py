"""The super-device API: what app code uses to treat the circle as one device.

    sd = SuperDevice(node)
    cam = await sd.best("camera")           # the member camera with the most megapixels
    jpeg = await cam.capture(width=4000, height=3000)
    await (await sd.best("display")).show_text("Dinner is ready")

Selection reads the profiles members share; a proxy calls its device over sealed
RPC. A proxy whose device has gone raises DeviceUnavailable on its next call; ask
``best`` again to re-evaluate.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from accord.bus.directory import DeviceRecord
from accord.bus.names import match_device
from accord.errors import AccordError, DeviceUnavailable, RemoteError
from accord.hardware.messages import (
    BatteryStatus,
    CameraInfo,
    CaptureHeader,
    CaptureParams,
    PreviewParams,
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
from accord.rpc.messages import DEFAULT_TIMEOUT_S
from accord.superdevice.links import ControlLink, Link, NodeLink

T = TypeVar("T")
Power = Literal["mains", "battery"]
Score = Callable[[DeviceRecord], float]
Progress = Callable[[int, int], None]  # (bytes so far, total)


class Sink(Protocol):
    """Where a capture is written: an open binary file, or anything with write()."""

    def write(self, data: bytes, /) -> object: ...


class Proxy:
    """A typed handle on one service of one device."""

    service = ""

    def __init__(self, link: Link, device: DeviceRecord) -> None:
        self.device = device
        self._link = link

    @property
    def device_id(self) -> str:
        return self.device.device_id

    async def _call(self, method: str, params: Any, result: type[T], timeout: float = 0) -> T:
        return await self._link.call(
            self.device_id, self.service, method, params, result, timeout or DEFAULT_TIMEOUT_S
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.device.name}>"


class Device(Proxy):
    service = "device"

    async def info(self) -> dict[str, Any]:
        return await self._call("info", None, dict)


class Battery(Proxy):
    service = "battery"

    async def status(self) -> BatteryStatus:
        return await self._call("status", None, BatteryStatus)


class Camera(Proxy):
    service = "camera"

    async def cameras(self) -> list[CameraInfo]:
        return await self._call("list", None, list[CameraInfo])

    async def capture(
        self,
        width: int = 0,
        height: int = 0,
        *,
        camera: str = "",
        on_progress: Progress | None = None,
    ) -> bytearray:
        """A JPEG, full resolution by default. The buffer is allocated once at its final
        size from the stream's header, so the image is never held twice."""
        image = bytearray()
        view: memoryview | None = None
        filled = 0
        async for item in self._stream(width, height, camera):
            if isinstance(item, CaptureHeader):
                image = bytearray(item.total_bytes)
                view = memoryview(image)
                total = item.total_bytes
                continue
            if view is None or filled + len(item) > len(image):
                raise RemoteError("ProtocolError", "capture stream does not match its header")
            view[filled : filled + len(item)] = item
            filled += len(item)
            if on_progress is not None:
                on_progress(filled, total)
        if view is None or filled != len(image):
            raise RemoteError("ProtocolError", f"capture ended after {filled} bytes")
        view.release()
        return image

    async def capture_to(
        self,
        out: Sink,
        width: int = 0,
        height: int = 0,
        *,
        camera: str = "",
        on_progress: Progress | None = None,
    ) -> CaptureHeader:
        """Stream a capture straight into an open binary file: memory stays at one
        chunk."""
        header: CaptureHeader | None = None
        written = 0
        async for item in self._stream(width, height, camera):
            if isinstance(item, CaptureHeader):
                header = item
                continue
            if header is None:
                raise RemoteError("ProtocolError", "capture stream without a header")
            out.write(item)
            written += len(item)
            if on_progress is not None:
                on_progress(written, header.total_bytes)
        if header is None or written != header.total_bytes:
            raise RemoteError("ProtocolError", f"capture ended after {written} bytes")
        return header

    async def _stream(
        self, width: int, height: int, camera: str
    ) -> AsyncIterator[CaptureHeader | bytes]:
        params = CaptureParams(camera, width, height)
        kinds = cast("type[CaptureHeader | bytes]", CaptureHeader | bytes)
        async with self._link.stream(
            self.device_id, "camera", "capture", params, kinds, DEFAULT_TIMEOUT_S
        ) as items:
            async for item in items:
                yield item

    async def preview(
        self, *, frames: int = 0, fps: float = 10.0, width: int = 640, height: int = 480
    ) -> AsyncIterator[bytes]:
        """JPEG frames until ``frames`` (0: until the caller stops iterating)."""
        params = PreviewParams(width=width, height=height, fps=fps, frames=frames)
        async with self._link.stream(
            self.device_id, "camera", "preview", params, bytes, DEFAULT_TIMEOUT_S
        ) as items:
            async for frame in items:
                yield frame


class Display(Proxy):
    service = "display"

    async def show_text(self, text: str) -> Shown:
        return await self._call("show", ShowParams(text=text), Shown)

    async def show_image(self, image: bytes) -> Shown:
        return await self._call("show", ShowParams(image=image), Shown)

    async def show_url(self, url: str) -> Shown:
        return await self._call("show", ShowParams(url=url), Shown)

    async def current(self) -> Shown:
        return await self._call("current", None, Shown)

    async def clear(self) -> Shown:
        return await self._call("clear", None, Shown)


class Speaker(Proxy):
    service = "speaker"

    async def tone(self, hz: float = 880.0, duration_ms: int = 500) -> Sound:
        return await self._call("tone", ToneParams(hz, duration_ms), Sound)

    async def say(self, text: str) -> Sound:
        return await self._call("say", SayParams(text), Sound)

    async def history(self) -> list[Sound]:
        return await self._call("history", None, list[Sound])


class Sensors(Proxy):
    service = "sensors"

    async def read(self) -> SensorReadings:
        return await self._call("read", None, SensorReadings)

    async def watch(
        self, interval_s: float = 1.0, *, changes_only: bool = True
    ) -> AsyncIterator[SensorReadings]:
        params = WatchParams(interval_s, changes_only)
        timeout = max(DEFAULT_TIMEOUT_S, interval_s * 3) if not changes_only else 3600.0
        async with self._link.stream(
            self.device_id, "sensors", "watch", params, SensorReadings, timeout
        ) as items:
            async for reading in items:
                yield reading


class Thermostat(Proxy):
    service = "thermostat"

    async def setpoints(self) -> list[Setpoint]:
        return await self._call("setpoints", None, list[Setpoint])

    async def set(self, cabinet: str, celsius: float) -> Setpoint:
        return await self._call("set", SetpointParams(cabinet, celsius), Setpoint)


PROXIES: dict[str, type[Proxy]] = {
    "device": Device,
    "battery": Battery,
    "camera": Camera,
    "display": Display,
    "speaker": Speaker,
    "sensors": Sensors,
    "door-sensor": Sensors,
    "temperature-control": Thermostat,
}


def _camera_score(rec: DeviceRecord) -> float:
    cams = rec.profile.hardware.cameras if rec.profile else []
    return max((c.megapixels for c in cams), default=0.0)


def _display_score(rec: DeviceRecord) -> float:
    displays = rec.profile.hardware.displays if rec.profile else []
    return max((d.diagonal_in for d in displays), default=0.0)


def _mains_score(rec: DeviceRecord) -> float:
    return 1.0 if rec.profile and rec.profile.power == "mains" else 0.0


# What "best" means for each capability; the rest prefer a device on mains power.
BEST: dict[str, Score] = {"camera": _camera_score, "display": _display_score}


class SuperDevice:
    """The circle's devices as one: find, rank and use their hardware."""

    def __init__(self, link: Link) -> None:
        self._link = link

    @classmethod
    def of(cls, node: Any) -> SuperDevice:
        """The super device as seen from a :class:`accord.Node` running in this process."""
        if node.directory is None or node.circle is None:
            raise AccordError("the node is not running")
        return cls(NodeLink(node.rpc, node.directory, node.circle))

    @classmethod
    def connect(cls, home: str | os.PathLike[str] | None = None) -> SuperDevice:
        """The super device of the node running on ``home`` (default: $ACCORD_HOME or
        the user's), reached through its control socket from this process."""
        from accord.device.home import resolve_home

        return cls(ControlLink(resolve_home(Path(home) if home is not None else None)))

    async def devices(
        self, capability: str | None = None, *, power: Power | None = None
    ) -> list[DeviceRecord]:
        """Online members (this device included) with ``capability``, by name."""
        found = []
        for rec in await self._link.devices():
            if capability is not None and capability not in rec.capabilities:
                continue
            if power is not None and (rec.profile is None or rec.profile.power != power):
                continue
            found.append(rec)
        return sorted(found, key=lambda r: (r.name, r.device_id))

    async def rank(
        self, capability: str, *, power: Power | None = None, score: Score | None = None
    ) -> list[DeviceRecord]:
        """Devices with ``capability``, best first. The default scores: cameras by
        megapixels, displays by diagonal, anything else mains power first; ties go to
        the name, then the id, so every caller ranks alike."""
        rule = score or BEST.get(capability, _mains_score)
        return sorted(
            await self.devices(capability, power=power),
            key=lambda r: (-rule(r), -_mains_score(r), r.name, r.device_id),
        )

    @overload
    async def best(
        self,
        capability: Literal["camera"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Camera: ...
    @overload
    async def best(
        self,
        capability: Literal["display"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Display: ...
    @overload
    async def best(
        self,
        capability: Literal["speaker"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Speaker: ...
    @overload
    async def best(
        self,
        capability: Literal["battery"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Battery: ...
    @overload
    async def best(
        self,
        capability: Literal["sensors", "door-sensor"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Sensors: ...
    @overload
    async def best(
        self,
        capability: Literal["temperature-control"],
        *,
        power: Power | None = None,
        score: Score | None = None,
    ) -> Thermostat: ...
    @overload
    async def best(
        self, capability: str, *, power: Power | None = None, score: Score | None = None
    ) -> Proxy: ...

    async def best(
        self, capability: str, *, power: Power | None = None, score: Score | None = None
    ) -> Proxy:
        """A proxy on the best online member for ``capability``."""
        ranked = await self.rank(capability, power=power, score=score)
        if not ranked:
            where = f" on {power} power" if power else ""
            raise DeviceUnavailable(f"no online member has a {capability}{where}")
        return self.proxy(ranked[0], capability)

    async def on(self, device: str, capability: str) -> Proxy:
        """A proxy for ``capability`` on a named device, named as everywhere else
        (:func:`accord.bus.names.match_device`: name, name prefix, type, id, 4+
        characters of an id); several matches raise ``AmbiguousDevice``."""
        found = match_device(device, await self.devices())
        if found is None:
            raise DeviceUnavailable(f"no online member is called {device!r}")
        return self.proxy(found, capability)

    def proxy(self, device: DeviceRecord, capability: str) -> Proxy:
        """A proxy for ``capability`` on the device of ``device``."""
        kind = PROXIES.get(capability)
        if kind is None:
            known = ", ".join(sorted(PROXIES))
            raise AccordError(f"no proxy for {capability!r}; known: {known}")
        return kind(self._link, device)
