"""The device's own clipboard: the host's (wl-clipboard on Wayland, xclip on X11)
where it has one, or a simulated one (``accord sim``, tests, headless hosts)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Final

TIMEOUT_S: Final = 5.0
_MIME = {"text": "text/plain;charset=utf-8", "png": "image/png", "jpeg": "image/jpeg"}


class SimClipboard:
    driver = "simulated"

    def __init__(self) -> None:
        self.content: tuple[str, bytes] | None = None

    async def set(self, kind: str, data: bytes) -> None:
        self.content = (kind, data)


class HostClipboard:
    """Writes pasted items to the host's clipboard through its command-line tool."""

    driver = "host"

    def __init__(self, command: list[str]) -> None:
        self._command = command

    @classmethod
    def detect(cls) -> HostClipboard | None:
        if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy"):
            return cls(["wl-copy", "--type"])
        if os.environ.get("DISPLAY") and shutil.which("xclip"):
            return cls(["xclip", "-selection", "clipboard", "-t"])
        return None

    async def set(self, kind: str, data: bytes) -> None:
        mime = _MIME.get(kind, "application/octet-stream")
        proc = await asyncio.create_subprocess_exec(
            *self._command, mime, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.wait_for(proc.communicate(data), TIMEOUT_S)
        except TimeoutError:
            proc.kill()  # xclip stays to serve the selection; it was handed the data
            await proc.wait()


def clipboard_driver(drivers: str) -> SimClipboard | HostClipboard:
    if drivers == "host":
        host = HostClipboard.detect()
        if host is not None:
            return host
    return SimClipboard()
