"""Errors on the wire (docs/protocol.md, "Errors on the wire" and "Remote calls"):
a member's malformed or refused request gets a typed, sealed answer and a log line;
unauthenticated junk gets silence and a log line, never a crash.

Two real nodes in-process on 127.0.0.1; the requests are sealed by hand on the
caller's channel so they can break the rules Accord's own client keeps."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.bus import keys
from accord.node import Node
from accord.rpc.messages import RpcResult, request_decoder, result_decoder
from accord.wire.messages import DECODE_ERRORS
from tests.nodes import Mesh, household


@pytest.fixture
async def pair_of_nodes(mesh: Mesh) -> tuple[Node, Node]:
    laptop, phone = await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"))
    return laptop, phone


async def _ask(caller: Node, callee: Node, target: str, plaintext: bytes) -> list[bytes]:
    """Seal ``plaintext`` on the caller's channel to ``target`` (service/method) and
    return every raw reply."""
    channels, bus = caller._channels, caller._bus
    assert channels is not None
    assert bus is not None
    peer = callee.home.device_id
    assert await channels.ensure(peer)
    key = keys.rpc_key(peer, *target.split("/"))
    frame = channels.seal(peer, key, plaintext)
    assert frame is not None
    return [payload for _, payload in await bus.get(key, 5.0, frame)]


def _result(caller: Node, callee: Node, target: str, reply: bytes) -> RpcResult:
    assert caller._channels is not None
    key = keys.rpc_key(callee.home.device_id, *target.split("/"))
    sender, plain = caller._channels.open(key, reply)
    assert sender == callee.home.device_id  # sealed by the callee: only we can read it
    return result_decoder.decode(plain)


def _request(**fields: Any) -> bytes:
    return msgspec.msgpack.encode(fields)


async def test_no_params_may_be_nil_or_an_empty_map(pair_of_nodes: tuple[Node, Node]) -> None:
    laptop, phone = pair_of_nodes
    params: dict[str, Any] | None
    for params in (None, {}):
        (reply,) = await _ask(laptop, phone, "device/info",
                              _request(call_id=1, params=params, timeout_ms=2000))  # fmt: skip
        result = _result(laptop, phone, "device/info", reply)
        assert result.ok, result.error
    # Through the client too.
    info = await laptop.rpc.call(phone.home.device_id, "device", "info", {}, dict)
    assert info["name"] == "phone"


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"call_id": -1, "params": None, "timeout_ms": 2000}, "call_id"),
    ({"call_id": 1.5, "params": None, "timeout_ms": 2000}, "call_id"),
    ({"call_id": 1, "params": None, "timeout_ms": -5}, "timeout_ms"),
    ({"call_id": 1, "params": None, "timeout_ms": 2000, "window": -1}, "window"),
    ({"call_id": 1, "timeout_ms": 2000}, "params"),
    ({"call_id": "1", "params": None, "timeout_ms": 2000}, "call_id"),
]


async def test_a_malformed_request_gets_invalid_request_and_a_log_line(
    pair_of_nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    laptop, phone = pair_of_nodes
    caplog.set_level(logging.WARNING, logger="accord.rpc.server")
    for fields, why in MALFORMED:
        (reply,) = await _ask(laptop, phone, "device/info", _request(**fields))
        result = _result(laptop, phone, "device/info", reply)
        assert (result.ok, result.error_type) == (False, "InvalidRequest"), fields
        assert why in result.error, (fields, result.error)
    assert any("InvalidRequest" in r.getMessage() for r in caplog.records)


async def test_a_request_that_is_not_msgpack_gets_invalid_request(
    pair_of_nodes: tuple[Node, Node],
) -> None:
    laptop, phone = pair_of_nodes
    (reply,) = await _ask(laptop, phone, "device/info", b"\xc1 not msgpack")
    assert _result(laptop, phone, "device/info", reply).error_type == "InvalidRequest"


async def test_refusals_are_typed_and_logged(
    pair_of_nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    laptop, phone = pair_of_nodes
    caplog.set_level(logging.WARNING, logger="accord.rpc.server")
    request = _request(call_id=3, params={"x": 1}, timeout_ms=2000)
    (reply,) = await _ask(laptop, phone, "device/info", request)
    assert _result(laptop, phone, "device/info", reply).error_type == "InvalidParams"
    (reply,) = await _ask(laptop, phone, "device/nothing", request)
    assert _result(laptop, phone, "device/nothing", reply).error_type == "UnknownMethod"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "(InvalidParams)" in logged
    assert "(UnknownMethod)" in logged


async def test_unauthenticated_junk_gets_silence_and_a_log_line(
    pair_of_nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    laptop, phone = pair_of_nodes
    caplog.set_level(logging.WARNING, logger="accord.rpc.server")
    assert laptop._bus is not None
    key = keys.rpc_key(phone.home.device_id, "device", "info")
    # Too short to be a frame; then a frame-shaped one from a sender nobody knows.
    for junk in (b"\x01\x01short", b"\x01\x01" + b"\x07" * 16 + b"\x00" * 40):
        assert await laptop._bus.get(key, 1.0, junk) == []
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped an RPC query" in logged
    assert "from no member" in logged
    # The callee is unharmed.
    assert (await laptop.rpc.call(phone.home.device_id, "device", "info", None, dict))["name"]


_leaf = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8)
)  # fmt: skip
_values = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=5),
    max_leaves=12,
)  # fmt: skip
_requests = st.fixed_dictionaries(
    {},
    optional={"call_id": _values, "params": _values, "timeout_ms": _values, "window": _values},
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.one_of(_requests, _values))
def test_any_plaintext_decodes_to_a_valid_request_or_a_decode_error(value: Any) -> None:
    """The invariant behind InvalidRequest: whatever a member seals, decoding either
    gives a request within the documented bounds or raises one of DECODE_ERRORS
    (which the callee answers with InvalidRequest); nothing else escapes."""
    raw = msgspec.msgpack.encode(value)
    try:
        req = request_decoder.decode(raw)
    except DECODE_ERRORS:
        return
    assert req.call_id >= 0
    assert req.timeout_ms >= 0
    assert req.window >= 0


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_any_bytes_decode_to_a_request_or_a_decode_error(raw: bytes) -> None:
    with contextlib.suppress(*DECODE_ERRORS):
        request_decoder.decode(raw)
