"""The async store API that apps and the CLI use: :class:`DataStore` and its watchers.

The sync service (:mod:`accord.data.service`) creates one per open store and is told
of every local commit through the ``committed`` callback, so this module needs
nothing of the network.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Final, TypeVar

import msgspec

from accord.data.changes import ChangeSet, Entry
from accord.data.model import Op
from accord.data.replica import Replica
from accord.data.rules import StoreKind
from accord.data.store import BatchBuilder
from accord.errors import StoreError
from accord.trust.levels import DataLabel

T = TypeVar("T")
WATCH_QUEUE: Final = 4096  # change sets a slow watcher may fall behind before it is ended


class DataStore:
    """One store, as apps and the CLI use it. Writes are on disk when they return
    and reach the online members within milliseconds."""

    def __init__(self, replica: Replica, committed: Callable[[Replica], None]) -> None:
        self._replica = replica
        self._committed = committed  # the service pushes what was committed
        self._watches: set[Watch] = set()

    @property
    def name(self) -> str:
        return self._replica.name

    @property
    def kind(self) -> StoreKind:
        return self._replica.kind

    @property
    def label(self) -> DataLabel:
        return self._replica.label

    @property
    def replica(self) -> Replica:
        return self._replica

    async def get(self, key: str, *, device: str | None = None) -> bytes | None:
        return self._replica.get(key, device=device)

    async def get_as(self, key: str, type: type[T], *, device: str | None = None) -> T | None:
        """A value written with a msgspec-encodable object, decoded as ``type``."""
        raw = self._replica.get(key, device=device)
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreError(f"value of {key!r} is not a {type.__name__}: {exc}") from exc

    async def scan(
        self, prefix: str = "", *, device: str | None = None, limit: int | None = None
    ) -> list[Entry]:
        return self._replica.scan(prefix, device=device, limit=limit)

    async def put(self, key: str, value: object) -> None:
        """Write ``value``: bytes as they are, anything else msgspec can encode as
        MessagePack (read it back with :meth:`get_as`)."""
        self._replica.put(key, _to_bytes(value))
        self._committed(self._replica)

    async def delete(self, key: str) -> None:
        self._replica.delete(key)
        self._committed(self._replica)

    async def update(self, key: str, fn: Callable[[bytes | None], bytes]) -> None:
        self._replica.update(key, fn)
        self._committed(self._replica)

    async def commit(self, ops: Iterable[Op]) -> None:
        if self._replica.commit(ops) is not None:
            self._committed(self._replica)

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[BatchBuilder]:
        """``async with store.batch() as b: b.put(...); b.delete(...)``: all or nothing,
        here and on every peer."""
        builder = BatchBuilder()
        yield builder
        await self.commit(builder.ops)

    def watch(self, prefix: str = "", *, device: str | None = None) -> Watch:
        """Change sets under ``prefix`` from now on, local and remote, as an async
        iterator (``async with store.watch("a/") as changes: async for cs in changes``)."""
        watch = Watch(self, prefix, device)
        self._watches.add(watch)
        return watch

    def closed(self) -> None:
        for watch in list(self._watches):
            watch.close()


class Watch:
    """An async iterator of a store's :class:`ChangeSet`s. A watcher that falls
    :data:`WATCH_QUEUE` change sets behind is ended with :class:`StoreError`."""

    def __init__(self, store: DataStore, prefix: str, device: str | None) -> None:
        self._store = store
        self._queue: asyncio.Queue[ChangeSet | None] = asyncio.Queue()
        self._overflow = False
        self._undo = store.replica.subscribe(self._on_change, prefix, device=device)

    def _on_change(self, changes: ChangeSet) -> None:
        if self._queue.qsize() >= WATCH_QUEUE:
            self._overflow = True
            self.close()
            return
        self._queue.put_nowait(changes)

    def close(self) -> None:
        self._undo()
        self._store._watches.discard(self)
        self._queue.put_nowait(None)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> ChangeSet:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay ended
            if self._overflow:
                raise StoreError(f"watcher of {self._store.name!r} fell too far behind")
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    try:
        return msgspec.msgpack.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise StoreError(f"cannot store a {type(value).__name__}: {exc}") from exc
