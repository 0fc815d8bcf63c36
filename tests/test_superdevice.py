"""The super-device API over a real in-process household: selection, typed proxies
and the simulated hardware behind them."""

from __future__ import annotations

import io
import tracemalloc

import pytest
from PIL import Image

from accord import SuperDevice
from accord.errors import DeviceUnavailable, HardwareError, RemoteError
from accord.hardware.messages import DoorParams, SensorReadings
from accord.hardware.simulated import full_resolution
from accord.node import Node
from accord.superdevice.api import Camera, Display, Thermostat
from tests.nodes import Mesh, household, wait_until


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh,
        ("laptop", "laptop"),
        ("phone", "nokia-x60"),
        ("fridge", "midea-fridge"),
        ("tv", "tv"),
        ("tablet", "tablet"),
    )
    return {n.name: n for n in nodes}


async def test_best_devices_follow_the_documented_rules(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    cam = await sd.best("camera")
    assert isinstance(cam, Camera)
    assert cam.device.name == "phone"  # 200 MP beats the tablet and the laptop
    display = await sd.best("display")
    assert isinstance(display, Display)
    assert display.device.name == "tv"  # the biggest diagonal
    assert (await sd.best("speaker", power="mains")).device.profile is not None
    assert all(r.profile and r.profile.power == "mains" for r in await sd.devices(power="mains"))
    thermo = await sd.best("temperature-control")
    assert isinstance(thermo, Thermostat)
    assert thermo.device.name == "fridge"
    names = [r.name for r in await sd.devices("camera")]
    assert names == sorted(names)
    assert (await sd.rank("camera"))[0].name == "phone"
    with pytest.raises(DeviceUnavailable, match="no online member has a modem on mains"):
        await sd.best("modem", power="mains")


async def test_capture_is_a_real_jpeg_at_the_asked_resolution(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    cam = await sd.best("camera")
    seen: list[tuple[int, int]] = []
    jpeg = await cam.capture(640, 480, on_progress=lambda done, total: seen.append((done, total)))
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.size == (640, 480)
    assert seen[-1] == (len(jpeg), len(jpeg))
    infos = await cam.cameras()
    assert {c.position for c in infos} == {"rear", "front"}
    with pytest.raises(HardwareError, match="at most"):
        await cam.capture(8000, 6000, camera="front")  # 48 MP from a 16 MP camera
    with pytest.raises(HardwareError, match="no 'side' camera"):
        await cam.capture(10, 10, camera="side")
    frames = [f async for f in cam.preview(frames=3, fps=50, width=64, height=48)]
    assert len(frames) == 3
    assert len(set(frames)) == 3  # the marker moves: frames differ


async def test_a_200_mp_capture_streams_without_holding_it_twice(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    cam = await sd.best("camera")
    out = _Sink()
    tracemalloc.start()
    try:
        header = await cam.capture_to(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (header.width, header.height) == full_resolution(200)
    assert header.width * header.height > 199_000_000
    assert out.written == header.total_bytes
    # Both sides run in this process. Streaming to a file holds a window of chunks,
    # whatever the image size.
    window = 8 * 256 * 1024
    assert peak < 3 * window, (peak, header.total_bytes)
    tracemalloc.start()
    try:
        image = await cam.capture()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(image) == header.total_bytes
    assert peak < header.total_bytes + 3 * window  # held once, plus chunks in flight


class _Sink:
    """Counts what is written without keeping it (so memory shows the stream alone)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)


async def test_display_speaker_and_battery(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    tv = await sd.best("display")
    shown = await tv.show_text("Dinner is ready")
    assert shown.kind == "text"
    assert shown.by == home["laptop"].home.device_id
    assert (await tv.current()).text == "Dinner is ready"
    png = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(png, "PNG")
    assert (await tv.show_image(png.getvalue())).image_type == "image/png"
    with pytest.raises(HardwareError, match="JPEG or PNG"):
        await tv.show_image(b"GIF89a....")
    with pytest.raises(HardwareError, match="http"):
        await tv.show_url("file:///etc/passwd")
    assert (await tv.clear()).kind == "nothing"
    phone = await sd.on("phone", "speaker")
    await phone.say("the door is open")  # type: ignore[attr-defined]
    await phone.tone(440, 200)  # type: ignore[attr-defined]
    played = await phone.history()  # type: ignore[attr-defined]
    assert [s.kind for s in played] == ["speech", "tone"]
    battery = await sd.best("battery", power="battery")
    status = await battery.status()
    assert 5 <= status.level_pct <= 100
    assert not status.charging


async def test_fridge_sensors_and_setpoints(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    fridge = await sd.best("temperature-control")
    points = {p.cabinet: p for p in await fridge.setpoints()}
    assert points["fridge"].setpoint_c == 4.0
    assert (await fridge.set("fridge", 3.0)).setpoint_c == 3.0
    with pytest.raises(
        HardwareError, match=r"12 °C for cabinet .fridge. is outside its allowed range 1..8"
    ) as err:
        await fridge.set("fridge", 12.0)
    assert "fridge" in str(err.value)
    with pytest.raises(HardwareError, match=r"unknown cabinet|no cabinet"):
        await fridge.set("crisper", 3.0)
    sensors = await sd.best("door-sensor")
    before = await sensors.read()
    assert before.doors == {"fridge": False, "freezer": False}
    assert {c.name for c in before.cabinets} == {"fridge", "freezer"}
    watch = sensors.watch(0.05)
    first = await anext(watch)
    assert first.doors["fridge"] is False
    # the simulation's handle on the physical world: someone opens the door
    fridge_id = home["fridge"].home.device_id
    await home["laptop"].rpc.call(
        fridge_id, "sim", "door", DoorParams("fridge", True), SensorReadings
    )
    changed = await anext(watch)
    assert changed.doors["fridge"] is True
    await watch.aclose()  # type: ignore[attr-defined]


async def test_a_proxy_whose_device_left_is_unavailable(home: dict[str, Node], mesh: Mesh) -> None:
    sd = SuperDevice.of(home["laptop"])
    tv = await sd.best("display")
    await home["tv"].stop()
    await wait_until(lambda: not _online(home["laptop"], home["tv"]), 5, "the tv to go")
    with pytest.raises(DeviceUnavailable):
        await tv.show_text("anyone?")
    again = await sd.best("display")  # re-evaluated: the next biggest display
    assert again.device.name in {"laptop", "tablet", "phone"}
    assert again.device.name != "tv"


async def test_unknown_capability_and_bad_params(home: dict[str, Node]) -> None:
    sd = SuperDevice.of(home["laptop"])
    with pytest.raises(Exception, match="no proxy for 'teleporter'"):
        await sd.on("tv", "teleporter")
    with pytest.raises(RemoteError, match="InvalidParams"):
        await home["laptop"].rpc.call(home["tv"].home.device_id, "display", "show", {"text": 5})


def _online(a: Node, b: Node) -> bool:
    assert a.directory is not None
    rec = a.directory.get(b.home.device_id)
    return rec is not None and rec.online


async def test_the_same_api_through_the_control_socket(home: dict[str, Node]) -> None:
    """What a script or an app in another process uses: SuperDevice.connect(home)."""
    sd = SuperDevice.connect(home["laptop"].home.path)
    cam = await sd.best("camera")
    assert cam.device.name == "phone"
    jpeg = await cam.capture(320, 240)
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.size == (320, 240)
    tv = await sd.best("display")
    png = io.BytesIO()
    Image.new("RGB", (2, 2), "blue").save(png, "PNG")
    assert (await tv.show_image(png.getvalue())).image == png.getvalue()  # bytes survive JSON
    fridge = await sd.best("temperature-control")
    with pytest.raises(HardwareError, match="outside its allowed range"):
        await fridge.set("freezer", 0)
    watch = (await sd.best("sensors")).watch(0.05)
    assert (await anext(watch)).cabinets
    await watch.aclose()  # type: ignore[attr-defined]
    with pytest.raises(DeviceUnavailable, match="no online member"):
        await sd.on("toaster", "display")


async def test_a_device_uses_its_own_hardware_through_the_same_api(
    home: dict[str, Node],
) -> None:
    tv = SuperDevice.of(home["tv"])
    display = await tv.best("display")
    assert display.device.name == "tv"  # itself: the call stays in the process
    assert (await display.show_text("local")).text == "local"
    fridge = SuperDevice.of(home["fridge"])
    sensors = await fridge.best("door-sensor")
    assert sensors.device.name == "fridge"
    async for reading in sensors.watch(interval_s=0.05, changes_only=False):
        assert "fridge" in reading.doors
        break
    home["fridge"].services.restrict("sensors", {home["tv"].home.device_id})
    assert (await sensors.read()).doors  # a device is never locked out of its own


async def test_on_names_devices_like_every_command(home: dict[str, Node]) -> None:
    """SuperDevice.on uses the one matcher: type words select, a short id prefix never
    does, and an ambiguous name lists the candidates."""
    from accord.bus.names import AmbiguousDevice
    from accord.errors import DeviceUnavailable

    sd = SuperDevice.of(home["laptop"])
    fridge = await sd.on("refrigerator", "sensors")
    assert fridge.device.name == "fridge"
    fridge_id = home["fridge"].home.device_id
    assert (await sd.on(fridge_id[:4], "sensors")).device.name == "fridge"
    if not any(name.startswith(fridge_id[:3]) for name in home):  # ids are random
        with pytest.raises(DeviceUnavailable):
            await sd.on(fridge_id[:3], "sensors")
    with pytest.raises(AmbiguousDevice, match="tablet"):
        await sd.on("t", "display")  # tv and tablet both start with t


async def test_a_device_with_one_front_camera_captures_without_naming_it(
    home: dict[str, Node],
) -> None:
    sd = SuperDevice.of(home["phone"])
    cam = await sd.on("laptop", "camera")
    image = await cam.capture(320, 240)  # type: ignore[attr-defined]
    assert bytes(image[:2]) == b"\xff\xd8"
