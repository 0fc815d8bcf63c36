"""What the ``apps`` service's methods take (RPC params, msgspec structs)."""

from __future__ import annotations

from typing import Any

import msgspec


class Grant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A member's signed consent that app ``app_id``, exactly the code ``content_hash``,
    may run on members up to the signer's own level: it lets a move or a failover
    start the app on a device whose level is above the device that hands it over.
    See :mod:`accord.apps.authority` for what is signed and when it counts."""

    app_id: str
    content_hash: str
    by: str
    """Device id of the member that signed it."""
    at: float
    signature: bytes = b""


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
    grant: Grant | None = None
    """The caller's grant for the installed bundle (kept for moves and failover)."""


class RestoreParams(msgspec.Struct, frozen=True):
    """Continue an app here: fetch what ``transfer`` holds from the caller (the bundle
    if we lack ``content_hash``, then the state), restore and start it."""

    app_id: str
    content_hash: str
    transfer: str
    state_bytes: int
    params: dict[str, Any] = {}
    grant: Grant | None = None
    """The app's grant: lets the target take the app from a caller below its level."""


class FetchParams(msgspec.Struct, frozen=True):
    transfer: str
    part: str  # "bundle" or "state"


class MoveParams(msgspec.Struct, frozen=True):
    app_id: str
    target: str
    grant: Grant | None = None
    """The mover's own grant for the running code, passed on to the target."""


class SendParams(msgspec.Struct, frozen=True):
    app_id: str
    message: Any = None


class Checkpoint(msgspec.Struct, frozen=True):
    """The last saved state of a keep-alive app (``ckpt/<app id>`` in the apps store of
    the app's state label); state and bundle live in content-addressed chunks
    (``blob/<app id>/<sha256>/<n>``). ``signature`` is the host's, over every other
    field (:func:`accord.apps.authority.checkpoint_bytes`)."""

    app_id: str
    host: str
    at: float
    content_hash: str
    bundle_blob: str
    bundle_chunks: int
    state_blob: str
    state_chunks: int
    requires: list[str] = []
    state_label: str = "S1"
    grant: Grant | None = None
    signature: bytes = b""
