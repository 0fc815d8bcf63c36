"""A query answer cancelled while a large reply is being sent from a worker thread
(what interrupting `accord capture` does to the camera's node) must not touch the
Zenoh Query from two threads at once ("RuntimeError: Already borrowed"), and the
query must still end promptly for the asker. Real Zenoh on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from accord.bus.session import LARGE_REPLY, Bus, Replier
from accord.bus.settings import BusSettings
from accord.sim.household import free_port

ROUNDS = 24
QUERY_TIMEOUT_S = 20.0
ENDED_WITHIN_S = 5.0


@pytest.fixture
async def buses() -> AsyncIterator[tuple[Bus, Bus]]:
    port = free_port()
    server = await Bus.open(
        BusSettings(listen=(f"tcp/127.0.0.1:{port}",), multicast=False), "server"
    )
    try:
        asker = await Bus.open(
            BusSettings(connect=(f"tcp/127.0.0.1:{port}",), multicast=False), "asker"
        )
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while asker.peer_count() == 0:  # connected before the first query
                assert asyncio.get_running_loop().time() < deadline, "buses never connected"
                await asyncio.sleep(0.01)
            yield server, asker
        finally:
            await asker.close()
    finally:
        await server.close()


async def test_cancelling_an_answer_mid_reply_ends_the_query_cleanly(
    buses: tuple[Bus, Bus], caplog: pytest.LogCaptureFixture
) -> None:
    server, asker = buses
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    blob = b"x" * (4 * 1024 * 1024)
    assert len(blob) > LARGE_REPLY  # so every reply goes through a worker thread
    caplog.set_level(logging.ERROR, logger="accord.bus.session")
    try:
        for i in range(ROUNDS):
            sending = asyncio.Event()

            async def endless(_key: str, _payload: bytes, reply: Replier) -> None:
                task = asyncio.current_task()
                assert task is not None
                # cancel this answer while a reply is (most likely) in the worker thread,
                # as the RPC server does when the caller cancels its stream
                loop.call_later(0.001 * (i % 8), task.cancel)  # noqa: B023
                while True:
                    sending.set()  # noqa: B023
                    await reply(blob)

            undo = server.serve_query(f"test/cancel/{i}", endless)
            await asyncio.sleep(0.05)  # the queryable's declaration reaches the asker
            ended = asyncio.Event()
            replies = 0

            def got(_data: bytes) -> None:
                nonlocal replies
                replies += 1

            cancel = asker.query(f"test/cancel/{i}", QUERY_TIMEOUT_S, None, got, ended.set)
            try:
                await asyncio.wait_for(sending.wait(), 10)
                # the answer's drop tells the asker the query is over, long before its
                # timeout: a drop that failed or never came would leave it waiting
                try:
                    await asyncio.wait_for(ended.wait(), ENDED_WITHIN_S)
                except TimeoutError:
                    errors = [repr(c.get("exception")) for c in loop_errors]
                    pytest.fail(f"round {i}: the query never ended; loop errors: {errors}")
            finally:
                cancel()
                undo()
        await asyncio.sleep(0.2)  # let any late worker-thread reply land
    finally:
        loop.set_exception_handler(None)
    assert loop_errors == []
    assert [r.getMessage() for r in caplog.records] == []
