"""What the page may ask of the node: ``POST /api/<method>`` with the method's
parameters as a JSON object. Only the control methods listed here pass, and of
``call`` only the hardware methods the pages use; the answer is the method's
result, or ``{"error": words}`` with a status that says whose fault it was.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, NodeNotRunning, RemoteError
from accord.web.hub import Hub
from accord.web.streams import CONTROL, HUB

log = logging.getLogger(__name__)

# Control methods passed through as they are. Left out on purpose: stop (the page
# does not take the node down), trust_revoke and trust_leave (irreversible; the CLI
# asks for them by name), restrict, settings and send (paths on this machine).
PASSED = frozenset(
    {
        "status", "devices", "trust_list", "trust_set_level", "pair_join",
        "ps", "app_ls", "app_install", "app_run", "app_stop", "app_move", "app_remove",
        "app_send", "kv_stores", "kv_get", "kv_put", "kv_del",
        "notify", "notifications", "notifications_dismiss", "clip_copy", "clip_list",
        "transfers", "rule_ls", "rule_show", "rule_enable", "rule_trace",
    }
)  # fmt: skip
# Remote methods the Hardware page calls through the control method ``call``.
CALLABLE = frozenset(
    {
        "device.info", "battery.status", "camera.list", "display.show", "display.clear",
        "display.current", "speaker.ring", "speaker.stop_ring", "speaker.ringing",
        "sensors.read", "thermostat.setpoints", "thermostat.set", "sim.door",
    }
)  # fmt: skip
READS = frozenset(
    {
        "status", "devices", "ps", "app_ls", "kv_stores", "kv_get", "trust_list",
        "notifications", "clip_list", "transfers", "rule_ls", "rule_show", "rule_trace",
        "device.info", "battery.status", "camera.list", "display.current",
        "speaker.ringing", "sensors.read", "thermostat.setpoints",
    }
)  # fmt: skip
CHANGES_APPS = frozenset({"app_install", "app_run", "app_stop", "app_move", "app_remove"})
PAIR_WINDOW_S = 120.0
PHOTO_SIDE_MAX = 4096  # a photo for a page: the camera scales it down for us

Action = Callable[[AsyncControlClient, dict[str, Any]], Awaitable[Any]]


async def handle(request: web.Request) -> web.Response:
    method = request.match_info["method"]
    try:
        params = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    if not isinstance(params, dict):
        return _error(400, "the body is a JSON object of parameters")
    hub = request.app[HUB]
    control = request.app[CONTROL]
    try:
        if method == "pair_open":
            hub.open_pairing(float(params.get("timeout") or PAIR_WINDOW_S))
            return web.json_response({"opening": True})
        if method == "pair_close":
            hub.close_pairing()
            return web.json_response({"closed": True})
        if method == "capture":
            return web.json_response(await _capture(control, params))
        if method == "clip_copy" and "text" not in params:
            return _error(403, "the page copies text only (the CLI copies files)")
        if method == "call":
            if str(params.get("target")) not in CALLABLE:
                return _error(403, f"the page may not call {params.get('target')!r}")
        elif method not in PASSED:
            return _error(404, f"no method {method!r} here")
        result = await control.call(method, **params)
    except NodeNotRunning as exc:
        hub.say(f"{_what(method, params, hub)} failed: {exc}", "error")
        return _error(503, str(exc), node_down=True)
    except RemoteError as exc:
        hub.say(f"{_what(method, params, hub)} failed: {exc.remote_message}", "error")
        return _error(409, exc.remote_message, type=exc.remote_type)
    except AccordError as exc:
        hub.say(f"{_what(method, params, hub)} failed: {exc}", "error")
        return _error(502, str(exc), type=type(exc).__name__)
    except (TypeError, ValueError) as exc:
        return _error(400, f"bad parameters: {exc}")
    if method in CHANGES_APPS:
        hub.kick()
    if method not in READS and str(params.get("target")) not in READS:
        hub.say(f"{_what(method, params, hub)}: done")  # the log shows what changed, not looks
    return web.json_response(result)


def _what(method: str, params: dict[str, Any], hub: Hub) -> str:
    """An action in words, for the event log (devices by name: the page sends ids)."""

    def named(device_id: Any) -> str:
        known = hub.devices.get(str(device_id))
        return str(known["name"]) if known else str(device_id)

    app, device = params.get("app", ""), named(params.get("device", ""))
    words = {
        "app_move": f"move {app} to {named(params.get('to', ''))}",
        "app_run": f"run {app}" + (f" on {named(params['on'])}" if params.get("on") else ""),
        "app_stop": f"stop {app}",
        "app_install": f"install {params.get('path', '')}",
        "pair_join": f"pair with {device}",
        "call": f"{params.get('target', '')} on {device}",
        "capture": f"photo with {device}'s camera",
        "kv_put": f"put {params.get('key', '')} in {params.get('store', '')}",
        "notify": f"notify {device}",
        "clip_copy": "copy to the clipboard",
    }
    return words.get(method, method.replace("_", " "))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _capture(control: AsyncControlClient, params: dict[str, Any]) -> dict[str, Any]:
    """Take a photo with a member's camera, sized for a page, as a data URL."""
    width = min(int(params.get("width") or 800), PHOTO_SIDE_MAX)
    height = min(int(params.get("height") or 600), PHOTO_SIDE_MAX)
    header: dict[str, Any] | None = None
    chunks: list[bytes] = []
    async for item in control.stream(
        "stream",
        device=str(params.get("device", "")),
        target="camera.capture",
        args={"width": width, "height": height},
        timeout=30.0,
    ):
        if isinstance(item, dict):
            header = item
        else:
            chunks.append(base64.b64decode(item))
    data = b"".join(chunks)
    if header is None or len(data) != header["total_bytes"]:
        raise AccordError("the camera stopped before the whole photo arrived; try again")
    mime = str(header.get("mime", "image/jpeg"))
    return {
        "width": header["width"],
        "height": header["height"],
        "bytes": len(data),
        "src": f"data:{mime};base64," + base64.b64encode(data).decode(),
    }
