"""What readers and watchers of a store see: entries and change sets (not on the wire)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import msgspec

from accord.clock import Hlc

log = logging.getLogger(__name__)

Source = Literal["local", "push", "catch-up"]


class Entry(msgspec.Struct, frozen=True):
    """A live key. ``device`` is the namespace: "" in a shared store, the owner's
    device id in a per-device store."""

    device: str
    key: str
    value: bytes


class Change(msgspec.Struct, frozen=True):
    """A key's new value (None: deleted), written by ``origin`` at ``hlc`` (for a
    merge store: the newest contribution's origin and time)."""

    device: str
    key: str
    value: bytes | None
    origin: str
    hlc: Hlc


class ChangeSet(msgspec.Struct, frozen=True):
    """The changes of one transaction, delivered together after it committed: a
    local batch, a peer's pushed batch, or a whole catch-up from ``peer``."""

    store: str
    source: Source
    peer: str
    changes: tuple[Change, ...]


Listener = Callable[[ChangeSet], None]


class Watchers:
    """A store's listeners, each with the key prefix and namespace it watches."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._listeners: list[tuple[Listener, str, str | None]] = []

    def subscribe(
        self, listener: Listener, prefix: str = "", device: str | None = None
    ) -> Callable[[], None]:
        entry = (listener, prefix, device)
        self._listeners.append(entry)

        def undo() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return undo

    @property
    def active(self) -> bool:
        """Does anyone listen (else a writer need not work out the changes)?"""
        return bool(self._listeners)

    def notify(self, source: Source, peer: str, changes: list[Change]) -> None:
        """Each listener gets its share of one transaction's changes in one call;
        its exceptions are logged, never raised into the store."""
        if not changes:
            return
        for listener, prefix, device in list(self._listeners):
            mine = tuple(
                c
                for c in changes
                if c.key.startswith(prefix) and (device is None or c.device == device)
            )
            if not mine:
                continue
            try:
                listener(ChangeSet(self._store, source, peer, mine))
            except Exception:
                log.exception("watcher of store %s failed", self._store)
