"""The notifications a device holds (pure): bounded, idempotent by id, with
tombstones so that a dismissal that arrives before its notification still wins."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from accord.continuity.notify.messages import Notification

MAX_HELD: Final = 500
MAX_TOMBSTONES: Final = 4096


@dataclass
class Held:
    note: Notification
    dismissed: bool = False


class NotificationBook:
    def __init__(self) -> None:
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._tombstones: OrderedDict[str, None] = OrderedDict()

    def add(self, note: Notification) -> bool:
        """Hold ``note``; False if it is held already (a repeat) or was dismissed."""
        if note.id in self._held:
            return False
        dismissed = note.id in self._tombstones
        self._held[note.id] = Held(note, dismissed)
        while len(self._held) > MAX_HELD:
            victim = next((k for k, h in self._held.items() if h.dismissed), None)
            self._held.pop(victim if victim is not None else next(iter(self._held)))
        return not dismissed

    def dismiss(self, note_id: str) -> bool:
        """Mark ``note_id`` dismissed; True if that changed anything here."""
        held = self._held.get(note_id)
        if held is not None and held.dismissed:
            return False
        if note_id in self._tombstones:
            return False
        self._tombstones[note_id] = None
        while len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)
        if held is not None:
            held.dismissed = True
        return held is not None

    def get(self, note_id: str) -> Held | None:
        return self._held.get(note_id)

    def all(self) -> list[Held]:
        return sorted(self._held.values(), key=lambda h: (h.note.created, h.note.id))

    def newest(self, muted: tuple[str, ...]) -> Notification | None:
        for held in reversed(self.all()):
            if not held.dismissed and held.note.app not in muted:
                return held.note
        return None
