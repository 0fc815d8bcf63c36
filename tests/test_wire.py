"""The wire format: announcements round-trip, and any peer bytes either decode to a valid
announcement or raise WireError (never any other exception)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.bus import keys
from accord.device.identity import Identity, device_id_for
from accord.errors import WireError
from accord.profile import load_builtin, to_dict
from accord.wire import PROTOCOL_VERSION, Announcement, decode_announcement
from accord.wire.messages import (
    MAX_ANNOUNCEMENT_BYTES,
    PublicAnnouncement,
    decode_public,
    encode,
    sign_public,
    signed_bytes,
)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _identity(seed: int) -> Identity:
    return Identity(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def _announcement(identity: Identity, profile: str = "nokia-x60", **changes: Any) -> Announcement:
    p = load_builtin(profile)
    fields: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "device_id": identity.device_id,
        "name": p.name,
        "public_key": identity.public_bytes,
        "profile": p,
        "started_at": 1_700_000_000.5,
        "capabilities": p.capabilities(),
    }
    fields.update(changes)
    return Announcement(**fields)


BASE = _announcement(_identity(1))
BASE_BYTES = encode(BASE)


def _raw(ann: Announcement = BASE) -> dict[str, Any]:
    """The announcement as a plain dict, to craft invalid variants."""
    raw = msgspec.to_builtins(ann)
    assert isinstance(raw, dict)
    raw["public_key"] = ann.public_key  # keep bytes as bytes (msgpack bin)
    return raw


def _pack(raw: object) -> bytes:
    return msgspec.msgpack.encode(raw)


# --- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["nokia-x60", "midea-fridge", "tv"])
def test_round_trip(profile: str) -> None:
    identity = Identity.generate()
    ann = _announcement(identity, profile)
    data = encode(ann)
    assert isinstance(data, bytes)
    assert len(data) < MAX_ANNOUNCEMENT_BYTES
    back = decode_announcement(data)
    assert back == ann
    assert back.device_id == device_id_for(back.public_key) == identity.device_id
    assert back.profile == load_builtin(profile)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = _raw()
    raw["added_in_a_later_minor_version"] = {"x": [1, 2, 3]}
    assert decode_announcement(_pack(raw)) == BASE


def test_capabilities_default_to_empty() -> None:
    raw = _raw()
    del raw["capabilities"]
    assert decode_announcement(_pack(raw)).capabilities == []


# --- rejections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\xc1", b"garbage bytes", b"\xff" * 40, b"\x93\x01\x02\x03", b"\xc0"],
    ids=["empty", "zero", "reserved", "ascii", "ff", "array", "nil"],
)
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(WireError, match="invalid announcement"):
        decode_announcement(data)


@pytest.mark.parametrize("keep", [1, 10, len(BASE_BYTES) // 2, len(BASE_BYTES) - 1])
def test_truncated_is_rejected(keep: int) -> None:
    with pytest.raises(WireError):
        decode_announcement(BASE_BYTES[:keep])


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(WireError):
        decode_announcement(BASE_BYTES + b"\x00")


def test_oversized_is_rejected_before_decoding() -> None:
    data = b"\x80" + b"\x00" * MAX_ANNOUNCEMENT_BYTES
    with pytest.raises(WireError, match="exceeds"):
        decode_announcement(data)


def test_oversized_valid_announcement_is_rejected() -> None:
    padding = "x" * 40
    caps = [padding] * (MAX_ANNOUNCEMENT_BYTES // len(padding))
    data = encode(_announcement(_identity(1), capabilities=caps))
    assert len(data) > MAX_ANNOUNCEMENT_BYTES
    with pytest.raises(WireError, match=str(MAX_ANNOUNCEMENT_BYTES)):
        decode_announcement(data)


def test_at_the_size_limit_is_accepted() -> None:
    raw = _raw()
    raw["pad"] = b""  # a bin8 with a 2-byte header
    room = MAX_ANNOUNCEMENT_BYTES - (len(_pack(raw)) - 2) - 3  # a bin16 has a 3-byte header
    raw["pad"] = b"\x00" * room
    data = _pack(raw)
    assert len(data) == MAX_ANNOUNCEMENT_BYTES
    assert decode_announcement(data) == BASE


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_wrong_protocol_version(version: int) -> None:
    data = encode(_announcement(_identity(1), v=version))
    with pytest.raises(WireError, match=f"unsupported protocol version {version}"):
        decode_announcement(data)


def test_device_id_must_match_public_key() -> None:
    data = encode(_announcement(_identity(1), device_id=_identity(2).device_id))
    with pytest.raises(WireError, match="does not match its public key"):
        decode_announcement(data)


def test_public_key_of_wrong_length() -> None:
    raw = _raw()
    raw["public_key"] = raw["public_key"][:31]
    with pytest.raises(WireError, match=r"\$\.public_key"):
        decode_announcement(_pack(raw))


@pytest.mark.parametrize("device_id", ["", "A" * 26, "a" * 25, "a" * 27, "1" * 26, "a" * 25 + "/"])
def test_malformed_device_id(device_id: str) -> None:
    raw = _raw()
    raw["device_id"] = device_id
    with pytest.raises(WireError, match=r"\$\.device_id"):
        decode_announcement(_pack(raw))


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("security_level",), "SL9", "$.profile.security_level"),
        (("hardware", "battery", "capacity_mah"), -1, "$.profile.hardware.battery.capacity_mah"),
        (("hardware", "cameras", 0, "megapixels"), 0, "$.profile.hardware.cameras[0].megapixels"),
        (("hardware", "battery", "chemistry"), "li", "chemistry"),
        (("type",), "robot", "unknown device type"),
    ],
    ids=["sl9", "negative-battery", "zero-megapixels", "unknown-field", "unknown-type"],
)
def test_invalid_profile_inside(path: tuple[str | int, ...], value: object, needle: str) -> None:
    raw = _raw()
    _set(raw, ("profile", *path), value)
    with pytest.raises(WireError) as info:
        decode_announcement(_pack(raw))
    assert needle in str(info.value)


def test_cross_field_profile_rule_inside() -> None:
    fridge = to_dict(load_builtin("midea-fridge"))
    cabinets: Any = fridge["hardware"]
    cabinets["cabinets"][0]["setpoint_c"] = 30.0
    raw = _raw(_announcement(_identity(1), "midea-fridge"))
    raw["profile"] = fridge
    with pytest.raises(WireError, match="invalid announcement profile"):
        decode_announcement(_pack(raw))


MARK = "QQQQQQQQQQQQ"


def _set(raw: dict[str, Any], path: tuple[str | int, ...], value: object) -> None:
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


@pytest.mark.parametrize(
    "path",
    [
        ("name",),
        ("device_id",),
        ("capabilities", 0),
        ("profile", "name"),
        ("profile", "security_level"),
        ("profile", "hardware", "cameras", 0, "optics"),
    ],
    ids=lambda p: ".".join(map(str, p)),
)
def test_invalid_utf8_in_a_string_is_a_wire_error(path: tuple[str | int, ...]) -> None:
    raw = _raw()
    _set(raw, path, MARK)
    packed = _pack(raw)
    assert packed.count(MARK.encode()) == 1
    data = packed.replace(MARK.encode(), b"\xff" + MARK.encode()[1:])
    with pytest.raises(WireError):
        decode_announcement(data)


def test_invalid_utf8_in_an_unknown_field_is_skipped() -> None:
    raw = _raw()
    raw["unknown"] = MARK
    data = _pack(raw).replace(MARK.encode(), b"\xff" + MARK.encode()[1:])
    assert decode_announcement(data) == BASE


def test_invalid_utf8_in_a_key_is_a_wire_error() -> None:
    data = BASE_BYTES.replace(b"\xaastarted_at", b"\xaa\xfftarted_at")
    with pytest.raises(WireError, match="started_at"):
        decode_announcement(data)


def _nested_unknown_field(depth: int) -> bytes:
    """A valid announcement plus an unknown field holding ``depth`` nested arrays."""
    raw = _raw()
    head = _pack(raw)
    assert head[0] == 0x80 | len(raw)  # a fixmap; add one entry
    return bytes([head[0] + 1]) + head[1:] + _pack("zz") + b"\x91" * depth + b"\xc0"


def test_moderately_nested_unknown_field_is_skipped() -> None:
    assert decode_announcement(_nested_unknown_field(100)) == BASE


def test_deeply_nested_unknown_field_is_a_wire_error() -> None:
    data = _nested_unknown_field(10_000)
    assert len(data) <= MAX_ANNOUNCEMENT_BYTES
    with pytest.raises(WireError):
        decode_announcement(data)


# --- fuzzing: WireError or an Announcement, nothing else ---------------------------------


def _decode_or_wire_error(data: bytes) -> None:
    try:
        ann = decode_announcement(data)
    except WireError:
        return
    assert isinstance(ann, Announcement)
    assert ann.v == PROTOCOL_VERSION
    assert ann.device_id == device_id_for(ann.public_key)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_any_bytes(data: bytes) -> None:
    _decode_or_wire_error(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(BASE_BYTES)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_fuzz_mutated_announcement(data: bytes) -> None:
    _decode_or_wire_error(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = [*Announcement.__struct_fields__, "unknown"]
PROFILE_FIELDS = ["name", "vendor", "model", "type", "security_level", "power", "hardware"]


@FUZZ
@given(
    st.sampled_from(FIELDS),
    st.sampled_from(PROFILE_FIELDS),
    st.booleans(),
    msgpack_values,
)
def test_fuzz_field_values(field: str, profile_field: str, inside: bool, value: object) -> None:
    raw = _raw()
    if inside:
        raw["profile"][profile_field] = value
    else:
        raw[field] = value
    _decode_or_wire_error(_pack(raw))


# --- presence keys -----------------------------------------------------------------------

GOOD_ID = _identity(1).device_id


def test_presence_key_round_trip() -> None:
    key = keys.presence_key(GOOD_ID)
    assert key == f"accord/v1/presence/{GOOD_ID}"
    assert keys.device_from_presence(key) == GOOD_ID
    assert keys.announce_key(GOOD_ID) == f"accord/v1/announce/{GOOD_ID}"


@pytest.mark.parametrize(
    "key",
    [
        f"accord/v1/announce/{GOOD_ID}",
        f"accord/v2/presence/{GOOD_ID}",
        f"accord/v1/presence{GOOD_ID}",
        f"/accord/v1/presence/{GOOD_ID}",
        "accord/v1/presence/",
        "accord/v1/presence",
        "",
        f"accord/v1/presence/{GOOD_ID.upper()}",
        f"accord/v1/presence/{GOOD_ID[:-1]}1",
        f"accord/v1/presence/{GOOD_ID[:-1]}-",
        f"accord/v1/presence/{GOOD_ID[:-1]}",
        f"accord/v1/presence/{GOOD_ID}a",
        f"accord/v1/presence/{GOOD_ID}/extra",
        f"accord/v1/presence/extra/{GOOD_ID}",
        f"accord/v1/presence/{GOOD_ID}/",
        "accord/v1/presence/*",
    ],
    ids=[
        "announce-prefix",
        "other-version",
        "no-slash",
        "leading-slash",
        "empty-id",
        "bare-prefix",
        "empty",
        "upper-case",
        "digit-1",
        "dash",
        "too-short",
        "too-long",
        "extra-segment-after",
        "extra-segment-before",
        "trailing-slash",
        "wildcard",
    ],
)
def test_device_from_invalid_presence_key(key: str) -> None:
    assert keys.device_from_presence(key) is None


def test_device_from_presence_key_with_trailing_newline() -> None:
    assert keys.device_from_presence(keys.presence_key(GOOD_ID) + "\n") is None


# --- public announcements: signed by the device key (issue 12 §7) ------------------------


def _public(identity: Identity, **changes: Any) -> PublicAnnouncement:
    fields: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "device_id": identity.device_id,
        "name": "Phone",
        "type": "phone",
        "public_key": identity.public_bytes,
        "pairing": False,
        "seq": 1_700_000_000_000,
    }
    fields.update(changes)
    return sign_public(PublicAnnouncement(**fields), identity.sign)


PUBLIC = _public(_identity(1))
PUBLIC_BYTES = encode(PUBLIC)


def test_signed_public_announcement_round_trips() -> None:
    back = decode_public(PUBLIC_BYTES)
    assert back == PUBLIC
    assert len(back.sig) == 64


def test_signed_bytes_layout_is_as_documented() -> None:
    """The exact bytes docs/protocol.md says are signed, built by hand."""
    ann = _public(_identity(1), name="Küche", type="tv", pairing=True, seq=258)
    expected = (
        b"accord/v1/announce"
        + b"\x01"
        + ann.device_id.encode()
        + ann.public_key
        + len("Küche".encode()).to_bytes(2, "big")
        + "Küche".encode()
        + b"\x00\x02tv"
        + b"\x01"
        + (258).to_bytes(8, "big")
    )
    assert signed_bytes(ann) == expected
    _identity(1).private_key.public_key().verify(ann.sig, expected)


def test_unsigned_announcement_is_rejected() -> None:
    raw = msgspec.to_builtins(PUBLIC)
    raw["public_key"] = PUBLIC.public_key
    del raw["sig"]
    with pytest.raises(WireError, match="not signed"):
        decode_public(_pack(raw))


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Fridge"), ("type", "refrigerator"), ("pairing", True), ("seq", 2**40)],
)
def test_any_changed_field_breaks_the_signature(field: str, value: object) -> None:
    """A stranger cannot rename "Phone" to "Fridge" (or change anything else) by
    editing a genuine announcement."""
    forged = msgspec.structs.replace(PUBLIC, **{field: value})
    with pytest.raises(WireError, match="signature does not verify"):
        decode_public(encode(forged))


def test_announcement_signed_by_another_key_is_rejected() -> None:
    forger = _identity(2)
    forged = sign_public(
        msgspec.structs.replace(PUBLIC, name="Fridge", sig=b""), forger.sign
    )  # the victim's id and key, the forger's signature
    with pytest.raises(WireError, match="signature does not verify"):
        decode_public(encode(forged))
    own_key = msgspec.structs.replace(forged, public_key=forger.public_bytes)
    with pytest.raises(WireError, match="does not match its public key"):
        decode_public(encode(own_key))


def test_public_unknown_fields_are_still_ignored() -> None:
    raw = msgspec.to_builtins(PUBLIC)
    raw["public_key"] = PUBLIC.public_key
    raw["sig"] = PUBLIC.sig
    raw["later"] = [1, 2]
    assert decode_public(_pack(raw)) == PUBLIC


def _public_or_wire_error(data: bytes) -> None:
    try:
        ann = decode_public(data)
    except WireError:
        return
    assert isinstance(ann, PublicAnnouncement)
    assert ann.device_id == device_id_for(ann.public_key)
    assert ann.public_key == PUBLIC.public_key
    assert signed_bytes(ann) == signed_bytes(PUBLIC)  # nothing signed was changed


@FUZZ
@given(st.binary(max_size=1024))
def test_fuzz_public_any_bytes(data: bytes) -> None:
    _public_or_wire_error(data)


@st.composite
def mutated_public(draw: st.DrawFn) -> bytes:
    data = bytearray(PUBLIC_BYTES)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(mutated_public())
def test_fuzz_mutated_public_announcement(data: bytes) -> None:
    _public_or_wire_error(data)


@FUZZ
@given(st.sampled_from([*PublicAnnouncement.__struct_fields__, "unknown"]), msgpack_values)
def test_fuzz_public_field_values(field: str, value: object) -> None:
    raw = msgspec.to_builtins(PUBLIC)
    raw["public_key"] = PUBLIC.public_key
    raw["sig"] = PUBLIC.sig
    raw[field] = value
    _public_or_wire_error(_pack(raw))
