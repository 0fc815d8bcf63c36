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

A replica catches up from one source at a time: while a catch-up from one member
is in flight, others that have more wait their turn (:meth:`want_from` defers
them), and each then sends only what the first did not bring. So a returning
device receives each missing row about once, whatever the size of the household.
A source that stalls (no page for ``catchup_stall_ms``) hands its turn on; its
staged pages stay and resume later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import msgspec

from accord.clock import Hlc
from accord.data import catchup
from accord.data import provenance as pv
from accord.data.changes import Change
from accord.data.merge import lww_wins
from accord.data.model import (
    DATA_VERSION,
    PULL_AHEAD,
    Page,
    Pull,
    Push,
    Row,
    Summary,
    SyncMessage,
    check_page,
    decode,
    encode,
)
from accord.data.rules import check_batch as check_remote_batch
from accord.data.rules import check_row, dominated, page_fit, stable_vector
from accord.data.sqlite_store import Flat, Session
from accord.data.store import Store
from accord.device.identity import verify
from accord.errors import MalformedSync, PeerNotAllowed
from accord.trust.levels import may_receive
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

_staged_decoder: Final = msgspec.msgpack.Decoder(catchup.Staged)
_staged_encoder: Final = msgspec.msgpack.Encoder()


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
        # One catch-up at a time (soft state): the source in flight, when we last
        # heard from it or asked it, and the members waiting their turn, in order.
        self._active: str | None = None
        self._asked_ms = 0
        self._deferred: dict[str, None] = {}
        self._outgoing: list[tuple[str, SyncMessage]] = []
        # Pages promised beyond the first (Pull.ahead), per puller: the pull, where
        # the next page starts, and how many more may go.
        self._serving: dict[str, tuple[Pull, int, int]] = {}
        self._verified: dict[tuple[bytes, bytes], bool] = {}  # batch signatures checked

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
        """Ask ``peer`` for what we miss now (resuming an unfinished catch-up from it),
        whatever else is in flight: ``peer`` becomes the source of the catch-up."""
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
        if self._active not in (None, peer):
            self._deferred[self._active] = None
        self._active = peer
        self._deferred.pop(peer, None)
        self._asked_ms = self._hlc.monotonic_ms()
        return Pull(
            DATA_VERSION,
            self.name,
            dict(self._vv),
            session.session,
            session.cursor,
            session.epoch,
            PULL_AHEAD,
        )

    def want_from(self, peer: str) -> Pull | None:
        """``peer`` has (or may have) what we miss: the Pull to send it now, or None if
        a catch-up from another member is in flight (``peer`` waits its turn, see
        :meth:`take_pulls`) or one from ``peer`` itself is (asking again would only
        make it build the same page twice)."""
        if not self.may_share(peer):
            raise PeerNotAllowed(f"store {self.name!r} ({self.label}) is not shared with {peer}")
        if self._active is None or (self._active == peer and self._stalled()):
            return self.pull_from(peer)
        if self._active != peer:
            self._deferred[peer] = None
        return None

    def take_pulls(self) -> list[tuple[str, SyncMessage]]:
        """Pulls due to members other than the one whose message was just handled (the
        next source's turn): send each to its peer. Call after every :meth:`receive`,
        :meth:`peer_gone` and :meth:`tick`."""
        out, self._outgoing = self._outgoing, []
        return out

    def peer_gone(self, peer: str) -> None:
        """``peer`` went offline: if it was the source, the next one's turn."""
        self._deferred.pop(peer, None)
        if self._active == peer:
            self._active = None
            self._next_source()

    def tick(self) -> None:
        """Call every second or so: a source that stalled hands its turn on (or, if
        no one else waits, is asked again)."""
        if self._active is None or not self._stalled():
            return
        stalled = self._active
        self._active = None
        if self._deferred:
            self._deferred[stalled] = None
            self._next_source()
        elif self.may_share(stalled):
            self._outgoing.append((stalled, self.pull_from(stalled)))

    def catching_up(self) -> str | None:
        """The member a catch-up is in flight from, if any."""
        return self._active

    def _stalled(self) -> bool:
        return self._hlc.monotonic_ms() - self._asked_ms >= self._stall_ms

    def _next_source(self) -> None:
        """Start the catch-up from the next waiting member that still has more than
        we do (as far as its last acknowledgement tells)."""
        while self._deferred and self._active is None:
            peer = next(iter(self._deferred))
            del self._deferred[peer]
            if not self.may_share(peer):
                continue
            known = self._acks.get(peer)
            if known is not None and not self._lacks(known) and peer not in self._sessions:
                continue
            self._outgoing.append((peer, self.pull_from(peer)))

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
            if batch.seq > have + 1:  # a gap: fetch state instead of waiting
                pull = self.want_from(sender)
                return [] if pull is None else [pull]
            self._hlc.update(batch.hlc)
            leaves = self._batch_leaves(batch, ns)
            self._watchers.notify("push", sender, self._apply_batch(batch, ns, leaves))
        return []

    def _on_pull(self, sender: str, pull: Pull) -> list[SyncMessage]:
        self._record_ack(sender, pull.vv)
        self._serving.pop(sender, None)  # a new pull replaces what the last one asked
        after = pull.after if pull.epoch == self.epoch else 0
        replies: list[SyncMessage] = [self._page(sender, pull, after, pull.ahead)]
        if sender not in self._sessions and self._lacks(pull.vv):
            reverse = self.want_from(sender)
            if reverse is not None:
                replies.append(reverse)
        return replies

    def more_pages(self) -> list[tuple[str, SyncMessage]]:
        """The next page of each catch-up we serve ahead (Pull.ahead), one each: send
        it to its peer, and call again (on the next turn of the loop) until empty, so
        each page is built while the puller stores the one before."""
        out: list[tuple[str, SyncMessage]] = []
        for peer, (pull, after, left) in list(self._serving.items()):
            del self._serving[peer]
            if self.may_share(peer):
                out.append((peer, self._page(peer, pull, after, left - 1)))
        return out

    def _page(self, peer: str, pull: Pull, after: int, ahead: int) -> Page:
        """One page for ``peer``'s pull from ``after``; with ``ahead`` > 0 and more to
        send, the next is promised (``more``) and built by :meth:`more_pages`."""
        want = {origin: pull.vv.get(origin, 0) for origin in self._vv}
        body = catchup.build(
            self._file,
            want,
            after,
            self._page_bytes,
            ns_of_group=self.kind == "per-device",
            merge=self.merge is not None,
            prove=self._signer is not None,
        )
        more = ahead > 0 and not body.done
        if more:
            self._serving[peer] = (pull, body.cursor, ahead)
        return Page(
            DATA_VERSION,
            self.name,
            pull.session,
            self.epoch,
            after,
            body.cursor,
            body.done,
            dict(self._vv),
            tuple(body.ids),
            tuple(body.groups),
            tuple(body.rows),
            more,
        )

    def _on_page(self, sender: str, page: Page) -> list[SyncMessage]:
        check_page(page)  # decode() did, but a caller may hand us a message object
        ns_of_group = self.kind == "per-device"
        if self.merge is None and page.rows:
            raise MalformedSync("a last-writer-wins store's page carries merge rows")
        if self.merge is not None and page.groups:
            raise MalformedSync("a merge store's page carries batch groups")
        for group in page.groups:
            self._hlc.check(group.hlc)
        for row in catchup.merge_rows(page):
            check_row(self.kind, self.merge, row)
            self._hlc.check(row.hlc)
        checked = catchup.check_groups(
            page,
            sender=sender,
            ns_of_group=ns_of_group,
            verify=None if self._signer is None else self._verify,
            message=lambda origin, seq, hlc, n, root: pv.message(
                self.name, origin, seq, hlc, n, root
            ),
        )
        for origin, why in checked.refused:
            self._quiet.warn(
                f"unproven:{sender}:{origin}",
                "ignoring rows %s relayed in the name of %s %s",
                sender,
                origin,
                why,
            )
        session = self._sessions.get(sender)
        fit = page_fit(session, page)
        if session is None or fit == "ignore":
            return []
        if sender == self._active:
            self._asked_ms = self._hlc.monotonic_ms()
        kept = msgspec.structs.replace(page, groups=tuple(checked.groups))
        staged = catchup.Staged(kept, tuple(checked.materials))
        session = Session(session.session, page.epoch, page.next)
        with self._file.transaction():
            if fit == "restart":
                self._file.drop_session(sender)
            self._file.stage(sender, _staged_encoder.encode(staged))
            self._file.set_session(sender, session)
        self._sessions[sender] = session
        if page.more and not page.done:
            return []  # the next page is on its way
        if not page.done:
            vv = dict(self._vv)
            return [
                Pull(
                    DATA_VERSION,
                    self.name,
                    vv,
                    session.session,
                    page.next,
                    page.epoch,
                    PULL_AHEAD,
                )
            ]
        self._finish(sender, page.vv)
        if self._active == sender:
            self._active = None
            self._next_source()
        return [self.summary()]

    def _verify(self, origin: str, sig: bytes, msg: bytes) -> bool:
        """Is ``sig`` the origin's over ``msg``? Cached: a batch's rows share it."""
        known = self._verified.get((msg, sig))
        if known is None:
            key = self._peers.public_key(origin)
            known = key is not None and verify(key, sig, msg)
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified[(msg, sig)] = known
        return known

    def _finish(self, sender: str, claim: Mapping[str, int]) -> None:
        """Apply a complete catch-up in one transaction and claim the responder's vv.

        With provenance on (LWW stores), the claim for another origin is believed
        only as far as the proven rows of that origin in this catch-up reach: a
        member cannot advance another's version in our vector (which would make us
        ignore that member's real writes). The origin's own claim is believed."""
        staged = [_staged_decoder.decode(blob) for blob in self._file.staged(sender)]
        ns_of_group = self.kind == "per-device"
        # In page order: a later page's version of a row supersedes an earlier one
        # (the source's rows only ever win over their own past).
        flat: list[Flat] = []
        merged: dict[tuple[str, str], Row] = {}
        materials: list[tuple[str, int, bytes]] = []
        seen: dict[str, int] = {}
        newest: list[Hlc] = []
        for item in staged:
            page = item.page
            materials += item.materials
            for group in page.groups:
                origin = page.ids[group.origin]
                seen[origin] = max(seen.get(origin, 0), group.seq)
                if not self._wanted_dot(origin, group.seq, group.hlc):
                    continue
                ns = origin if ns_of_group else ""
                wall, counter = group.hlc.wall_ms, group.hlc.counter
                flat += [
                    (ns, op.key.encode(), op.value, wall, counter, origin, group.seq, idx)
                    for op, idx in zip(group.items, catchup.places(group), strict=True)
                ]
                newest.append(group.hlc)
            for row in catchup.merge_rows(page):
                for origin, seq in row.dots.items():
                    seen[origin] = max(seen.get(origin, 0), seq)
                merged[(row.ns, row.key)] = row
        rows = [row for row in merged.values() if self._wanted(row)]
        newest += [row.hlc for row in rows]
        if newest:
            self._hlc.update(max(newest))  # ClockSkew: staged, retried later
        if self._signer is not None and self.merge is None:
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
            changes = self._put_caught_up(flat)
            changes += [change for row in rows if (change := self._store_row(row))]
            if materials:
                self._file.put_materials(materials)
            for origin, seq in advanced.items():
                self._file.set_vv(origin, seq)
            self._file.drop_session(sender)
            self._file.set_meta("hlc", msgspec.msgpack.encode(self._hlc.last))
        self._vv.update(advanced)
        del self._sessions[sender]
        self._watchers.notify("catch-up", sender, changes)

    def _put_caught_up(self, flat: list[Flat]) -> list[Change]:
        """Caught-up last-writer-wins rows, set-based: SQLite keeps each that wins over
        the stored row. Only when someone watches are the stored rows read first, to
        report the changes."""
        if not flat:
            return []
        if not self._watchers.active:
            self._file.put_flat(flat, newer_only=True)
            return []
        latest = {(row[0], row[1]): row for row in flat}  # the last version of each key
        by_ns: dict[str, list[Flat]] = {}
        for row in latest.values():
            by_ns.setdefault(row[0], []).append(row)
        out: list[Flat] = []
        changes: list[Change] = []
        for ns, rows in by_ns.items():
            found = self._file.winners(ns, [row[1] for row in rows])
            for row in rows:
                _ns, key, value, wall, counter, origin, _seq, _idx = row
                hlc = Hlc(wall, counter)
                old = found.get(key)
                if old is not None and not lww_wins(hlc, origin, Hlc(old[0], old[1]), old[2]):
                    continue
                out.append(row)
                if value is not None or (old is not None and not old[3]):
                    changes.append(Change(ns, key.decode(), value, origin, hlc))
        if out:
            self._file.put_flat(out)
        return changes

    def _wanted_dot(self, origin: str, seq: int, hlc: Hlc) -> bool:
        """A last-writer-wins row (one dot): not yet reflected, by a member (or by a
        former member before it left)."""
        if seq <= self._vv.get(origin, 0):
            return False  # already reflected (and maybe since collected: never revive it)
        if not self._counts(origin):
            self._quiet.warn(origin, "ignoring writes of %s: not a member", origin)
            return False
        ended = self._peers.former(origin)
        if ended is not None and hlc.wall_ms > int(ended * 1000):
            self._quiet.warn(
                "late:" + origin, "ignoring writes of %s made after it left the circle", origin
            )
            return False
        return True

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
            pull = self.want_from(sender)
            return [] if pull is None else [pull]
        if sender in self._sessions:  # nothing left to fetch from it
            with self._file.transaction():
                self._file.drop_session(sender)
            del self._sessions[sender]
        self._deferred.pop(sender, None)
        if self._active == sender:
            self._active = None
            self._next_source()
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
        victims = []
        if stable is not None:
            cutoff = self._hlc.wall_ms() - self._grace_ms
            victims = [
                lseq
                for lseq, origin, seq in self._file.tombstones(cutoff)
                if seq <= stable.get(origin, 0)
            ]
        with self._file.transaction():
            for lseq in victims:
                self._file.delete_row(lseq)
            self._file.drop_unused_materials()
        return len(victims)
