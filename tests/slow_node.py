"""A node process with a deliberately slow service, for tests that kill a callee
mid-call: ``python -m tests.slow_node HOME LISTEN_ENDPOINT``."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from accord.bus.settings import BusSettings
from accord.device.home import open_home
from accord.node import Node


async def main(home: Path, listen: str) -> None:
    node = Node(open_home(home), BusSettings(listen=(listen,), multicast=False))

    async def sleep(seconds: float, caller: str) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    async def drip(seconds: float, caller: str) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(seconds)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, node.stopping.set)
    async with node:
        node.services.register("slow", "sleep", sleep, float)
        node.services.register_stream("slow", "drip", drip, float)
        print("ready", flush=True)
        await node.run_until_stopped()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
