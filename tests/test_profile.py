"""Device profiles: built-ins load, invalid profiles are refused with the file and the
field named, and every valid profile survives a TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import ProfileError
from accord.profile import (
    KNOWN_TYPES,
    Audio,
    Battery,
    Cabinet,
    Camera,
    Chipset,
    Display,
    DoorSensor,
    Hardware,
    Modem,
    Profile,
    Sensors,
    builtin_names,
    builtin_text,
    load_builtin,
    load_profile,
    parse_profile,
    to_dict,
)

BUILTINS = ["laptop", "midea-fridge", "nokia-x20", "nokia-x60", "tablet", "tv"]
CAPABILITIES = {
    "camera",
    "display",
    "battery",
    "modem",
    "chipset",
    "sensors",
    "temperature-control",
    "door-sensor",
    "speaker",
    "microphone",
}


# --- built-in profiles -------------------------------------------------------------------


def test_builtin_names() -> None:
    assert builtin_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads(name: str) -> None:
    profile = load_builtin(name)
    assert isinstance(profile, Profile)
    assert profile.type in KNOWN_TYPES
    caps = profile.capabilities()
    assert len(caps) == len(set(caps))
    assert set(caps) <= CAPABILITIES
    assert profile.summary()
    # Round trip of the shipped profile itself.
    assert parse_profile(tomli_w.dumps(to_dict(profile))) == profile


def test_nokia_x60() -> None:
    p = load_builtin("nokia-x60")
    assert p.name == "Nokia X60"
    assert p.vendor == "Nokia"
    assert p.type == "phone"
    assert p.security_level == "SL4"
    assert p.power == "battery"
    hw = p.hardware
    assert max(c.megapixels for c in hw.cameras) == 200
    assert any(d.curved for d in hw.displays)
    assert hw.battery == Battery(capacity_mah=6000)
    assert hw.modem is not None
    assert "5G" in hw.modem.generations
    caps = p.capabilities()
    for cap in ("camera", "display", "battery", "modem", "chipset", "sensors", "speaker"):
        assert cap in caps
    assert "temperature-control" not in caps
    assert "door-sensor" not in caps
    summary = p.summary()
    assert "camera 200 MP" in summary
    assert "curved" in summary
    assert "battery 6000 mAh" in summary
    assert "5G" in summary


def test_midea_fridge() -> None:
    p = load_builtin("midea-fridge")
    assert p.type == "refrigerator"
    assert p.security_level == "SL1"
    assert p.power == "mains"
    cabinets = {c.name: c for c in p.hardware.cabinets}
    assert set(cabinets) == {"fridge", "freezer"}
    fridge, freezer = cabinets["fridge"], cabinets["freezer"]
    assert (fridge.setpoint_min_c, fridge.setpoint_c, fridge.setpoint_max_c) == (1.0, 4.0, 8.0)
    assert (freezer.setpoint_min_c, freezer.setpoint_c, freezer.setpoint_max_c) == (
        -24.0,
        -18.0,
        -15.0,
    )
    for cab in cabinets.values():
        assert cab.setpoint_min_c <= cab.setpoint_c <= cab.setpoint_max_c
        assert cab.temperature_sensor
    assert p.hardware.door_sensor == DoorSensor(doors=["fridge", "freezer"])
    caps = p.capabilities()
    assert "temperature-control" in caps
    assert "door-sensor" in caps
    assert "sensors" in caps  # from the cabinets' temperature sensors
    assert "camera" not in caps
    assert "battery" not in caps
    summary = p.summary()
    assert "cabinets fridge/freezer" in summary
    assert "door sensor" in summary


def test_nokia_x20() -> None:
    p = load_builtin("nokia-x20")
    assert p.security_level == "SL3"
    assert p.hardware.chipset is not None
    assert p.hardware.chipset.name == "Snapdragon 480"
    assert p.hardware.modem is not None
    assert "5G" in p.hardware.modem.generations
    assert p.hardware.cameras
    assert all(c.optics == "Zeiss" for c in p.hardware.cameras)
    assert "5G" in p.summary()
    assert "camera 64 MP" in p.summary()


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(ProfileError) as info:
        builtin_text("nokia-x99")
    message = str(info.value)
    assert "nokia-x99" in message
    for name in BUILTINS:
        assert name in message


def test_capabilities_of_a_bare_profile() -> None:
    p = Profile(
        name="Bare",
        vendor="V",
        model="M",
        type="router",
        security_level="SL2",
        power="mains",
    )
    assert p.capabilities() == []
    assert p.summary() == ""


def test_load_profile_of_missing_file(short_tmp: Path) -> None:
    path = short_tmp / "nothing.toml"
    with pytest.raises(ProfileError, match="cannot read profile") as info:
        load_profile(path)
    assert str(path) in str(info.value)


# --- invalid profiles --------------------------------------------------------------------

X60 = builtin_text("nokia-x60")
FRIDGE = builtin_text("midea-fridge")


def _edit(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


INVALID: list[tuple[str, str, str]] = [
    # (id, profile text, what the message must name)
    (
        "unknown-field",
        _edit(X60, "capacity_mah = 6000", 'capacity_mah = 6000\nchemistry = "li-ion"'),
        "`$.hardware.battery`",
    ),
    (
        "unknown-top-level-field",
        _edit(X60, 'power = "battery"', 'power = "battery"\ncolour = "red"'),
        "`colour`",
    ),
    (
        "wrong-type",
        _edit(X60, "capacity_mah = 6000", 'capacity_mah = "6000"'),
        "`$.hardware.battery.capacity_mah`",
    ),
    (
        "float-for-int",
        _edit(X60, "capacity_mah = 6000", "capacity_mah = 6000.0"),
        "`$.hardware.battery.capacity_mah`",
    ),
    (
        "int-for-bool",
        _edit(X60, "curved = true", "curved = 1"),
        "`$.hardware.displays[0].curved`",
    ),
    (
        "missing-required-field",
        _edit(X60, 'vendor = "Nokia"\n', ""),
        "`vendor`",
    ),
    (
        "missing-required-nested-field",
        _edit(X60, "capacity_mah = 6000", ""),
        "`$.hardware.battery`",
    ),
    (
        "negative-megapixels",
        _edit(X60, "megapixels = 200", "megapixels = -5"),
        "`$.hardware.cameras[0].megapixels`",
    ),
    (
        "nan-megapixels",
        _edit(X60, "megapixels = 200", "megapixels = nan"),
        "`$.hardware.cameras[0].megapixels`",
    ),
    (
        "security-level-sl9",
        _edit(X60, 'security_level = "SL4"', 'security_level = "SL9"'),
        "`$.security_level`",
    ),
    (
        "zero-resolution",
        _edit(X60, "resolution = [1220, 2712]", "resolution = [1220, 0]"),
        "`$.hardware.displays[0].resolution[1]`",
    ),
    (
        "three-resolution-values",
        _edit(X60, "resolution = [1220, 2712]", "resolution = [1220, 2712, 3]"),
        "`$.hardware.displays[0].resolution`",
    ),
    (
        "empty-modem-generations",
        _edit(X60, 'generations = ["5G", "4G", "3G"]', "generations = []"),
        "`$.hardware.modem.generations`",
    ),
    (
        "unknown-modem-generation",
        _edit(X60, 'generations = ["5G", "4G", "3G"]', 'generations = ["6G"]'),
        "`$.hardware.modem.generations[0]`",
    ),
    (
        "empty-name",
        _edit(X60, 'name = "Nokia X60"', 'name = ""'),
        "`$.name`",
    ),
    (
        "setpoint-below-physical-range",
        _edit(FRIDGE, "setpoint_min_c = -24.0", "setpoint_min_c = -99.0"),
        "`$.hardware.cabinets[1].setpoint_min_c`",
    ),
    (
        "setpoint-outside-range",
        _edit(FRIDGE, "setpoint_c = 4.0", "setpoint_c = 9.5"),
        "$.hardware.cabinets[0]",
    ),
    (
        "setpoint-min-not-below-max",
        _edit(FRIDGE, "setpoint_min_c = 1.0", "setpoint_min_c = 8.0"),
        "$.hardware.cabinets[0]",
    ),
    (
        "duplicate-cabinet",
        _edit(FRIDGE, 'name = "freezer"', 'name = "fridge"'),
        "$.hardware.cabinets[1]",
    ),
    (
        "unknown-type",
        _edit(X60, 'type = "phone"', 'type = "robot"'),
        "`$.type`",
    ),
    (
        "custom-type-without-vendor",
        _edit(X60, 'type = "phone"', 'type = "x-robot"'),
        "`$.type`",
    ),
    (
        "battery-power-without-battery",
        _edit(X60, "[hardware.battery]\ncapacity_mah = 6000\n", ""),
        "`$.power`",
    ),
]


@pytest.mark.parametrize(("text", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_profile_names_file_and_field(short_tmp: Path, text: str, field: str) -> None:
    path = short_tmp / "device-profile.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert field in message, message


def test_setpoint_outside_range_message() -> None:
    text = _edit(FRIDGE, "setpoint_c = 4.0", "setpoint_c = 9.5")
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "fridge.toml")
    message = str(info.value)
    assert "setpoint_c" in message
    assert "9.5" in message
    assert "[1.0, 8.0]" in message


def test_setpoint_outside_range_names_full_field_path() -> None:
    text = _edit(FRIDGE, "setpoint_c = 4.0", "setpoint_c = 9.5")
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "fridge.toml")
    assert "`$.hardware.cabinets[0].setpoint_c`" in str(info.value)


def test_malformed_toml_names_file(short_tmp: Path) -> None:
    path = short_tmp / "broken.toml"
    path.write_text(X60 + "\n[[[oops\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "malformed TOML" in message
    assert "line" in message


def test_non_utf8_profile_is_a_profile_error(short_tmp: Path) -> None:
    path = short_tmp / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_custom_type_is_accepted(short_tmp: Path) -> None:
    path = short_tmp / "robot.toml"
    path.write_text(_edit(X60, 'type = "phone"', 'type = "x-acme-robot"'))
    assert load_profile(path).type == "x-acme-robot"


@pytest.mark.parametrize("kind", ["robot", "x-", "x-Acme-Robot", "acme-robot", "x-acme_robot"])
def test_unknown_types_are_refused(kind: str) -> None:
    with pytest.raises(ProfileError, match=r"unknown device type"):
        parse_profile(_edit(X60, 'type = "phone"', f'type = "{kind}"'))


def test_parse_profile_accepts_bytes() -> None:
    assert parse_profile(X60.encode()) == load_builtin("nokia-x60")


# --- Hypothesis round trip ---------------------------------------------------------------

texts = st.text(min_size=1, max_size=200)
shorts = st.text(min_size=1, max_size=64)
custom_types = st.from_regex(r"x-[a-z0-9]{1,8}(-[a-z0-9]{1,8}){1,3}", fullmatch=True)
celsius = st.floats(min_value=-60.0, max_value=60.0, allow_nan=False)
pixels = st.integers(min_value=1, max_value=65536)

cameras = st.builds(
    Camera,
    megapixels=st.floats(min_value=0, max_value=1000, exclude_min=True, allow_nan=False),
    position=st.sampled_from(["rear", "front", "external"]),
    optics=st.text(max_size=30),
)
displays = st.builds(
    Display,
    diagonal_in=st.floats(min_value=0, max_value=400, exclude_min=True, allow_nan=False),
    resolution=st.tuples(pixels, pixels),
    curved=st.booleans(),
    touch=st.booleans(),
)
audios = st.builds(Audio, channels=st.integers(min_value=1, max_value=64))


@st.composite
def cabinet_lists(draw: st.DrawFn) -> list[Cabinet]:
    names = draw(st.lists(shorts, max_size=3, unique=True))
    out: list[Cabinet] = []
    for name in names:
        low, high = sorted(draw(st.lists(celsius, min_size=2, max_size=2, unique=True)))
        setpoint = draw(st.floats(min_value=low, max_value=high, allow_nan=False))
        out.append(
            Cabinet(
                name=name,
                setpoint_min_c=low,
                setpoint_max_c=high,
                setpoint_c=setpoint,
                temperature_sensor=draw(st.booleans()),
            )
        )
    return out


hardwares = st.builds(
    Hardware,
    chipset=st.none()
    | st.builds(Chipset, name=texts, cores=st.integers(min_value=1, max_value=1024)),
    cameras=st.lists(cameras, max_size=3),
    displays=st.lists(displays, max_size=2),
    battery=st.none() | st.builds(Battery, capacity_mah=st.integers(1, 1_000_000)),
    modem=st.none()
    | st.builds(
        Modem,
        generations=st.lists(st.sampled_from(["2G", "3G", "4G", "5G"]), min_size=1, max_size=4),
    ),
    sensors=st.none() | st.builds(Sensors, kinds=st.lists(shorts, max_size=4)),
    cabinets=cabinet_lists(),
    door_sensor=st.none() | st.builds(DoorSensor, doors=st.lists(shorts, min_size=1, max_size=3)),
    speaker=st.none() | audios,
    microphone=st.none() | audios,
)


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    hardware = draw(hardwares)
    powers = ["mains", "battery"] if hardware.battery is not None else ["mains"]
    return Profile(
        name=draw(texts),
        vendor=draw(texts),
        model=draw(texts),
        type=draw(st.sampled_from(KNOWN_TYPES) | custom_types),
        security_level=draw(st.sampled_from(["SL1", "SL2", "SL3", "SL4", "SL5"])),
        power=draw(st.sampled_from(powers)),
        hardware=hardware,
    )


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(profiles())
def test_toml_round_trip(profile: Profile) -> None:
    text = tomli_w.dumps(to_dict(profile))
    back = parse_profile(text, "generated.toml")
    assert back == profile
    assert back.capabilities() == profile.capabilities()
    assert back.summary() == profile.summary()
