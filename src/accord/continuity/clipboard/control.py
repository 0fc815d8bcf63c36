"""Control methods of the clipboard: ``clip_copy``, ``clip_paste`` (a stream),
``clip_watch`` (a stream) and ``clip_list``."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from accord.continuity.clipboard.messages import MAX_CLIP
from accord.continuity.clipboard.service import ClipService
from accord.continuity.errors import ClipboardError
from accord.control.server import ControlServer
from accord.trust.members import Member

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"


class ClipControl:
    def __init__(self, clip: ClipService, resolve: Callable[[str], Member]) -> None:
        self._clip = clip
        self._resolve = resolve

    def register(self, control: ControlServer) -> None:
        control.add("clip_copy", self._copy)
        control.add_stream("clip_paste", self._paste)
        control.add_stream("clip_watch", self._watch)
        control.add("clip_list", self._list)

    async def _copy(self, params: dict[str, Any]) -> dict[str, Any]:
        sensitive = bool(params.get("sensitive", False))
        if isinstance(params.get("text"), str):
            data, kind, name = params["text"].encode(), "text", ""
        elif isinstance(params.get("path"), str):
            path = Path(params["path"])
            data = await asyncio.to_thread(_read, path)
            kind, name = _kind(data), path.name
            if kind == "text":
                kind = "file"  # --file: the file, not its text
        elif isinstance(params.get("data_b64"), str):
            try:
                data = base64.b64decode(params["data_b64"], validate=True)
            except binascii.Error:
                raise ClipboardError("data_b64 is not base64") from None
            kind = _kind(data)
            name = "clipboard.bin" if kind == "file" else ""
        elif params.get("host") is True:
            data, name = (await self._clip.from_host())[1], ""
            kind = _kind(data)
            if kind == "file":  # the host offered text or an image; this is neither
                raise ClipboardError("the host's clipboard holds bytes that are no text or image")
        else:
            raise ClipboardError("copy text, a file or data")
        return await self._clip.copy(data, kind, name, sensitive)

    async def _paste(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        origin = None
        if params.get("device"):
            origin = self._resolve(str(params["device"])).device_id
        item, chunks = await self._clip.paste(origin)
        yield {"item": self._clip.item_json(item)}
        async for chunk in chunks:
            yield {"data_b64": base64.b64encode(chunk).decode()}

    async def _watch(self, _params: dict[str, Any]) -> AsyncIterator[Any]:
        queue, undo = self._clip.watch()
        try:
            for item in self._clip.items():
                yield {"kind": "held", "item": item}
            while True:
                yield await queue.get()
        finally:
            undo()

    async def _list(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"items": self._clip.items(), "driver": self._clip.driver.driver}


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_CLIP:
            raise ClipboardError(f"{path} is over the {MAX_CLIP // 2**20} MiB a copy holds")
        return path.read_bytes()
    except OSError as exc:
        raise ClipboardError(f"cannot read {path}: {exc.strerror or exc}") from None


def _kind(data: bytes) -> str:
    if data.startswith(PNG):
        return "png"
    if data.startswith(JPEG):
        return "jpeg"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "file"
    return "text"
