"""Server-sent events: the hub's changes for every page (``/events``), and the two
streams a page opens only while it shows them: one store's keys and changes
(``/events/kv``) and one device's sensor readings (``/events/sensors``).

A stream whose source fails (the node stops, the device leaves) says so in a
``trouble`` event and tries again, so the page recovers by itself when it returns.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from accord.control.aio import AsyncControlClient
from accord.errors import AccordError
from accord.web.guard import SECURITY_HEADERS
from accord.web.hub import Hub

HEARTBEAT_S = 10.0  # a comment line this often tells proxies and the browser we live
RETRY_S = 1.0
TEXT_SHOWN = 2000  # characters of a text value the page shows; the rest is cut
SENSOR_INTERVAL_S = 1.0  # the thermal model moves in 1 s steps

HUB = web.AppKey("hub", Hub)
CONTROL = web.AppKey("control", AsyncControlClient)


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, kind: str, data: Any) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())


async def events(request: web.Request) -> web.StreamResponse:
    """Everything the hub knows now ("hello"), then each change as it happens."""
    hub = request.app[HUB]
    async with hub.subscribe() as queue:
        response = await _open(request)
        await _send(response, "hello", hub.snapshot())
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": still here\n\n")
                continue
            if item is None:
                return response
            await _send(response, *item)


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """A key's value for the page: text shown (cut if long), anything else summarized
    by its size and first bytes; the base64 of large values never reaches the page."""
    out = {k: v for k, v in entry.items() if k not in ("value_b64", "text")}
    text = entry.get("text")
    if isinstance(text, str) and all(c.isprintable() or c in "\n\t" for c in text[:TEXT_SHOWN]):
        out["text"] = text[:TEXT_SHOWN]
        out["cut"] = len(text) > TEXT_SHOWN
    elif "value_b64" in entry:
        head = _b64_head(entry["value_b64"])
        out["binary"] = f"{entry.get('bytes', '?')} bytes, starting {head}"
    return out


def _b64_head(value_b64: str) -> str:
    return base64.b64decode(value_b64[:24]).hex(" ")


async def kv_events(request: web.Request) -> web.StreamResponse:
    """One store: its keys and values ("entries"), then each change ("changes")."""
    control = request.app[CONTROL]
    store = request.query.get("store", "")
    response = await _open(request)
    while True:
        try:
            listing = await control.call("kv_ls", store=store, values=True)
            entries = [summarize(e) for e in listing["entries"]]
            await _send(response, "entries", {"store": store, "entries": entries,
                                              "truncated": listing["truncated"]})  # fmt: skip
            async for event in control.stream("kv_watch", store=store):
                changes = [summarize(c) for c in event["changes"]]
                await _send(response, "changes", {"store": store, "changes": changes})
        except AccordError as exc:
            await _send(response, "trouble", {"error": str(exc)})
        await asyncio.sleep(RETRY_S)


async def sensor_events(request: web.Request) -> web.StreamResponse:
    """One device's setpoint ranges ("setpoints") and its readings each second."""
    control = request.app[CONTROL]
    device = request.query.get("device", "")
    response = await _open(request)
    while True:
        try:
            setpoints = await control.call("call", device=device, target="thermostat.setpoints")
            await _send(response, "setpoints", setpoints)
            args = {"interval_s": SENSOR_INTERVAL_S, "changes_only": False}
            async for reading in control.stream(
                "stream", device=device, target="sensors.watch", args=args, timeout=3600.0
            ):
                await _send(response, "reading", reading)
        except AccordError as exc:
            await _send(response, "trouble", {"error": str(exc)})
        await asyncio.sleep(RETRY_S)
