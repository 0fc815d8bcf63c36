"""Helpers for process-level tests: run the CLI, wait for conditions with deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from accord.control.client import ControlClient
from accord.errors import AccordError
from accord.sim.household import Household, SimDevice

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

T = TypeVar("T")


def accord(
    *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``accord`` command (as ``python -m accord``)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "accord", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def accord_json(*args: str) -> Any:
    proc = accord(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


class NoAnswer(AssertionError):
    """The node asked about a condition did not answer (not running, or too slow)."""


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns a truthy value, or fail after ``timeout``.

    A :class:`NoAnswer` from ``condition`` counts as "not yet", never as a yes: a
    check that something is gone cannot pass because the observer itself is down."""
    deadline = time.monotonic() + timeout
    last: T | NoAnswer | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except NoAnswer as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def online_ids(home: Path) -> set[str]:
    """The device ids the node on ``home`` sees online. Raises :class:`NoAnswer` if
    that node does not answer within 2 s: an observer that is down sees nothing, which
    must not read as "every other device is gone"."""
    client = ControlClient(home / "run" / "control.sock", timeout=2.0)
    try:
        rows = client.call("devices")
    except AccordError as exc:
        raise NoAnswer(f"the node on {home} did not answer: {exc}") from exc
    return {r["device_id"] for r in rows if r["online"]}


def wait_seen(home: Path, device_id: str, timeout: float, what: str) -> None:
    """Wait until the node on ``home`` sees ``device_id`` online."""
    wait_for(lambda: device_id in online_ids(home), timeout, what)


def wait_gone(home: Path, device_id: str, timeout: float, what: str) -> None:
    """Wait until the node on ``home`` sees ``device_id`` offline."""
    wait_for(lambda: device_id not in online_ids(home), timeout, what)


def wait_sees_all(home: Path, ids: set[str], timeout: float = 5.0) -> None:
    wait_for(lambda: online_ids(home) == ids, timeout, f"{home.name} to see {len(ids)} devices")


def running_household(
    profiles: list[str],
    prefix: str,
    settings: list[str] | None = None,
    *,
    shared: SharedProcesses | None = None,
) -> Iterator[Household]:
    """A started, paired household whose every node sees every other; stopped after.

    For module-scoped fixtures: with ``shared`` (the ``shared_processes`` fixture) the
    per-test leak check leaves the household's nodes alone, whatever their pids after
    a restart. Stopping it checks for leaks itself: every process started since it
    began must be gone."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # short: Unix socket paths
    house = Household(profiles, folder / "h", settings=settings)
    with supervised(house, shared):
        house.start()
        everyone = {d.device_id for d in house.devices}
        for dev in house.devices:
            wait_sees_all(dev.home, everyone, timeout=10)
        yield house


@contextlib.contextmanager
def supervised(house: Household, shared: SharedProcesses | None) -> Iterator[None]:
    """Run ``house`` (started inside the block) and stop it after, checking that every
    process started since the block began is gone (killing any that are not). With
    ``shared``, the per-test leak check leaves its nodes alone meanwhile."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    undo = (
        shared.add(lambda: {d.proc.pid for d in house.devices if d.proc and d.running})
        if shared is not None
        else None
    )
    try:
        yield
    finally:
        if undo is not None:
            undo()
        house.stop()
        try:
            wait_for(
                lambda: not _alive_children_except(me, before),
                5,
                "the household's processes to exit",
            )
        finally:
            for p in _alive_children_except(me, before):
                p.kill()


def _alive_children_except(me: psutil.Process, pids: set[int]) -> list[psutil.Process]:
    out = []
    for p in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.pid not in pids and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def device(house: Household, profile: str) -> SimDevice:
    return next(d for d in house.devices if d.profile == profile)
