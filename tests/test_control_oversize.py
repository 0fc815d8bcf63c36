"""A request over the control socket's line limit gets one clear error from the node,
at any size, instead of "too long" or a broken pipe while the client still sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accord.control.client import ControlClient
from accord.control.protocol import MAX_LINE
from accord.control.server import ControlServer
from accord.errors import RemoteError


@pytest.fixture
async def socket_path(short_tmp: Path) -> AsyncIterator[Path]:
    path = short_tmp / "control.sock"
    server = ControlServer(path, "test")

    async def echo(params: dict[str, Any]) -> Any:
        return {"bytes": len(str(params.get("blob", "")))}

    server.add("echo", echo)
    await server.start()
    try:
        yield path
    finally:
        await server.stop()


@pytest.mark.parametrize("size", [MAX_LINE + 1, 12_000_000, 40_000_000])
async def test_an_oversized_request_gets_a_clear_error(socket_path: Path, size: int) -> None:
    client = ControlClient(socket_path, timeout=30)
    with pytest.raises(RemoteError) as caught:
        await asyncio.to_thread(client.call, "echo", blob="x" * size)
    assert caught.value.remote_type == "ControlError"
    assert f"over the control socket's {MAX_LINE} byte limit" in caught.value.remote_message
    # and the node serves the next request as usual
    small = await asyncio.to_thread(client.call, "echo", blob="x" * 1000)
    assert small == {"bytes": 1000}


async def test_a_request_just_under_the_limit_is_served(socket_path: Path) -> None:
    client = ControlClient(socket_path, timeout=30)
    overhead = len(b'{"id":1,"method":"echo","params":{"blob":""}}\n') + 16
    result = await asyncio.to_thread(client.call, "echo", blob="x" * (MAX_LINE - overhead))
    assert result == {"bytes": MAX_LINE - overhead}
