"""A replica of one store: the sync state machine on top of a local :class:`Store`.

Sans-IO: messages in, messages out; the caller moves them (see docs/consistency.md
for which to send when). Storage is the replica's own SQLite file; time comes from
the injected :class:`HybridClock`.

The invariant everything rests on: after every transaction, a replica's state is
exactly the join of the batches its version vector ``vv`` names (``vv[o]`` = the
highest seq of origin ``o`` such that all of ``o``'s batches up to it are applied).
A push is applied only if it is the next seq of its origin; a catch-up is staged
page by page and applied in one transaction with the responder's vector, so no
reader ever sees part of a batch and ``vv`` never claims what is not applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec

from accord.data.model import (
    DATA_VERSION,
    Page,
    Pull,
    Push,
    Row,
    Summary,
    SyncMessage,
    decode,
    encode,
)
from accord.data.rules import check_batch as check_remote_batch
from accord.data.rules import check_row, dominated, page_fit, stable_vector
from accord.data.sqlite_store import Session
from accord.data.store import Store
from accord.errors import MalformedSync, PeerNotAllowed
from accord.trust.levels import may_receive
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)


class Replica(Store):
    """A store that syncs: it takes sync messages and returns the replies."""

    def _loaded(self) -> None:
        # Acks are soft state: after a restart, collection waits for fresh ones.
        self._acks: dict[str, dict[str, int]] = {}
        self._sessions = self._file.sessions()
        blob = self._file.get_meta("session")
        self._next_session = int(blob.decode()) if blob else 1
        self._quiet = QuietLog(log)
        # Per origin, the highest version a relay claimed that no proven row backed
        # (see _finish): asking again for it would only bring the same answer, so
        # summaries claiming no more than this do not start another pull. Soft state.
        self._unprovable: dict[str, int] = {}

    # -- sync ---------------------------------------------------------------------

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

    def summary(self) -> Summary:
        """What this replica has: send to every sharing peer on an interval."""
        return Summary(DATA_VERSION, self.name, dict(self._vv))

    def pull_from(self, peer: str) -> Pull:
        """Ask ``peer`` for what we miss (resuming an unfinished catch-up from it):
        send when the peer appears."""
        if not self.may_share(peer):
            raise PeerNotAllowed(f"store {self.name!r} ({self.label}) is not shared with {peer}")
        session = self._sessions.get(peer)
        if session is None:
            session = Session(self._next_session, "", 0)
            self._next_session += 1
            with self._file.transaction():
                self._file.set_session(peer, session)
                self._file.set_meta("session", str(self._next_session).encode())
            self._sessions[peer] = session
        return Pull(
            DATA_VERSION, self.name, dict(self._vv), session.session, session.cursor, session.epoch
        )

    def receive_bytes(self, sender: str, data: bytes) -> list[bytes]:
        """:meth:`receive` on encoded messages."""
        return [encode(reply) for reply in self.receive(sender, decode(data))]

    def receive(self, sender: str, message: SyncMessage) -> list[SyncMessage]:
        """Handle one message from ``sender``; returns the replies to send back to it.

        Raises a :class:`SyncError` (and changes nothing of what it refused) for a
        message that breaks the rules; batches of a Push before the bad one stay applied.
        """
        if message.store != self.name:
            raise MalformedSync(f"message for store {message.store!r} given to {self.name!r}")
        if message.v != DATA_VERSION:
            raise MalformedSync(f"unsupported data protocol version {message.v}")
        if not self.may_share(sender):
            raise PeerNotAllowed(
                f"{sender} is not a member whose level may receive {self.label} "
                f"(store {self.name!r})"
            )
        if isinstance(message, Push):
            return self._on_push(sender, message)
        if isinstance(message, Pull):
            return self._on_pull(sender, message)
        if isinstance(message, Page):
            return self._on_page(sender, message)
        return self._on_summary(sender, message)

    def _on_push(self, sender: str, push: Push) -> list[SyncMessage]:
        for batch in push.batches:
            check_remote_batch(self.merge, batch, sender)
        ns = sender if self.kind == "per-device" else ""
        for batch in sorted(push.batches, key=lambda b: b.seq):
            have = self._vv.get(sender, 0)
            if batch.seq <= have:
                continue  # a duplicate
            if batch.seq > have + 1:
                return [self.pull_from(sender)]  # a gap: fetch state instead of waiting
            self._hlc.update(batch.hlc)
            self._watchers.notify("push", sender, self._apply_batch(batch, ns))
        return []

    def _on_pull(self, sender: str, pull: Pull) -> list[SyncMessage]:
        self._record_ack(sender, pull.vv)
        want = {origin: pull.vv.get(origin, 0) for origin in self._vv}
        after = pull.after if pull.epoch == self.epoch else 0
        rows, cursor, done = self._file.changed_rows(want, after, self._page_bytes)
        page = Page(
            DATA_VERSION,
            self.name,
            pull.session,
            self.epoch,
            after,
            cursor,
            done,
            dict(self._vv),
            tuple(rows),
        )
        replies: list[SyncMessage] = [page]
        if sender not in self._sessions and self._lacks(pull.vv):
            replies.append(self.pull_from(sender))
        return replies

    def _on_page(self, sender: str, page: Page) -> list[SyncMessage]:
        for row in page.rows:
            check_row(self.kind, self.merge, row)
            self._hlc.check(row.hlc)
        rows = self._provenant(sender, page.rows)
        session = self._sessions.get(sender)
        fit = page_fit(session, page)
        if session is None or fit == "ignore":
            return []
        session = Session(session.session, page.epoch, page.next)
        with self._file.transaction():
            if fit == "restart":
                self._file.drop_session(sender)
            self._file.stage(sender, rows)
            self._file.set_session(sender, session)
        self._sessions[sender] = session
        if not page.done:
            vv = dict(self._vv)
            return [Pull(DATA_VERSION, self.name, vv, session.session, page.next, page.epoch)]
        self._finish(sender, page.vv)
        return [self.summary()]

    def _provenant(self, sender: str, rows: tuple[Row, ...]) -> tuple[Row, ...]:
        """The rows of a page we may take: with provenance on (LWW stores), a row that
        ``sender`` relays for another origin must carry that origin's proof. The
        sender's own rows are authenticated by the channel they came on."""
        if self._signer is None or self.merge is not None:
            return rows
        kept = []
        for row in rows:
            if row.origin == sender or self.proven(row):
                kept.append(row)
            else:
                self._quiet.warn(
                    f"unproven:{sender}:{row.origin}",
                    "ignoring rows %s relayed in the name of %s without its proof",
                    sender,
                    row.origin,
                )
        return tuple(kept)

    def _finish(self, sender: str, claim: Mapping[str, int]) -> None:
        """Apply a complete catch-up in one transaction and claim the responder's vv.

        With provenance on (LWW stores), the claim for another origin is believed
        only as far as the proven rows of that origin in this catch-up reach: a
        member cannot advance another's version in our vector (which would make us
        ignore that member's real writes). The origin's own claim is believed."""
        staged = self._file.staged(sender)
        rows = [row for row in staged if self._wanted(row)]
        if rows:
            self._hlc.update(max(row.hlc for row in rows))  # ClockSkew: staged, retried later
        if self._signer is not None and self.merge is None:
            seen: dict[str, int] = {}
            for row in staged:
                for origin, seq in row.dots.items():
                    seen[origin] = max(seen.get(origin, 0), seq)
            believed = {
                origin: seq if origin == sender else min(seq, seen.get(origin, 0))
                for origin, seq in claim.items()
            }
            for origin, seq in claim.items():
                if believed[origin] < seq:  # e.g. its last batch's rows were overwritten
                    self._unprovable[origin] = max(self._unprovable.get(origin, 0), seq)
            claim = believed
        advanced = {
            origin: seq
            for origin, seq in claim.items()
            if seq > self._vv.get(origin, 0) and self._counts(origin)
        }
        with self._file.transaction():
            changes = [change for row in rows if (change := self._store_row(row))]
            for origin, seq in advanced.items():
                self._file.set_vv(origin, seq)
            self._file.drop_session(sender)
            self._file.set_meta("hlc", msgspec.msgpack.encode(self._hlc.last))
        self._vv.update(advanced)
        del self._sessions[sender]
        self._watchers.notify("catch-up", sender, changes)

    def _wanted(self, row: Row) -> bool:
        if dominated(row.dots, self._vv):
            return False  # already reflected (and maybe since collected: never revive it)
        for origin, seq in row.dots.items():
            if seq <= self._vv.get(origin, 0):
                continue
            if not self._counts(origin):
                self._quiet.warn(origin, "ignoring writes of %s: not a member", origin)
                return False
            if not self._in_time(origin, row):
                self._quiet.warn(
                    "late:" + origin, "ignoring writes of %s made after it left the circle",
                    origin,
                )  # fmt: skip
                return False
        return True

    def _on_summary(self, sender: str, summary: Summary) -> list[SyncMessage]:
        self._record_ack(sender, summary.vv)
        if self._lacks(summary.vv):
            return [self.pull_from(sender)]
        if sender in self._sessions:  # nothing left to fetch from it
            with self._file.transaction():
                self._file.drop_session(sender)
            del self._sessions[sender]
        return []

    def _lacks(self, vv: Mapping[str, int]) -> bool:
        return any(
            seq > self._vv.get(o, 0) and seq > self._unprovable.get(o, 0) and self._counts(o)
            for o, seq in vv.items()
        )

    def _record_ack(self, peer: str, vv: Mapping[str, int]) -> None:
        known = self._acks.setdefault(peer, {})
        for origin, seq in vv.items():
            if seq > known.get(origin, 0):
                known[origin] = seq

    def collect_garbage(self) -> int:
        """Drop tombstones every participant has acknowledged (and that are older than
        the grace period); returns how many. Call on the anti-entropy interval."""
        participants = self.participants()
        for gone in set(self._acks) - set(participants):
            del self._acks[gone]
        stable = stable_vector(self._vv, self._acks, participants)
        if stable is None:
            return 0
        cutoff = self._hlc.wall_ms() - self._grace_ms
        victims = [
            lseq
            for lseq, origin, seq in self._file.tombstones(cutoff)
            if seq <= stable.get(origin, 0)
        ]
        if victims:
            with self._file.transaction():
                for lseq in victims:
                    self._file.delete_row(lseq)
        return len(victims)
