"""Where a runner's events come from: sensor streams of members, store watches and
notification streams, each a task that reconnects while it is still wanted.

The runner says which sources it wants (:meth:`Sources.want`); each delivers events
through one callback on the event loop. Presence comes from the directory and is
not a source here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

import msgspec

from accord.data.service import DataService
from accord.errors import AccordError
from accord.hardware.messages import SensorReadings, WatchParams
from accord.rpc import RpcClient
from accord.rules.facts import Event, KvEvent, NoteEvent, SensorEvent, kv_value

log = logging.getLogger(__name__)

RETRY_S: Final = 1.0  # a lost source is tried again this often
SENSOR_INTERVAL_S: Final = 0.1  # how often a watched member checks its sensors
NOTES_METHOD: Final = "notes"  # rules.notes: this device's notifications, as they come


class Sources:
    def __init__(self, name: str, data: DataService, rpc: RpcClient,
                 deliver: Callable[[Event], None]) -> None:  # fmt: skip
        self._name = name
        self._data = data
        self._rpc = rpc
        self._deliver = deliver
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def want(self, wanted: set[tuple[str, str]]) -> None:
        """Run exactly these sources: ("sensors", device id), ("kv", store) and
        ("notes", device id)."""
        for key in set(self._tasks) - wanted:
            self._tasks.pop(key).cancel()
        for key in wanted - set(self._tasks):
            kind, what = key
            run = {"sensors": self._sensors, "kv": self._kv, "notes": self._notes}[kind]
            self._tasks[key] = asyncio.get_running_loop().create_task(self._forever(run, what))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forever(self, run: Callable[[str], Coroutine[Any, Any, None]], what: str) -> None:
        while True:
            try:
                await run(what)
            except AccordError as exc:
                log.debug("%s: rules source %s lost: %s", self._name, what, exc)
            except Exception:
                log.exception("%s: rules source %s failed", self._name, what)
            await asyncio.sleep(RETRY_S)

    async def _sensors(self, device: str) -> None:
        params = WatchParams(interval_s=SENSOR_INTERVAL_S, changes_only=True)
        async with self._rpc.stream(device, "sensors", "watch", params, SensorReadings) as items:
            async for reading in items:
                self._deliver(SensorEvent(device, msgspec.to_builtins(reading)))

    async def _kv(self, store: str) -> None:
        async with self._data.open_existing(store).watch() as changes:
            async for changeset in changes:
                for c in changeset.changes:
                    self._deliver(KvEvent(store, c.key, kv_value(c.value), c.origin))

    async def _notes(self, device: str) -> None:
        notes: Any = self._rpc.stream(device, "rules", NOTES_METHOD, None)
        async with notes as items:
            async for note in items:
                if isinstance(note, dict):
                    self._deliver(NoteEvent(device, str(note.get("app", "")),
                                            str(note.get("title", "")),
                                            str(note.get("body", ""))))  # fmt: skip


async def local_notes(watch: Callable[[], tuple[asyncio.Queue[dict[str, Any]],
                                                 Callable[[], None]]],
                      ) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
    """This device's new notifications (posted here), for ``rules.notes``."""
    queue, undo = watch()
    try:
        while True:
            event = await queue.get()
            note = event.get("notification", {})
            if event.get("kind") == "posted":  # mirrors are counted where they were posted
                yield {"app": note.get("app", ""), "title": note.get("title", ""),
                       "body": note.get("body", "")}  # fmt: skip
    finally:
        with contextlib.suppress(ValueError):
            undo()
