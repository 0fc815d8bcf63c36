"""The household as the control center knows it, kept up to date from the local
node and fanned out to every open page.

One hub per server, whatever the number of pages: it follows the node's ``watch``
stream (devices coming and going, and whether the node itself answers), the
notification and clipboard streams, and polls what has no stream (apps, batteries,
rules, transfers) once a second and at once after an action. Each page gets the
current state when it connects, then only the changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, ControlError

log = logging.getLogger(__name__)

RETRY_S = 0.3  # how soon to try a node that did not answer again
POLL_S = 1.0  # what has no watch stream (apps, batteries...) is asked for this often
SLOW_EVERY = 5  # batteries, rules and transfers: every 5th poll
QUEUE_MAX = 1000  # a page this far behind is dropped; its EventSource reconnects
LOG_LINES = 200

Event = tuple[str, Any]


class Hub:
    def __init__(self, control: AsyncControlClient, home: str) -> None:
        self.control = control
        self.home = home
        self.node: dict[str, Any] = {"up": False, "error": "connecting to the node..."}
        self.devices: dict[str, Any] = {}
        self.topics: dict[str, Any] = {}  # apps, battery, rules, ... : the last published
        self.pairing: dict[str, Any] | None = None
        self.lines: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._pages: set[asyncio.Queue[Event | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._pair_task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    # -- pages ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "node": self.node,
            "devices": list(self.devices.values()),
            "pairing": self.pairing,
            "log": list(self.lines),
            **self.topics,
        }

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of the changes from now on (None: the server is stopping)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_MAX)
        self._pages.add(queue)
        try:
            yield queue
        finally:
            self._pages.discard(queue)

    def publish(self, kind: str, data: Any) -> None:
        for queue in list(self._pages):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                self._pages.discard(queue)  # its page reconnects and starts afresh
                queue.get_nowait()
                queue.put_nowait(None)

    def say(self, text: str, level: str = "info") -> None:
        """A line in the page's event log."""
        line = {"at": time.time(), "text": text, "level": level}
        self.lines.append(line)
        self.publish("log", line)

    def kick(self) -> None:
        """Poll now: an action just changed something the page shows."""
        self._kick.set()

    # -- life -------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow_devices(), name="web-devices"),
            asyncio.create_task(self._poll(), name="web-poll"),
            asyncio.create_task(
                self._follow("notifications_watch", self._notifications), name="web-notes"
            ),
            asyncio.create_task(self._follow("clip_watch", self._clipboard), name="web-clip"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._pair_task] if self._pair_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in list(self._pages):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # -- the node and its devices -------------------------------------------

    async def _follow_devices(self) -> None:
        while True:
            try:
                status = await self.control.call("status")
                self._node_up(status)
                async for event in self.control.stream("watch"):
                    self._device(event)
                raise ControlError("the node ended its watch stream")
            except AccordError as exc:
                self._node_down(exc)
            await asyncio.sleep(RETRY_S)

    def _node_up(self, status: dict[str, Any]) -> None:
        was_up = self.node["up"]
        self.node = {"up": True, "status": status}
        self.publish("node", self.node)
        if not was_up:
            self.say(f"connected to the node {status.get('name', '')} on {self.home}")
            self.kick()

    def _node_down(self, exc: AccordError) -> None:
        error = f"{exc}" if "no node is running" in str(exc) else f"lost the node: {exc}"
        if self.node["up"] or self.node.get("error") != error:
            self.say(error, "error")
        self.node = {"up": False, "error": error}
        self.publish("node", self.node)

    def _device(self, event: dict[str, Any]) -> None:
        device = event["device"]
        old = self.devices.get(device["device_id"])
        self.devices[device["device_id"]] = device
        self.publish("device", device)
        if old is not None and old["online"] != device["online"]:
            self.say(f"{device['name']} is {'online' if device['online'] else 'offline'}")
            self.kick()
        elif old is None and event["kind"] == "joined":
            self.say(f"{device['name']} appeared ({device['standing']})")
            self.kick()
        elif old is not None and old["standing"] != device["standing"]:
            self.say(f"{device['name']} is now {device['standing']}")
            self.kick()

    # -- streams and polls --------------------------------------------------

    async def _follow(self, method: str, refresh: Callable[[], Awaitable[None]]) -> None:
        """Refresh a listing whenever the node's ``method`` stream says it changed."""
        while True:
            with contextlib.suppress(AccordError):
                await refresh()
                async for _event in self.control.stream(method):
                    await refresh()
            await asyncio.sleep(RETRY_S if self.node["up"] else RETRY_S * 3)

    def _topic(self, name: str, data: Any) -> None:
        """Publish ``data`` as topic ``name`` if it differs from what pages have."""
        if json.dumps(self.topics.get(name), sort_keys=True) != json.dumps(data, sort_keys=True):
            self.topics[name] = data
            self.publish(name, data)

    async def _notifications(self) -> None:
        self._topic("notifications", (await self.control.call("notifications"))["notifications"])

    async def _clipboard(self) -> None:
        self._topic("clipboard", await self.control.call("clip_list"))

    async def _poll(self) -> None:
        rounds = 0
        while True:
            if self.node["up"]:
                await self._quietly(self._apps)
                if rounds % SLOW_EVERY == 0:
                    await self._quietly(self._batteries)
                    await self._quietly(self._rules)
                    await self._quietly(self._transfers)
                    await self._quietly(self._stores)
                rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), POLL_S)
            self._kick.clear()

    async def _quietly(self, fetch: Callable[[], Awaitable[None]]) -> None:
        """A failed poll shows as the node's state (from the watch stream), not twice."""
        try:
            await fetch()
        except AccordError as exc:
            log.debug("web: poll failed: %s", exc)

    async def _apps(self) -> None:
        ps, installed = await asyncio.gather(
            self.control.call("ps"), self.control.call("app_ls", all=True)
        )
        self._topic(
            "apps",
            {
                "running": ps["running"],
                "installed": installed["apps"],
                "unreachable": sorted(set(ps["unreachable"]) | set(installed["unreachable"])),
            },
        )

    async def _batteries(self) -> None:
        wanted = [
            d["device_id"]
            for d in self.devices.values()
            if d["online"] and "battery" in d.get("capabilities", [])
        ]
        found = await asyncio.gather(
            *(
                self.control.call("call", device=d, target="battery.status", timeout=2.0)
                for d in wanted
            ),
            return_exceptions=True,
        )
        levels = dict(self.topics.get("battery") or {})
        for device, status in zip(wanted, found, strict=True):
            if isinstance(status, dict):
                levels[device] = status
        self._topic("battery", levels)

    async def _rules(self) -> None:
        self._topic("rules", await self.control.call("rule_ls"))

    async def _stores(self) -> None:
        stores = (await self.control.call("kv_stores"))["stores"]
        keep = ("name", "kind", "label", "merge", "keys")  # not the ever-moving clocks
        self._topic("stores", [{k: s[k] for k in keep} for s in stores])

    async def _transfers(self) -> None:
        self._topic("transfers", await self.control.call("transfers"))

    # -- pairing --------------------------------------------------------------

    def open_pairing(self, timeout: float) -> None:
        """Open a window on this device (closing one already open); its PIN, and who
        paired with it and their verification code, reach the pages as "pairing"."""
        self.close_pairing()
        self._pair_task = asyncio.create_task(self._pair(timeout), name="web-pairing")

    def close_pairing(self) -> None:
        if self._pair_task is not None and not self._pair_task.done():
            self._pair_task.cancel()  # closing the stream closes the window on the node
            self._set_pairing({"event": "closed", "reason": "closed from the page"})

    def _set_pairing(self, state: dict[str, Any]) -> None:
        self.pairing = {**state, "at": time.time()}
        self.publish("pairing", self.pairing)

    async def _pair(self, timeout: float) -> None:
        try:
            async for event in self.control.stream("pair_open", timeout=timeout):
                self._set_pairing(event)
                if event["event"] == "open":
                    self.say(f"pairing window open for {timeout:g} s")
                elif event["event"] == "paired":
                    self.say(f"paired with {event['name']}; verification code {event['code']}")
                    self.kick()
                elif event["event"] == "closed":
                    self.say(f"pairing window closed: {event['reason']}")
        except AccordError as exc:
            self._set_pairing({"event": "error", "reason": str(exc)})
            self.say(f"pairing failed: {exc}", "error")
