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
        """A member's identity key (to check the provenance of its writes), or None."""
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
        self._levels = dict(levels or {})
        self._default = default_level

    def members(self) -> Collection[str]:
        return frozenset(self._members)

    def level_of(self, device_id: str) -> str | None:
        if device_id in self._levels:
            return self._levels[device_id]
        return self._default if device_id in self._members else None

    def public_key(self, device_id: str) -> bytes | None:
        return self._keys.get(device_id) if device_id in self._members else None

    def add(self, device_id: str, level: str | None = None) -> None:
        self._members.add(device_id)
        if level is not None:
            self._levels[device_id] = level

    def revoke(self, device_id: str) -> None:
        self._members.discard(device_id)
