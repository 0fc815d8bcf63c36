"""Parameters and results of the hardware services (msgspec structs, sealed RPC)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from accord.hardware.thermal import CabinetReading

Side = Annotated[int, msgspec.Meta(ge=0, le=65535)]
MAX_TEXT = 4096
MAX_SPOKEN = 1000


class BatteryStatus(msgspec.Struct, frozen=True):
    level_pct: float
    charging: bool
    capacity_mah: int
    driver: str


class CameraInfo(msgspec.Struct, frozen=True):
    position: str
    megapixels: float
    max_width: int
    max_height: int


class CaptureParams(msgspec.Struct, frozen=True, omit_defaults=True):
    """``width``/``height`` 0 means the camera's full resolution."""

    camera: str = ""  # "" = the main camera: the rear one, else the largest
    width: Side = 0
    height: Side = 0


class CaptureHeader(msgspec.Struct, frozen=True, tag="header"):
    """The first item of a capture stream; JPEG bytes follow in chunks."""

    width: int
    height: int
    total_bytes: int
    mime: str = "image/jpeg"


class PreviewParams(msgspec.Struct, frozen=True, omit_defaults=True):
    camera: str = ""  # "" = the main camera: the rear one, else the largest
    width: Annotated[int, msgspec.Meta(ge=16, le=1920)] = 640
    height: Annotated[int, msgspec.Meta(ge=16, le=1080)] = 480
    fps: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0
    frames: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0: until the caller stops


class ShowParams(msgspec.Struct, frozen=True, omit_defaults=True):
    """Exactly one of text, image (JPEG or PNG bytes) or url."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""
    image: bytes = b""
    url: Annotated[str, msgspec.Meta(max_length=2048)] = ""


class Shown(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a display shows now."""

    kind: Literal["text", "image", "url", "nothing"]
    at: float
    by: str = ""
    text: str = ""
    url: str = ""
    image: bytes = b""
    image_type: str = ""
    resolution: tuple[int, int] = (0, 0)


class ToneParams(msgspec.Struct, frozen=True):
    hz: Annotated[float, msgspec.Meta(ge=20, le=20000)] = 880.0
    duration_ms: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 500


class SayParams(msgspec.Struct, frozen=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SPOKEN)]


class Sound(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: Literal["tone", "speech", "ring", "ring-stopped"]
    at: float
    by: str
    hz: float = 0.0
    duration_ms: int = 0
    text: str = ""


class Ringing(msgspec.Struct, frozen=True, omit_defaults=True):
    """Find my device: whether the speaker rings, since when and at whose request."""

    ringing: bool
    since: float = 0.0
    by: str = ""


class SensorReadings(msgspec.Struct, frozen=True, omit_defaults=True):
    at: float
    cabinets: list[CabinetReading] = []
    doors: dict[str, bool] = {}  # door name -> open
    values: dict[str, float] = {}  # other sensor kinds, e.g. ambient-light lux


class WatchParams(msgspec.Struct, frozen=True, omit_defaults=True):
    """Send readings every ``interval_s``; with ``changes_only``, only when they differ."""

    interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 1.0
    changes_only: bool = True


class SetpointParams(msgspec.Struct, frozen=True):
    cabinet: str
    celsius: float


class Setpoint(msgspec.Struct, frozen=True):
    cabinet: str
    setpoint_c: float
    min_c: float
    max_c: float


class DoorParams(msgspec.Struct, frozen=True):
    door: str
    open: bool
