"""Notes: a text and a cursor position, carried whole when the app moves.

Messages (``accord app send notes '{...}'``):
  {"op": "type", "text": "..."}     insert at the cursor
  {"op": "move", "cursor": N}       put the cursor at N
  {"op": "set", "text": "...", "cursor": N}
  {"op": "get"}
"""

from __future__ import annotations

from typing import Any

import msgspec

from accord.apps import Ability


class Note(msgspec.Struct):
    text: str = ""
    cursor: int = 0


class Notes(Ability):
    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        if restored:
            self.note = msgspec.msgpack.decode(restored, type=Note)
        else:
            text = str(params.get("text", ""))
            self.note = Note(text, int(params.get("cursor", len(text))))

    async def on_save(self) -> bytes:
        return msgspec.msgpack.encode(self.note)

    async def on_message(self, message: Any) -> Any:
        op = message.get("op") if isinstance(message, dict) else None
        n = self.note
        if op == "type":
            typed = str(message.get("text", ""))
            n.text = n.text[: n.cursor] + typed + n.text[n.cursor :]
            n.cursor += len(typed)
        elif op == "move":
            n.cursor = max(0, min(len(n.text), int(message.get("cursor", 0))))
        elif op == "set":
            n.text = str(message.get("text", ""))
            n.cursor = max(0, min(len(n.text), int(message.get("cursor", len(n.text)))))
        elif op != "get":
            raise ValueError("ops: type, move, set, get")
        return {"text": n.text, "cursor": n.cursor}

    def describe(self) -> dict[str, Any]:
        return {"text": self.note.text[:60], "cursor": self.note.cursor}
