"""The node's handle on one ability process, and a warm spare to start the next fast.

Requests go one at a time over the child's stdin/stdout (see :mod:`accord.apps.host`).
Pausing is SIGSTOP: while an app moves, its source copy cannot run at all, so there
are never two copies executing, and SIGCONT resumes it untouched if the move fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from accord.apps.errors import AppError
from accord.apps.host import FRAME, MAX_FRAME
from accord.apps.sandbox import read_log

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class AppFailed(AppError):
    """An app's hook raised, or its process died."""


class AbilityProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.app_id = ""
        self._lock = asyncio.Lock()
        self.paused = False
        self.expected_exit = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @classmethod
    async def spawn(cls, log_path: Path) -> AbilityProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as logfile:  # noqa: ASYNC230 (a local file, once per start)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "accord.apps.host",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=logfile,
                limit=MAX_FRAME,
                start_new_session=True,  # a terminal's Ctrl-C is the node's to handle
                cwd="/",  # not the node's folder (it may be the home)
                env=_app_environment(),
            )
        return cls(proc, log_path)

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **fields: Any) -> Any:
        """Send one request and return its reply; :class:`AppFailed` if the hook raised,
        the process died, or it did not answer within ``timeout``."""
        async with self._lock:
            if not self.alive or self.proc.stdin is None or self.proc.stdout is None:
                raise AppFailed(f"app {self.app_id} is not running ({self._tail()})")
            data = msgspec.msgpack.encode({"op": op, **fields})
            try:
                self.proc.stdin.write(FRAME.pack(len(data)) + data)
                await self.proc.stdin.drain()
                async with asyncio.timeout(timeout):
                    head = await self.proc.stdout.readexactly(FRAME.size)
                    reply = msgspec.msgpack.decode(
                        await self.proc.stdout.readexactly(FRAME.unpack(head)[0])
                    )
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise AppFailed(f"app {self.app_id} died during {op} ({self._tail()})") from exc
            except TimeoutError as exc:
                raise AppFailed(f"app {self.app_id} did not answer {op} in {timeout:g} s") from exc
        if not reply.get("ok"):
            raise AppFailed(f"app {self.app_id}: {op} failed: {reply.get('type')}: "
                            f"{reply.get('error')}")  # fmt: skip
        return reply

    def _tail(self) -> str:
        """The last line of the app's log: usually the reason it failed."""
        try:  # the app may have swapped its log for a link: read_log does not follow it
            text = read_log(self.log_path, 64 * 1024).decode(errors="replace")
        except OSError:
            text = ""
        lines = text.strip().splitlines()
        return lines[-1] if lines else f"see {self.log_path}"

    def pause(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    async def stop(self) -> None:
        """on_stop, then the process exits; killed if it does not within a few seconds."""
        self.expected_exit = True
        self.resume()
        with contextlib.suppress(AppFailed):
            await self.request("stop", timeout=STOP_TIMEOUT_S)
        await self.kill(grace=STOP_TIMEOUT_S)

    async def kill(self, grace: float = 0.0) -> None:
        self.expected_exit = True
        if self.alive and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                self.proc.kill()
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


_HINTS = ("HOME", "PWD", "OLDPWD", "USER", "LOGNAME", "MAIL")


def _app_environment() -> dict[str, str]:
    """The node's environment without what would point an app at the home (the app
    could read it back from /proc/self/environ whatever the host later sets)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCORD_", "XDG_")) and k not in _HINTS
    }


class SparePool:
    """Keeps one started, idle host process ready: ``take`` returns it and starts the
    next in the background, so an app start costs a ``load``, not a Python start."""

    def __init__(self, log_path: Callable[[], Path]) -> None:
        self._log_path = log_path
        self._next: asyncio.Task[AbilityProcess] | None = None
        self._closed = False

    def warm(self) -> None:
        if self._next is None and not self._closed:
            self._next = asyncio.get_running_loop().create_task(
                AbilityProcess.spawn(self._log_path())
            )

    async def take(self) -> AbilityProcess:
        self.warm()
        assert self._next is not None
        task, self._next = self._next, None
        proc = await task
        self.warm()
        if not proc.alive:
            return await AbilityProcess.spawn(self._log_path())
        return proc

    async def close(self) -> None:
        self._closed = True
        task, self._next = self._next, None
        if task is None:
            return
        try:  # not cancelled: a half-spawned child would be left behind
            proc = await task
        except OSError:
            return
        await proc.kill()
