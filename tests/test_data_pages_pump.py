"""The node's pump of pages served ahead (DataService._send_pages): a puller's next
page is built once its outbox has taken the page before (to seal and put it), so
each page goes out as soon as it is built, instead of queueing behind builds the
event loop runs between. Measured on 10 nodes: a 100,000-row catch-up's pages had
reached the puller at about half the rate they were built (issue 14, sixth session).

White-box: the service's real sending half (``_send``, its outboxes and their
drains) over the replicas of tests.test_data_sync, with a channel that seals
nothing and a bus whose puts the test lets through one at a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from accord.data import Page, Replica
from accord.data import decode as decode_sync
from accord.data.identity import ENVELOPE_DECODER
from accord.data.service import DataService
from accord.errors import UnknownStore
from tests.nodes import wait_until
from tests.test_data_sync import A, B, C, Trio


class _Stores:
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def get(self, name: str) -> Replica:
        if name != self._replica.name:
            raise UnknownStore(name)
        return self._replica


class _Channels:
    def has(self, _peer: str) -> bool:
        return True

    def seal(self, _peer: str, _key: str, plain: bytes) -> bytes:
        return plain


class _Bus:
    """Each put waits until the test lets one through (the peer's link is slow)."""

    def __init__(self) -> None:
        self.put: list[tuple[str, Page]] = []
        self.gate = threading.Semaphore(0)
        self._lock = threading.Lock()

    def put_reliably(self, key: str, frame: bytes) -> None:
        message = decode_sync(ENVELOPE_DECODER.decode(frame).message)
        assert isinstance(message, Page)
        with self._lock:
            self.put.append((key.rsplit("/", 1)[-1], message))
        assert self.gate.acquire(timeout=10)

    def pages_to(self, peer: str) -> int:
        with self._lock:
            return sum(1 for to, _ in self.put if to == peer)


class Sending:
    def __init__(self, trio: Trio) -> None:
        self.trio = trio
        self.bus = _Bus()
        service = object.__new__(DataService)
        service._outboxes = {}
        service._pumps = set()
        service._paging = set()
        service._name = "a"
        service.traffic = {}
        service.stores = _Stores(trio.r[A])  # type: ignore[assignment]
        service.channels = _Channels()  # type: ignore[assignment]
        service._bus = self.bus  # type: ignore[assignment]
        self.service = service

    async def serve(self, puller: str) -> None:
        """``puller`` pulls from A; A answers through the service, as _on_frame does."""
        (first,) = self.trio.r[A].receive(puller, self.trio.r[puller].pull_from(A))
        assert isinstance(first, Page)
        assert first.more
        self.service._send(puller, self.trio.r[A], first)
        self.service._send_due(self.trio.r[A])

    def queued(self, peer: str) -> int:
        return self.service._outboxes[peer].queue.qsize()

    async def close(self) -> None:
        for _ in range(64):
            self.bus.gate.release()
        tasks = [o.task for o in self.service._outboxes.values() if o.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def sending() -> AsyncIterator[Sending]:
    trio = Trio(page_bytes=1024)
    for i in range(100):
        trio.r[A].put(f"k{i:02}", bytes(100))
    s = Sending(trio)
    yield s
    await s.close()
    trio.close()


def _has_put(sending: Sending, peer: str, count: int) -> bool:
    return sending.bus.pages_to(peer) == count


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_next_page_is_built_as_the_outbox_takes_the_one_before(
    sending: Sending,
) -> None:
    await sending.serve(B)
    await wait_until(lambda: sending.bus.pages_to(B) == 1, 5, "the first page's put")
    await _settle()
    # The drain took the first page and is putting it: the second was built then,
    # and waits in the outbox; no third is built behind it, even as other messages
    # come and go (the node pumps after each).
    assert sending.queued(B) == 1
    sending.service._send_due(sending.trio.r[A])
    await _settle()
    assert sending.queued(B) == 1
    for put in range(2, 6):
        sending.bus.gate.release()
        await wait_until(partial(_has_put, sending, B, put), 5, f"put {put}")
        await _settle()
        assert sending.queued(B) == 1
    pages: list[Any] = [page for _, page in sending.bus.put]
    assert [p.after for p in pages[1:]] == [p.next for p in pages[:-1]]


async def test_a_slow_puller_does_not_hold_back_another(sending: Sending) -> None:
    await sending.serve(B)
    await sending.serve(C)
    await wait_until(lambda: sending.bus.pages_to(B) == 1, 5, "B's first put")
    await _settle()
    # One put at a time goes through the executor here; C's wait their turn in its
    # own drain, but pages for both are built as each outbox empties.
    for _ in range(6):
        sending.bus.gate.release()
        await _settle()
    await wait_until(lambda: sending.bus.pages_to(C) >= 3, 5, "C's pages")
    assert sending.bus.pages_to(B) >= 2
