"""Fridge guard: watches the refrigerator's door sensor; a door open longer than
``threshold_s`` (default 60) shows an alert on the best display and sounds a tone
on the phone. Runs on any device: it reaches the hardware through the super device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from accord import SuperDevice
from accord.apps import Ability
from accord.errors import AccordError
from accord.superdevice.api import Speaker

log = logging.getLogger("fridge-guard")


class State(msgspec.Struct):
    threshold_s: float = 60.0
    alerts: int = 0
    last_alert: str = ""


class FridgeGuard(Ability):
    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        if restored:
            self.state = msgspec.msgpack.decode(restored, type=State)
        else:
            self.state = State(threshold_s=float(params.get("threshold_s", 60.0)))
        self.open_since: dict[str, float] = {}
        self.alerted: set[str] = set()
        self._task = asyncio.create_task(self._guard())

    async def on_stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def on_save(self) -> bytes:
        return msgspec.msgpack.encode(self.state)

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "threshold_s": self.state.threshold_s,
            "open": {d: round(now - t, 1) for d, t in self.open_since.items()},
            "alerts": self.state.alerts,
            "last_alert": self.state.last_alert,
        }

    async def _guard(self) -> None:
        sd: SuperDevice = self.context.superdevice()
        while True:
            try:
                sensors = await sd.best("door-sensor")
                async for reading in sensors.watch(interval_s=0.2, changes_only=False):
                    await self._check(sd, sensors.device.name, reading.doors)
            except AccordError as exc:  # the fridge went away: look again shortly
                log.warning("door sensor unavailable: %s", exc)
            await asyncio.sleep(1.0)

    async def _check(self, sd: SuperDevice, fridge: str, doors: dict[str, bool]) -> None:
        now = time.monotonic()
        for door, is_open in doors.items():
            if not is_open:
                self.open_since.pop(door, None)
                self.alerted.discard(door)
                continue
            since = self.open_since.setdefault(door, now)
            if now - since >= self.state.threshold_s and door not in self.alerted:
                self.alerted.add(door)
                await self._alert(sd, f"The {fridge} {door} door has been open for "
                                      f"{now - since:.0f} s")  # fmt: skip

    async def _alert(self, sd: SuperDevice, text: str) -> None:
        self.state.alerts += 1
        self.state.last_alert = text
        log.warning("%s", text)
        with contextlib.suppress(AccordError):
            display = await sd.best("display")
            await display.show_text(text)
        with contextlib.suppress(AccordError):
            phones = [r for r in await sd.devices("speaker") if r.type == "phone"]
            if phones:
                speaker = sd.proxy(phones[0], "speaker")
                assert isinstance(speaker, Speaker)
                await speaker.tone(880.0, 800)
