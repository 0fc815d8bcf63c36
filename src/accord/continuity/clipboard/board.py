"""What a device knows of the circle's clipboard (pure: the clock's ``now`` is given).

It holds this device's own copies with their bytes, and the newest descriptor of
each other member. Expiry is counted on the receiver's own clock from the moment an
item arrived, so a member whose clock is wrong cannot make an item live forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from accord.continuity.clipboard.messages import ClipItem
from accord.continuity.errors import ClipboardError

KEEP_LOCAL: Final = 4  # this device's recent copies held for pasting


@dataclass(frozen=True)
class Held:
    item: ClipItem
    expires: float  # on this device's clock
    data: bytes | None = None  # only for this device's own copies


class ClipBoard:
    def __init__(self, me: str) -> None:
        self._me = me
        self._local: list[Held] = []
        self._remote: dict[str, Held] = {}  # origin -> its newest item

    def put_local(self, item: ClipItem, data: bytes, now: float) -> None:
        self._local = [*self._local[-(KEEP_LOCAL - 1) :], Held(item, now + item.ttl_s, data)]

    def take(self, item: ClipItem, sender: str, now: float) -> bool:
        """A member's announcement. Raises if it claims to be another's; returns False
        for a repeat or an item older than what is held from that member."""
        if item.origin != sender or not item.id.startswith(sender + ":"):
            raise ClipboardError("an item's origin must be the member that announces it")
        held = self._remote.get(sender)
        if held is not None and (held.item.id == item.id or held.item.created > item.created):
            return False
        self._remote[sender] = Held(item, now + item.ttl_s)
        return True

    def latest(self, now: float, origin: str | None = None) -> ClipItem | None:
        """The newest item that has not expired (of ``origin`` only, if given)."""
        live = [h for h in self._all() if h.expires > now]
        if origin is not None:
            live = [h for h in live if h.item.origin == origin]
        if not live:
            return None
        return max(live, key=lambda h: (h.item.created, h.item.origin == self._me)).item

    def local_data(self, item_id: str, now: float) -> tuple[ClipItem, bytes] | None:
        for held in self._local:
            if held.item.id == item_id and held.expires > now and held.data is not None:
                return held.item, held.data
        return None

    def items(self, now: float) -> list[ClipItem]:
        return sorted((h.item for h in self._all() if h.expires > now), key=lambda i: i.created)

    def _all(self) -> list[Held]:
        return [*self._local, *self._remote.values()]
