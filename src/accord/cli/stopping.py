"""Stopping a long-running command (``accord up``, ``accord web``) on SIGINT or SIGTERM.

Not ``loop.add_signal_handler``: asyncio learns of those signals through its wakeup
socket, the one every ``call_soon_threadsafe`` also writes a byte to. A node's Zenoh
threads hand every message to the loop that way, so a flood of them can fill the
socket; a signal that arrives then is lost (seen: a node flooded with strangers'
announcements went on running after SIGTERM). A Python-level handler runs in the
main thread whatever that socket holds, and puts ``stop`` on the loop's queue, which
the loop reaches on its next turn.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType


def stop_on_signals(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], object]
) -> Callable[[], None]:
    """Call ``stop`` on ``loop`` when SIGINT or SIGTERM comes (from the main thread).
    Returns what puts the handlers before back (call it before the loop closes)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop)

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in before.items():
            signal.signal(sig, old)

    return restore
