"""Who a replica may sync with: the caller's view of the circle, injected.

The node answers from its member list and device directory; tests use
:class:`StaticPeers`. The replica asks at every use, so revocations and level
changes apply at once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Protocol


class Peers(Protocol):
    def members(self) -> Collection[str]:
        """The current members of the circle (this device may be among them)."""
        ...

    def level_of(self, device_id: str) -> str | None:
        """A member's security level (SL1..SL5), or None if not known yet."""
        ...

    def public_key(self, device_id: str) -> bytes | None:
        """A member's identity key, or a former member's (to check the provenance of
        its writes), or None."""
        ...

    def former(self, device_id: str) -> float | None:
        """When a device that is no longer a member stopped being one (Unix seconds,
        its signed revocation's time), or None if it is a member or never was one.
        Its writes made before then stay valid (docs/consistency.md)."""
        ...


class StaticPeers:
    """A fixed, editable view: for tests and the in-memory fault network. Members
    without an entry in ``levels`` have ``default_level``."""

    def __init__(
        self,
        members: Iterable[str],
        levels: Mapping[str, str] | None = None,
        *,
        default_level: str | None = "SL5",
        keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self._members = set(members)
        self._keys = dict(keys or {})
        self._former: dict[str, float] = {}
        self._levels = dict(levels or {})
        self._default = default_level

    def members(self) -> Collection[str]:
        return frozenset(self._members)

    def level_of(self, device_id: str) -> str | None:
        if device_id in self._levels:
            return self._levels[device_id]
        return self._default if device_id in self._members else None

    def public_key(self, device_id: str) -> bytes | None:
        known = device_id in self._members or device_id in self._former
        return self._keys.get(device_id) if known else None

    def former(self, device_id: str) -> float | None:
        return None if device_id in self._members else self._former.get(device_id)

    def add(self, device_id: str, level: str | None = None) -> None:
        self._members.add(device_id)
        if level is not None:
            self._levels[device_id] = level

    def revoke(self, device_id: str, at: float | None = None) -> None:
        """Take ``device_id`` out; with ``at``, its writes before then stay valid."""
        self._members.discard(device_id)
        if at is not None:
            self._former[device_id] = at
