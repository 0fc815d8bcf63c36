"""Device profiles: what a device is and what hardware it brings to the circle.

A profile is a TOML file (see ``docs/profiles.md``). Parsing is strict: an unknown
field, a wrong type, a missing required field or an out-of-range value is a
:class:`ProfileError` that names the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from accord.errors import ProfileError

KNOWN_TYPES = (
    "phone",
    "tablet",
    "laptop",
    "desktop",
    "tv",
    "watch",
    "speaker",
    "refrigerator",
    "washer",
    "oven",
    "camera",
    "router",
    "car",
)
"""Device types every implementation knows. Others are named ``x-<vendor>-<kind>``."""

_CUSTOM_TYPE = re.compile(r"^x-[a-z0-9]+(-[a-z0-9]+)+$")

SecurityLevel = Literal["SL1", "SL2", "SL3", "SL4", "SL5"]
PowerSource = Literal["battery", "mains"]

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Celsius = Annotated[float, msgspec.Meta(ge=-60.0, le=60.0)]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=65536)]


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every profile section: immutable, strict about unknown fields."""


class Camera(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    megapixels: Annotated[float, msgspec.Meta(gt=0, le=1000)]
    position: Literal["rear", "front", "external"] = "rear"
    optics: str = ""


class Display(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    diagonal_in: Annotated[float, msgspec.Meta(gt=0, le=400)]
    resolution: tuple[Pixels, Pixels]
    curved: bool = False
    touch: bool = False


class Battery(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    capacity_mah: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Modem(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    generations: Annotated[list[Literal["2G", "3G", "4G", "5G"]], msgspec.Meta(min_length=1)]


class Chipset(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: Text
    cores: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1


class Sensors(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    kinds: list[Short]


class Cabinet(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A temperature-controlled cabinet, after Matter's refrigerator device type (0x70)."""

    name: Short
    setpoint_min_c: Celsius
    setpoint_max_c: Celsius
    setpoint_c: Celsius
    temperature_sensor: bool = True


class DoorSensor(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    doors: Annotated[list[Short], msgspec.Meta(min_length=1)]


class Audio(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    channels: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class Hardware(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    chipset: Chipset | None = None
    cameras: list[Camera] = []
    displays: list[Display] = []
    battery: Battery | None = None
    modem: Modem | None = None
    sensors: Sensors | None = None
    cabinets: list[Cabinet] = []
    door_sensor: DoorSensor | None = None
    speaker: Audio | None = None
    microphone: Audio | None = None


class Profile(_Spec, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: Text
    vendor: Text
    model: Text
    type: Short
    security_level: SecurityLevel
    power: PowerSource
    hardware: Hardware = Hardware()

    def capabilities(self) -> list[str]:
        """The capability names this device offers, in a stable order."""
        hw = self.hardware
        present = {
            "camera": bool(hw.cameras),
            "display": bool(hw.displays),
            "battery": hw.battery is not None,
            "modem": hw.modem is not None,
            "chipset": hw.chipset is not None,
            "sensors": hw.sensors is not None or any(c.temperature_sensor for c in hw.cabinets),
            "temperature-control": bool(hw.cabinets),
            "door-sensor": hw.door_sensor is not None,
            "speaker": hw.speaker is not None,
            "microphone": hw.microphone is not None,
        }
        return [name for name, has in present.items() if has]

    def summary(self) -> str:
        """One short line of the main capabilities, for tables."""
        hw = self.hardware
        parts: list[str] = []
        if hw.cameras:
            parts.append(f"camera {max(c.megapixels for c in hw.cameras):g} MP")
        if hw.displays:
            d = max(hw.displays, key=lambda d: d.diagonal_in)
            parts.append(f'display {d.diagonal_in:g}"' + (" curved" if d.curved else ""))
        if hw.battery:
            parts.append(f"battery {hw.battery.capacity_mah} mAh")
        if hw.modem and "5G" in hw.modem.generations:
            parts.append("5G")
        if hw.cabinets:
            parts.append("cabinets " + "/".join(c.name for c in hw.cabinets))
        if hw.door_sensor:
            parts.append("door sensor")
        return ", ".join(parts)


def _check(profile: Profile) -> None:
    """Rules that span fields; raises ProfileError naming the field."""
    if profile.type not in KNOWN_TYPES and not _CUSTOM_TYPE.match(profile.type):
        raise ProfileError(
            f"unknown device type {profile.type!r} - at `$.type`; use one of "
            f"{', '.join(KNOWN_TYPES)} or name your own as x-<vendor>-<kind>"
        )
    names: set[str] = set()
    for i, cab in enumerate(profile.hardware.cabinets):
        where = f"$.hardware.cabinets[{i}]"
        if cab.name in names:
            raise ProfileError(f"duplicate cabinet name {cab.name!r} - at `{where}.name`")
        names.add(cab.name)
        if cab.setpoint_min_c >= cab.setpoint_max_c:
            raise ProfileError(
                f"setpoint_min_c must be below setpoint_max_c - at `{where}.setpoint_min_c`"
            )
        if not cab.setpoint_min_c <= cab.setpoint_c <= cab.setpoint_max_c:
            raise ProfileError(
                f"setpoint_c {cab.setpoint_c} is outside "
                f"[{cab.setpoint_min_c}, {cab.setpoint_max_c}] - at `{where}.setpoint_c`"
            )
    if profile.hardware.battery is None and profile.power == "battery":
        raise ProfileError("power is 'battery' but hardware.battery is missing - at `$.power`")


def parse_profile(text: str | bytes, source: str = "<profile>") -> Profile:
    """Parse and validate a profile's TOML text; errors name ``source`` and the field."""
    try:
        raw = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{source}: malformed TOML: {exc}") from exc
    return profile_from_dict(raw, source)


def profile_from_dict(raw: object, source: str = "<profile>") -> Profile:
    try:
        profile = msgspec.convert(raw, Profile, strict=True)
        _check(profile)
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{source}: {exc}") from exc
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from exc
    return profile


def load_profile(path: Path) -> Profile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror}") from exc
    return parse_profile(data, str(path))


def builtin_names() -> list[str]:
    """Names of the profiles shipped with Accord."""
    folder = resources.files("accord") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    """The TOML text of a built-in profile."""
    if name not in builtin_names():
        raise ProfileError(
            f"unknown profile {name!r}; built-in profiles are: {', '.join(builtin_names())} "
            "(or pass --profile-file FILE)"
        )
    return (resources.files("accord") / "profiles" / f"{name}.toml").read_text()


def load_builtin(name: str) -> Profile:
    return parse_profile(builtin_text(name), f"built-in profile {name!r}")


def to_dict(profile: Profile) -> dict[str, object]:
    """A plain dict of the profile (for JSON and TOML output)."""
    out = msgspec.to_builtins(profile)
    assert isinstance(out, dict)
    return out
