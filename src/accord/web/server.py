"""The control center's HTTP server: the page, its scripts, the event streams and
the actions, on 127.0.0.1 only, behind ``guard``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web

from accord.control.aio import AsyncControlClient
from accord.errors import AccordError
from accord.web import actions, guard, streams
from accord.web.hub import Hub

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never another interface: the token is the only other lock
DEFAULT_PORT = 7480
STATIC = resources.files("accord.web") / "static"
SHUTDOWN_S = 2.0


@dataclass(frozen=True)
class Served:
    url: str  # with the token: what the person opens
    port: int
    runner: web.AppRunner
    hub: Hub

    async def close(self) -> None:
        await self.hub.stop()  # ends every page's event stream first
        await self.runner.cleanup()


def build(control: AsyncControlClient, hub: Hub, token: str) -> web.Application:
    app = web.Application(middlewares=[guard.middleware(token)])
    app[streams.HUB] = hub
    app[streams.CONTROL] = control
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/events", streams.events)
    app.router.add_get("/events/kv", streams.kv_events)
    app.router.add_get("/events/sensors", streams.sensor_events)
    app.router.add_post("/api/{method}", actions.handle)
    return app


async def serve(socket_path: Path, home: str, port: int = DEFAULT_PORT) -> Served:
    """Start serving the node whose control socket is ``socket_path``; ``port`` 0
    takes a free one. The node need not be running yet: the page waits for it."""
    control = AsyncControlClient(socket_path)
    hub = Hub(control, home)
    token = guard.new_token()
    runner = web.AppRunner(
        build(control, hub, token),
        handler_cancellation=True,  # a closed tab ends its streams at once
        shutdown_timeout=SHUTDOWN_S,
        access_log=None,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise AccordError(f"cannot serve on {HOST}:{port}: {exc.strerror or exc}") from None
    bound = int(runner.addresses[0][1])
    await hub.start()
    return Served(f"http://{HOST}:{bound}/?token={token}", bound, runner, hub)


async def _index(_request: web.Request) -> web.Response:
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html")


TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = TYPES.get(Path(name).suffix)
    file = STATIC / name
    if kind is None or "/" in name or not file.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=file.read_bytes(), content_type=kind, charset="utf-8")
