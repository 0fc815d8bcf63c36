"""The device's own clipboard: the host's (wl-clipboard on Wayland, xclip on X11)
where it has one, or a simulated one (``accord sim``, tests, headless hosts).

Both directions: a paste here is written to the host's clipboard (``set``), and
``accord clip copy --host`` takes what the host's clipboard holds (``get``). A host
tool that is missing or fails raises :class:`HostClipboardError` (with the tool's
own first line), and from then on the node uses the simulated clipboard, which
always holds the newest item too: nothing copied or pasted is lost to a broken tool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from typing import Final

from accord.continuity.errors import ClipboardError

log = logging.getLogger(__name__)

TIMEOUT_S: Final = 5.0
MAX_READ: Final = 64 * 1024 * 1024 + 1  # a copy holds at most 64 MiB (MAX_CLIP)
_MIME: Final = {"text": "text/plain;charset=utf-8", "png": "image/png", "jpeg": "image/jpeg"}
# What ``get`` takes from the host, best first: images, then text.
_TEXT: Final = ("text/plain;charset=utf-8", "UTF8_STRING", "text/plain", "STRING")
_WANTED: Final = (("png", ("image/png",)), ("jpeg", ("image/jpeg",)), ("text", _TEXT))


class HostClipboardError(ClipboardError):
    """The host's clipboard tool is missing, failed or did not answer in time."""


class HostToolMissing(HostClipboardError):
    """The host's clipboard tool cannot be run at all (gone since it was detected)."""


class SimClipboard:
    driver = "simulated"

    def __init__(self) -> None:
        self.content: tuple[str, bytes] | None = None

    async def set(self, kind: str, data: bytes) -> None:
        self.content = (kind, data)

    async def get(self) -> tuple[str, bytes]:
        if self.content is None:
            raise ClipboardError("this device's clipboard is empty")
        return self.content


class HostTool:
    """One host clipboard tool, run as a child process per use."""

    def __init__(self, kind: str) -> None:
        if kind not in ("wayland", "x11"):
            raise ValueError(f"unknown clipboard tool kind {kind!r}")
        self.kind = kind

    @classmethod
    def detect(cls) -> HostTool | None:
        if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy"):
            return cls("wayland")
        if os.environ.get("DISPLAY") and shutil.which("xclip"):
            return cls("x11")
        return None

    async def set(self, kind: str, data: bytes) -> None:
        mime = _MIME.get(kind, "application/octet-stream")
        if self.kind == "wayland":
            argv = ["wl-copy", "--type", mime]
        else:
            argv = ["xclip", "-selection", "clipboard", "-t", mime, "-i"]
        # Both tools fork a child that keeps serving the selection with our stdout and
        # stderr open, so neither is a pipe (reading to its end would wait for that
        # child): stderr goes to a file, read if the tool failed.
        with tempfile.TemporaryFile() as err:
            proc = await _spawn(argv, asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL, err)
            try:
                await asyncio.wait_for(proc.communicate(data), TIMEOUT_S)
            except TimeoutError:
                proc.kill()  # it was handed the data and stays to serve the selection
                await proc.wait()
                return
            if proc.returncode != 0:
                err.seek(0)
                raise _failed(argv[0], proc.returncode, err.read(4096))

    async def get(self) -> tuple[str, bytes]:
        if self.kind == "wayland":
            listing = await self._read(["wl-paste", "--list-types"])
        else:
            listing = await self._read(["xclip", "-selection", "clipboard", "-o", "-t", "TARGETS"])
        offered = set(listing.decode("utf-8", "replace").split())
        for kind, names in _WANTED:
            for name in names:
                if name in offered:
                    return kind, await self._read_type(name)
        raise ClipboardError("the host's clipboard holds no text or image")

    async def _read_type(self, mime: str) -> bytes:
        if self.kind == "wayland":
            return await self._read(["wl-paste", "--no-newline", "--type", mime])
        return await self._read(["xclip", "-selection", "clipboard", "-o", "-t", mime])

    async def _read(self, argv: list[str]) -> bytes:
        proc = await _spawn(argv, asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE,
                            asyncio.subprocess.PIPE)  # fmt: skip
        try:
            out, err = await asyncio.wait_for(_read_bounded(proc), TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HostClipboardError(f"{argv[0]} did not answer within {TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            raise _failed(argv[0], proc.returncode, err)
        if len(out) >= MAX_READ:
            raise ClipboardError("the host's clipboard holds more than the 64 MiB a copy holds")
        return out


class HostClipboard:
    """The node's clipboard on a host that has one: the host tool, falling back to
    the simulated clipboard for good once the tool fails (its error is raised once,
    and kept in ``error``)."""

    def __init__(self, tool: HostTool) -> None:
        self.tool = tool
        self.fallback = SimClipboard()
        self.error = ""

    @property
    def driver(self) -> str:
        return "simulated" if self.error else "host"

    async def set(self, kind: str, data: bytes) -> None:
        await self.fallback.set(kind, data)  # held here too, whatever the tool does
        if self.error:
            return
        try:
            await self.tool.set(kind, data)
        except HostClipboardError as exc:
            self._give_up(exc)
            raise

    async def get(self) -> tuple[str, bytes]:
        """What the host's clipboard holds. A tool that fails here (an empty
        clipboard fails ``wl-paste`` and ``xclip -o`` too) only fails this copy; a tool
        that is gone makes the node fall back."""
        if self.error:
            return await self.fallback.get()
        try:
            return await self.tool.get()
        except HostToolMissing as exc:
            self._give_up(exc)
            raise

    def _give_up(self, exc: HostClipboardError) -> None:
        self.error = str(exc)
        log.warning("the host clipboard failed (%s); using the simulated one from now on", exc)


def clipboard_driver(drivers: str) -> SimClipboard | HostClipboard:
    if drivers == "host":
        tool = HostTool.detect()
        if tool is not None:
            return HostClipboard(tool)
    return SimClipboard()


async def _spawn(
    argv: list[str], stdin: int, stdout: int, stderr: object
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,  # type: ignore[arg-type]
        )
    except OSError as exc:  # gone since detect(), or not executable
        raise HostToolMissing(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


async def _read_bounded(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """The tool's stdout (the tool is killed past MAX_READ bytes) and the start of its
    stderr (both read at once, so neither pipe fills and stalls the tool)."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_out() -> bytes:
        out = bytearray()
        while len(out) < MAX_READ:
            chunk = await stdout.read(MAX_READ - len(out))
            if not chunk:
                break
            out += chunk
        if len(out) >= MAX_READ:
            proc.kill()
        return bytes(out)

    async def read_err() -> bytes:
        kept = b""
        while chunk := await stderr.read(65536):
            kept = (kept + chunk)[:4096]
        return kept

    out, err = await asyncio.gather(read_out(), read_err())
    await proc.wait()
    return out, err


def _failed(tool: str, code: int | None, stderr: bytes) -> HostClipboardError:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    why = f": {lines[0][:200]}" if lines else ""
    return HostClipboardError(f"{tool} failed (exit {code}){why}")
