"""What the ``apps`` service's methods take (RPC params, msgspec structs)."""

from __future__ import annotations

from typing import Any

import msgspec


class AppRef(msgspec.Struct, frozen=True):
    app_id: str


class InstallParams(msgspec.Struct, frozen=True):
    """Fetch bundle ``transfer`` from the caller (``apps.fetch``) and install it."""

    app_id: str
    content_hash: str
    transfer: str


class RunParams(msgspec.Struct, frozen=True):
    app_id: str
    params: dict[str, Any] = {}


class RestoreParams(msgspec.Struct, frozen=True):
    """Continue an app here: fetch what ``transfer`` holds from the caller (the bundle
    if we lack ``content_hash``, then the state), restore and start it."""

    app_id: str
    content_hash: str
    transfer: str
    state_bytes: int
    params: dict[str, Any] = {}


class FetchParams(msgspec.Struct, frozen=True):
    transfer: str
    part: str  # "bundle" or "state"


class MoveParams(msgspec.Struct, frozen=True):
    app_id: str
    target: str


class SendParams(msgspec.Struct, frozen=True):
    app_id: str
    message: Any = None


class Checkpoint(msgspec.Struct, frozen=True):
    """The last saved state of a keep-alive app (``ckpt/<app id>`` in the apps store);
    state and bundle live in content-addressed chunks (``blob/<app id>/<sha256>/<n>``)."""

    app_id: str
    host: str
    at: float
    content_hash: str
    bundle_blob: str
    bundle_chunks: int
    state_blob: str
    state_chunks: int
    requires: list[str] = []
