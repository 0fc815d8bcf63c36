"""Transport settings: defaults, NAME=VALUE overrides, and the Zenoh config they make."""

from __future__ import annotations

import json

import pytest
import zenoh

from accord.bus.settings import BusSettings, zenoh_config
from accord.errors import TransportError

SETTABLE = [
    "connect_timeout_ms",
    "keep_alive",
    "lease_ms",
    "multicast",
    "query_timeout_ms",
    "retry_init_ms",
    "retry_max_ms",
    "shared_memory",
]


def _get(conf: zenoh.Config, key: str) -> object:
    return json.loads(conf.get_json(key))


def test_defaults() -> None:
    s = BusSettings()
    assert s.listen == ()
    assert s.connect == ()
    assert s.multicast is True
    assert s.lease_ms == 1500
    assert s.keep_alive == 4
    assert s.connect_timeout_ms == 2000
    assert s.retry_init_ms == 100
    assert s.retry_max_ms == 400
    assert s.query_timeout_ms == 2000
    assert s.shared_memory is False
    assert s.zenoh_overrides == {}


def test_no_overrides_is_equal() -> None:
    assert BusSettings().with_overrides([]) == BusSettings()


def test_known_overrides_are_converted() -> None:
    s = BusSettings().with_overrides(
        ["lease_ms=3000", "multicast=false", "keep_alive=8", "shared_memory=true"]
    )
    assert s.lease_ms == 3000
    assert isinstance(s.lease_ms, int)
    assert s.multicast is False
    assert s.keep_alive == 8
    assert s.shared_memory is True
    # Untouched settings keep their defaults.
    assert s.retry_max_ms == BusSettings().retry_max_ms


def test_overrides_keep_listen_and_connect() -> None:
    base = BusSettings(listen=("tcp/127.0.0.1:7447",), connect=("tcp/10.0.0.2:7447",))
    s = base.with_overrides(["lease_ms=2500"])
    assert s.listen == base.listen
    assert s.connect == base.connect
    assert s.lease_ms == 2500


def test_later_override_wins() -> None:
    assert BusSettings().with_overrides(["lease_ms=2000", "lease_ms=2100"]).lease_ms == 2100


def test_raw_zenoh_overrides_use_slash_paths() -> None:
    s = BusSettings().with_overrides(
        ["zenoh.transport.link.tx.lease=5000", 'zenoh.scouting.multicast.address="224.0.0.1:7447"']
    )
    assert s.zenoh_overrides == {
        "transport/link/tx/lease": "5000",
        "scouting/multicast/address": '"224.0.0.1:7447"',
    }
    # Settings made from others keep the earlier raw overrides.
    s2 = s.with_overrides(["lease_ms=3000"])
    assert s2.zenoh_overrides == s.zenoh_overrides


def test_value_may_contain_equals_sign() -> None:
    s = BusSettings().with_overrides(['zenoh.id.tag="a=b"'])
    assert s.zenoh_overrides == {"id/tag": '"a=b"'}


@pytest.mark.parametrize("name", ["nope", "lease", "listen", "connect", "zenoh_overrides"])
def test_unknown_setting(name: str) -> None:
    with pytest.raises(TransportError) as info:
        BusSettings().with_overrides([f"{name}=1"])
    message = str(info.value)
    assert f"unknown setting {name!r}" in message
    for known in SETTABLE:
        assert known in message
    assert "zenoh.<path>" in message


@pytest.mark.parametrize("pair", ["lease_ms", "", "lease_ms:3000", "=1", " =1"])
def test_malformed_pair(pair: str) -> None:
    with pytest.raises(TransportError, match="is not NAME=VALUE") as info:
        BusSettings().with_overrides([pair])
    assert repr(pair) in str(info.value)


@pytest.mark.parametrize(
    ("pair", "field"),
    [
        ("lease_ms=abc", "$.lease_ms"),
        ("lease_ms=0", "$.lease_ms"),
        ("lease_ms=3600001", "$.lease_ms"),
        ("keep_alive=101", "$.keep_alive"),
        ("multicast=maybe", "$.multicast"),
        ("retry_max_ms=", "$.retry_max_ms"),
    ],
)
def test_invalid_value(pair: str, field: str) -> None:
    with pytest.raises(TransportError, match="invalid setting") as info:
        BusSettings().with_overrides([pair])
    assert field in str(info.value)


def test_zenoh_config_reflects_settings() -> None:
    s = BusSettings().with_overrides(["lease_ms=3000", "keep_alive=6", "connect_timeout_ms=900"])
    conf = zenoh_config(s)
    assert _get(conf, "mode") == "peer"
    assert _get(conf, "transport/link/tx/lease") == 3000
    assert _get(conf, "transport/link/tx/keep_alive") == 6
    assert _get(conf, "connect/timeout_ms") == 900
    assert _get(conf, "scouting/multicast/enabled") is True
    assert _get(conf, "transport/shared_memory/enabled") is False
    assert _get(conf, "listen/endpoints") == ["tcp/[::]:0"]
    assert _get(conf, "connect/endpoints") == []


def test_zenoh_config_defaults() -> None:
    conf = zenoh_config(BusSettings())
    assert _get(conf, "transport/link/tx/lease") == 1500
    assert _get(conf, "connect/exit_on_failure") is True


def test_zenoh_config_multicast_off() -> None:
    conf = zenoh_config(BusSettings().with_overrides(["multicast=false"]))
    assert _get(conf, "scouting/multicast/enabled") is False


def test_zenoh_config_endpoints() -> None:
    s = BusSettings(listen=("tcp/127.0.0.1:7447",), connect=("tcp/127.0.0.1:7448",))
    conf = zenoh_config(s)
    assert _get(conf, "listen/endpoints") == ["tcp/127.0.0.1:7447"]
    assert _get(conf, "connect/endpoints") == ["tcp/127.0.0.1:7448"]


def test_raw_override_beats_named_setting() -> None:
    s = BusSettings().with_overrides(["lease_ms=3000", "zenoh.transport.link.tx.lease=5000"])
    assert s.lease_ms == 3000
    assert _get(zenoh_config(s), "transport/link/tx/lease") == 5000


@pytest.mark.parametrize(
    "pair",
    [
        "zenoh.transport.link.tx.lease=notanumber",
        "zenoh.transport.link.tx.lease={",
        "zenoh.no.such.key=1",
        'zenoh.mode="sideways"',
    ],
)
def test_invalid_raw_zenoh_override(pair: str) -> None:
    s = BusSettings().with_overrides([pair])  # raw values are checked by Zenoh itself
    with pytest.raises(TransportError, match="invalid Zenoh setting"):
        zenoh_config(s)


def test_spaces_around_name_and_value_are_ignored() -> None:
    assert BusSettings().with_overrides([" lease_ms = 3000 "]).lease_ms == 3000


@pytest.mark.parametrize("pair", ["zenoh.=1", "zenoh.a..b=1", "zenoh.a.=1"])
def test_empty_zenoh_path_is_rejected(pair: str) -> None:
    with pytest.raises(TransportError, match="names no Zenoh config path"):
        BusSettings().with_overrides([pair])
