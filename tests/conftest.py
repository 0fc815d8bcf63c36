"""Shared fixtures. Every test fails if it leaks a process, a thread or an asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from tests.nodes import Mesh

LEAK_GRACE_S = 5.0


class SharedProcesses:
    """Processes that a module-scoped fixture keeps running across its tests (a
    household of nodes). The per-test leak check leaves them and their descendants
    alone, at whatever pids they have when it looks (a test may restart a node); the
    fixture that owns them checks for leaks itself when it stops them."""

    def __init__(self) -> None:
        self._owners: list[Callable[[], Iterable[int]]] = []

    def add(self, owner: Callable[[], Iterable[int]]) -> Callable[[], None]:
        """Register ``owner`` (returns the pids it holds now); returns the undo."""
        self._owners.append(owner)
        return lambda: self._owners.remove(owner)

    def pids(self) -> set[int]:
        """The owned processes now, with their descendants."""
        out: set[int] = set()
        for owner in self._owners:
            for pid in owner():
                out.add(pid)
                with contextlib.suppress(psutil.Error):
                    out.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        return out


@pytest.fixture(scope="session")
def shared_processes() -> SharedProcesses:
    return SharedProcesses()


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_threads(shared_processes: SharedProcesses) -> Iterator[None]:
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        shared = shared_processes.pids()
        leaked = [
            p
            for p in me.children(recursive=True)
            if p.pid not in children_before and p.pid not in shared
        ]
        leaked = [p for p in leaked if _alive(p)]
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        # asyncio's default executor threads are reused across tests; not a leak.
        threads = [t for t in threads if not t.name.startswith("asyncio_")]
        if not leaked and not threads:
            return
        if time.monotonic() > deadline:
            for p in leaked:
                p.kill()
            pytest.fail(f"test leaked processes {leaked} / threads {threads}")
        time.sleep(0.05)


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest_asyncio.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    yield
    me = asyncio.current_task()
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not tasks:
            return
        if time.monotonic() > deadline:
            for t in tasks:
                t.cancel()
            pytest.fail(f"test leaked asyncio tasks: {tasks}")
        await asyncio.sleep(0.02)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary folder: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="acc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_user_home(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    """Never touch the real user's Accord home from a test."""
    monkeypatch.setenv("ACCORD_HOME", str(short_tmp / "default-home"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    os.environ.setdefault("COLUMNS", "200")


@pytest_asyncio.fixture
async def mesh(short_tmp: Path) -> AsyncIterator[Mesh]:
    """In-process nodes on real Zenoh, each connected to those started before it."""
    from tests.nodes import Mesh  # imported here so this file stands alone (leak test)

    async with AsyncExitStack() as stack:
        yield Mesh(short_tmp, stack)
