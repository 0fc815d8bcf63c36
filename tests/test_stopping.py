"""SIGTERM stops a node even while its loop's wakeup socket is full (a flood of
messages from Zenoh's threads fills it: every call_soon_threadsafe writes a byte)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A loop whose self-pipe is full, as a flood leaves it; then SIGTERM to itself. Exits
# 0 if the stop callback ran within 5 s, 1 if the signal was lost.
PROBE = """
import asyncio, os, signal, socket, sys
from accord.cli.stopping import stop_on_signals

async def main(way):
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    if way == "asyncio":
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
    else:
        restore = stop_on_signals(loop, stopped.set)
    wakeup = loop._csock  # the loop's own end of its self-pipe
    wakeup.setblocking(False)
    try:
        while True:
            wakeup.send(b"\\0" * 4096)
    except BlockingIOError:
        pass  # full, as a flood of messages leaves it
    os.kill(os.getpid(), signal.SIGTERM)
    try:
        await asyncio.wait_for(stopped.wait(), 5)
    except TimeoutError:
        sys.exit(1)
    if way != "asyncio":
        restore()  # the handlers from before are back
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

asyncio.run(main(sys.argv[1]))
"""


def _stops(way: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, way], capture_output=True, text=True, timeout=60
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def test_sigterm_stops_the_loop_even_with_its_wakeup_socket_full() -> None:
    assert _stops("accord")


@pytest.mark.skipif(sys.platform != "linux", reason="the self-pipe's size is Linux's")
def test_asyncios_own_signal_handling_loses_it_then() -> None:
    """Why stopping.py exists: with loop.add_signal_handler the same SIGTERM is lost."""
    assert not _stops("asyncio")
