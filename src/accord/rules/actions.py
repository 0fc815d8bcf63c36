"""The runner's side of actions: where a remote action goes, and the store writes
the runner makes itself.

A call, notify or app action goes to one member's ``rules.act`` (which checks the
author's authority there, :mod:`accord.rules.acting`). A kv put is written by the
runner, into a shared store whose label the *author* may hold: the row's origin is
the runner (the data layer signs what a device writes as that device), and the
author's level decides whether the write may happen at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

from accord.data.service import DataService
from accord.errors import DeviceUnavailable, PermissionDenied
from accord.rpc import RpcClient
from accord.rules.errors import ActionRefused
from accord.rules.records import Candidate
from accord.rules.spec import BEST, Action
from accord.rules.template import render
from accord.superdevice.api import SuperDevice
from accord.trust.levels import may_receive

PS_TIMEOUT_S: Final = 3.0


async def target_of(action: Action, sd: SuperDevice, rpc: RpcClient,
                    resolve: Callable[[str], str], online: list[Candidate]) -> str:  # fmt: skip
    """The device id a remote action is for: the named member, the SuperDevice's best
    for ``best:CAPABILITY``, or for an app move the member that runs the app."""
    if action.kind == "app" and action.op == "move":
        return await _running_host(action.app, rpc, online)
    if action.device.startswith(BEST):
        capability = action.device[len(BEST) :]
        ranked = await sd.rank(capability)
        if not ranked:
            raise DeviceUnavailable(f"no online member has a {capability}")
        return ranked[0].device_id
    return resolve(action.device)


async def _running_host(app: str, rpc: RpcClient, online: list[Candidate]) -> str:
    async def ps(device: str) -> str | None:
        rows: Any = await rpc.call(device, "apps", "ps", None, timeout=PS_TIMEOUT_S)
        if isinstance(rows, list) and any(isinstance(r, dict) and r.get("app_id") == app
                                          for r in rows):  # fmt: skip
            return device
        return None

    found = await asyncio.gather(*(ps(c.device_id) for c in online), return_exceptions=True)
    hosts = sorted(h for h in found if isinstance(h, str))
    if not hosts:
        raise ActionRefused(f"{app} runs on no online member")
    return hosts[0]


async def perform_local(action: Action, variables: dict[str, Any], data: DataService,
                        author_level: str) -> Any:  # fmt: skip
    """A kv put, if the rule's author may hold the store's label."""
    if action.kind != "kv":
        raise ActionRefused(f"{action.kind} is not an action the runner does itself")
    store = data.open_existing(action.store)
    if store.kind != "shared":
        raise ActionRefused(f"{action.store} is a per-device store: a rule writes only to "
                            "shared stores")  # fmt: skip
    if not may_receive(author_level, store.label):
        raise PermissionDenied(f"the rule's author ({author_level}) may not hold "
                               f"{store.label} data in {action.store}")  # fmt: skip
    key = str(render(action.key, variables))
    value = render(action.value, variables)
    text = value if isinstance(value, str) else json.dumps(value)
    await store.put(key, text.encode())
    return {"store": action.store, "key": key}
