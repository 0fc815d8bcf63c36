"""Player: a track and a position that advances while it plays.

The position is computed from a monotonic start time, so it is exact whenever it
is read; it is saved as seconds and resumed from there on the next device.
Messages: {"op": "pause"}, {"op": "play"}, {"op": "seek", "position_s": S}, {"op": "get"}.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from accord.apps import Ability


class State(msgspec.Struct):
    track: str = "Symphony No. 9"
    position_s: float = 0.0
    playing: bool = True


class Player(Ability):
    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        if restored:
            self.state = msgspec.msgpack.decode(restored, type=State)
        else:
            self.state = State(track=str(params.get("track", State.track)))
        self._since = time.monotonic()

    def position(self) -> float:
        if not self.state.playing:
            return self.state.position_s
        return self.state.position_s + (time.monotonic() - self._since)

    def _settle(self) -> None:
        self.state.position_s = self.position()
        self._since = time.monotonic()

    async def on_save(self) -> bytes:
        self._settle()
        return msgspec.msgpack.encode(self.state)

    async def on_message(self, message: Any) -> Any:
        op = message.get("op") if isinstance(message, dict) else None
        self._settle()
        if op == "pause":
            self.state.playing = False
        elif op == "play":
            self.state.playing = True
        elif op == "seek":
            self.state.position_s = max(0.0, float(message.get("position_s", 0.0)))
        elif op != "get":
            raise ValueError("ops: pause, play, seek, get")
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "track": self.state.track,
            "position_s": round(self.position(), 2),
            "playing": self.state.playing,
        }
