"""`accord pair open` waits for the window's outcome in short waits; a device admitted
just as one runs out must be reported as paired, not as the window closing (the
window closes on success too). A CI run saw "5 failed attempts" for a device that
had paired: ``asyncio.wait_for`` timed out with the item already in the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from accord.trust import service
from accord.trust.pairing import Paired

T = TypeVar("T")
TV = Paired("j7g3kwrye523tnqxy5s7nmjobe", "Living-room TV", "1234")


async def test_a_device_admitted_as_the_wait_runs_out_is_not_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue: asyncio.Queue[Paired] = asyncio.Queue()

    async def times_out_after_the_put(waited: Awaitable[T], _timeout: float) -> Any:
        getting = asyncio.ensure_future(waited)
        await asyncio.sleep(0)  # the get waits on the empty queue
        queue.put_nowait(TV)  # the admission lands and wakes it, but before it runs ...
        getting.cancel()  # ... the timeout cancels it
        with pytest.raises(asyncio.CancelledError):
            await getting
        raise TimeoutError

    monkeypatch.setattr(asyncio, "wait_for", times_out_after_the_put)
    assert await service.next_paired(queue, 0.25) == TV
    assert queue.empty()


async def test_no_device_is_none_and_one_waiting_is_taken() -> None:
    queue: asyncio.Queue[Paired] = asyncio.Queue()
    assert await service.next_paired(queue, 0.01) is None
    queue.put_nowait(TV)
    assert await service.next_paired(queue, 0.01) == TV
