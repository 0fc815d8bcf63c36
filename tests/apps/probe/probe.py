"""A test app: records its lifecycle to a file, carries a state of any size, and
fails on request at the step a test names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec

from accord.apps import Ability


class State(msgspec.Struct):
    journal: str
    blob: bytes = b""
    counter: int = 0
    fail_restore: bool = False
    crash_restore: bool = False
    refuse: bool = False


class Probe(Ability):
    def _log(self, event: str) -> None:
        with open(self.state.journal, "a") as f:
            f.write(f"{self.device_name} {event}\n")

    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        if restored:
            self.state = msgspec.msgpack.decode(restored, type=State)
            if self.state.crash_restore:
                os._exit(7)
            if self.state.fail_restore:
                raise RuntimeError("restore failed on purpose")
        else:
            size = int(params.get("size", 0))
            self.state = State(str(params["journal"]), os.urandom(size))
        self._log("start" + (" restored" if restored else ""))

    async def on_stop(self) -> None:
        self._log("stop")

    async def on_save(self) -> bytes:
        self._log("save")
        return msgspec.msgpack.encode(self.state)

    async def on_continue(self, target: str) -> bool:
        self._log("continue")
        return not self.state.refuse

    async def on_message(self, message: Any) -> Any:
        op = message.get("op")
        if op == "crash":
            os._exit(3)
        if op == "inc":
            self.state.counter += 1
        if op == "set":
            for name in ("fail_restore", "crash_restore", "refuse"):
                if name in message:
                    setattr(self.state, name, bool(message[name]))
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "sha": hashlib.sha256(self.state.blob).hexdigest(),
            "bytes": len(self.state.blob),
            "counter": self.state.counter,
            "pid": os.getpid(),
            "journal": str(Path(self.state.journal).name),
        }
