"""What every syncing store decides about its peers: who shares it, whose writes
count, what a peer's version vector says it has (the base of the sync classes)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from accord.data.model import DATA_VERSION, Row, Summary
from accord.data.store import Store
from accord.trust.levels import may_receive
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)


class SharedStore(Store):
    """A store shared with the members whose level may hold its label."""

    def _loaded(self) -> None:
        # Acks are soft state: after a restart, collection waits for fresh ones.
        self._acks: dict[str, dict[str, int]] = {}
        self._quiet = QuietLog(log)
        # Per origin, the highest version a relay claimed that no proven row backed
        # (see CatchingUp._finish): asking again for it would only bring the same
        # answer, so summaries claiming no more than this do not start another pull.
        self._unprovable: dict[str, int] = {}
        # When each peer's last acknowledgement came, on a counter of sync events: a
        # waiting catch-up source is skipped only for an acknowledgement newer than
        # its wait (an older one may predate what it has now, e.g. before it left).
        self._events = 0
        self._acked_at: dict[str, int] = {}

    def may_share(self, peer: str) -> bool:
        """True if this store may go to and come from ``peer``: another current member
        whose security level may receive the store's label."""
        if peer == self.device_id or peer not in self._peers.members():
            return False
        return may_receive(self._peers.level_of(peer) or "", self.label)

    def participants(self) -> list[str]:
        """The peers whose acknowledgements tombstone collection waits for: members
        that may share the store, and members whose level is not known yet."""
        out = []
        for peer in self._peers.members():
            if peer == self.device_id:
                continue
            level = self._peers.level_of(peer)
            if level is None or may_receive(level, self.label):
                out.append(peer)
        return sorted(out)

    def _counts(self, origin: str) -> bool:
        """Do ``origin``'s writes count here: this device, a member, or a former
        member (those it made while it belonged stay valid for everyone)?"""
        return (
            origin == self.device_id
            or origin in self._peers.members()
            or self._peers.former(origin) is not None
        )

    def _in_time(self, origin: str, row: Row) -> bool:
        """A former member's write counts only if made before it stopped being one
        (by the write's HLC against its signed revocation). A merge row joins several
        writes and carries only the newest's time: a former member's contribution to
        it is taken (docs/consistency.md)."""
        ended = self._peers.former(origin)
        if ended is None or self.merge is not None or row.origin != origin:
            return True
        return row.hlc.wall_ms <= int(ended * 1000)

    def _lacks(self, vv: Mapping[str, int]) -> bool:
        return any(
            seq > self._vv.get(o, 0) and seq > self._unprovable.get(o, 0) and self._counts(o)
            for o, seq in vv.items()
        )

    def _record_ack(self, peer: str, vv: Mapping[str, int]) -> None:
        self._events += 1
        self._acked_at[peer] = self._events
        known = self._acks.setdefault(peer, {})
        for origin, seq in vv.items():
            if seq > known.get(origin, 0):
                known[origin] = seq

    def summary(self, *, ask: bool = False) -> Summary:
        """What this replica has: send to every sharing peer on an interval (``ask``:
        and ask the peer for its own if it has more, see :class:`Summary`)."""
        return Summary(DATA_VERSION, self.name, dict(self._vv), ask)
