"""The receiving side of catch-up: one source at a time, pages checked, their whole
batches applied as they come, the rest staged and applied with the last page (see
:class:`accord.data.replica.Replica`).

A replica catches up from one source at a time: while a catch-up from one member
is in flight, others that have more wait their turn (:meth:`CatchingUp.want_from`
defers them), and each then sends only what the first did not bring. So a returning
device receives each missing row about once, whatever the size of the household.
A source that stalls (no page for ``catchup_stall_ms``) hands its turn on; its
staged pages stay and resume later.

A member whose more is only rows that pushes are bringing right now (every origin
it is ahead on has had a push applied here within ``ARRIVING_MS``) is not pulled
from: it waits its turn, and when its turn comes it is pulled from only if it still
has more. Pulling would fetch the same rows a second time, racing the pushes (a
household's fan-in, or a store that just opened while everyone writes to it). A gap
in an origin's pushes is pulled for at once: pushes will not fill it.

The source it prefers is the writer of what it lacks: a member that only relays
another's rows and offers them first waits while that writer is asked, for up to
``WRITER_WAIT_MS`` (see :meth:`CatchingUp._writer_awaited`), since a source's own
rows need no proof checked nor leaf hashed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from accord.clock import Hlc
from accord.data import catchup
from accord.data import provenance as pv
from accord.data.changes import Change
from accord.data.gone_leaves import row_leaf
from accord.data.merge import lww_wins
from accord.data.model import (
    DATA_VERSION,
    PULL_AHEAD,
    Batch,
    Group,
    Page,
    Pull,
    Row,
    SyncMessage,
    check_page,
)
from accord.data.rules import check_row, dominated, page_fit
from accord.data.sharing import SharedStore
from accord.data.sqlite_file import blob
from accord.data.sqlite_store import Flat, Session
from accord.data.staging import NO_END, Filter, StagedRow
from accord.device.identity import verify
from accord.errors import MalformedSync, PeerNotAllowed

log = logging.getLogger(__name__)

# A push applied from an origin this recently means its rows are arriving: a member
# ahead only on such origins is not pulled from yet (see the module's docstring).
ARRIVING_MS: Final = 3000

# How long a catch-up waits for the writer of most of what it lacks (asked when
# another member offers it first) before it takes that member as its source (only
# for a gap of at least limits.WRITER_WAIT_BATCHES of the writer's batches).
WRITER_WAIT_MS: Final = 300

_staged_decoder: Final = msgspec.msgpack.Decoder(catchup.Staged)
_staged_encoder: Final = msgspec.msgpack.Encoder()
_material_decoder: Final = msgspec.msgpack.Decoder(pv.Material)
_material_encoder: Final = msgspec.msgpack.Encoder()


class CatchingUp(SharedStore):
    """A store that catches up from its peers."""

    def _loaded(self) -> None:
        super()._loaded()
        self._sessions = self._file.sessions()
        saved = self._file.get_meta("session")
        self._next_session = int(saved.decode()) if saved else 1
        # One catch-up at a time (soft state): the source in flight, when we last
        # heard from it or asked it, and the members waiting their turn, in order.
        self._active: str | None = None
        self._asked_ms = 0
        self._deferred: dict[str, int] = {}  # waiting member -> the event it began at
        self._outgoing: list[tuple[str, SyncMessage]] = []
        self._verified: dict[tuple[bytes, bytes], bool] = {}  # batch signatures checked
        self._leftovers = True  # staged rows of finished catch-ups may wait for removal
        self._arriving: dict[str, int] = {}  # origin -> when a push of its last advanced vv
        # The source it prefers: the writer it waits for and until when, the members
        # the node said are online or went offline (a member it said neither of may
        # be either: a node that just started learns who is online after the first
        # offers arrive), and those that let such a wait pass.
        self._awaiting: tuple[str, int] | None = None
        self._online: set[str] = set()
        self._offline: set[str] = set()
        self._unanswered: set[str] = set()

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
                self._file.drop_session(peer)  # rows a finished catch-up left behind
                self._file.set_session(peer, session)
                self._file.set_meta("session", str(self._next_session).encode())
            self._sessions[peer] = session
        if self._active not in (None, peer):
            self._wait(self._active)
        self._active = peer
        self._awaiting = None  # a source is chosen: no writer is awaited any more
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

    def want_from(self, peer: str, has: Mapping[str, int] | None = None) -> Pull | None:
        """``peer`` has (or may have) what we miss: the Pull to send it now, or None if
        a catch-up from another member is in flight (``peer`` waits its turn, see
        :meth:`take_pulls`) or one from ``peer`` itself is (asking again would only
        make it build the same page twice), or if all it has more of (``has``, its
        version vector, when known) is what pushes are bringing now (it waits too)."""
        if not self.may_share(peer):
            raise PeerNotAllowed(f"store {self.name!r} ({self.label}) is not shared with {peer}")
        if has is not None and self._pushes_bring(has):
            self._wait(peer)
            return None
        if self._active is None and self._writer_awaited(peer, has) is not None:
            self._wait(peer)
            return None
        if self._active is None or (self._active == peer and self._stalled()):
            return self.pull_from(peer)
        if self._active != peer:
            self._wait(peer)
        return None

    def take_pulls(self) -> list[tuple[str, SyncMessage]]:
        """Pulls due to members other than the one whose message was just handled (the
        next source's turn): send each to its peer. Call after every :meth:`receive`,
        :meth:`peer_gone` and :meth:`tick`."""
        out, self._outgoing = self._outgoing, []
        return out

    def peer_online(self, peer: str) -> None:
        """``peer`` is online (the node says so): it may be waited for as a source."""
        self._online.add(peer)
        self._offline.discard(peer)
        self._unanswered.discard(peer)

    def wake_ms(self) -> int | None:
        """In how many ms :meth:`tick` is due (a wait for a writer ends), if at all."""
        if self._awaiting is None:
            return None
        return max(0, self._awaiting[1] - self._hlc.monotonic_ms())

    def _has_nothing_more(self, peer: str) -> None:
        """``peer`` told us it has nothing we lack: not a source, nor awaited as one."""
        self._deferred.pop(peer, None)
        if self._awaiting is not None and self._awaiting[0] == peer:
            self._awaiting = None
            self._unanswered.add(peer)
            if self._active is None:
                self._next_source()
        if self._active == peer:
            self._active = None
            self._next_source()

    def peer_gone(self, peer: str) -> None:
        """``peer`` went offline: if it was the source, the next one's turn."""
        self._online.discard(peer)
        self._offline.add(peer)
        self._unanswered.discard(peer)
        self._deferred.pop(peer, None)
        if self._active == peer:
            self._active = None
            self._next_source()

    def tick(self) -> None:
        """Call every second or so: a source that stalled hands its turn on (or, if
        no one else waits, is asked again)."""
        if self._leftovers:
            self._leftovers = False
            with self._file.transaction():
                self._file.drop_leftovers()
        if self._active is None:
            self._next_source()  # members that waited while pushes were arriving
            return
        if not self._stalled():
            return
        stalled = self._active
        self._active = None
        if self._deferred:
            self._wait(stalled)
            self._next_source()
        elif self.may_share(stalled):
            self._outgoing.append((stalled, self.pull_from(stalled)))

    def catching_up(self) -> str | None:
        """The member a catch-up is in flight from, if any."""
        return self._active

    def _stalled(self) -> bool:
        return self._hlc.monotonic_ms() - self._asked_ms >= self._stall_ms

    def pushed(self, origins: Iterable[str]) -> None:
        """Pushes of ``origins`` were just applied: their rows are arriving."""
        now = self._hlc.monotonic_ms()
        for origin in origins:
            self._arriving[origin] = now

    def _pushes_bring(self, has: Mapping[str, int]) -> bool:
        """Is every origin ``has`` is ahead of us on one whose pushes are arriving (so
        a pull now would fetch their rows twice)? False if it is ahead on none."""
        now = self._hlc.monotonic_ms()
        ahead = [o for o, seq in has.items() if seq > self._vv.get(o, 0) and self._counts(o)]
        return bool(ahead) and all(
            now - self._arriving.get(o, -ARRIVING_MS) < ARRIVING_MS for o in ahead
        )

    def _next_source(self) -> None:
        """Start the catch-up from the next waiting member that has more than we do
        (as far as its last acknowledgement tells), passing over those whose more is
        still arriving in pushes (they keep their place; see :meth:`tick`). A member
        we know nothing fresh of is asked what it has (a summary with ``ask``: it
        answers only if it has more, and is pulled from then), not pulled from: a
        pull would fetch again what other sources or pushes brought meanwhile."""
        awaited = self._writer_awaited(None, None)
        if awaited is not None:
            if awaited not in self._deferred:
                return  # its answer comes first, or the wait ends (tick)
            self._deferred = {awaited: self._deferred[awaited], **self._deferred}
        for peer in list(self._deferred):
            if self._active is not None:
                return
            known = self._acks.get(peer)
            if known is not None and self._pushes_bring(known):
                continue
            since = self._deferred.pop(peer)
            if not self.may_share(peer):
                continue
            if known is not None and self._lacks(known):
                self._outgoing.append((peer, self.pull_from(peer)))
            elif known is None or self._acked_at.get(peer, -1) <= since:
                self._outgoing.append((peer, self.summary(ask=True)))

    def _writer_awaited(self, peer: str | None, has: Mapping[str, int] | None) -> str | None:
        """The writer a catch-up waits for instead of taking ``peer`` (ahead of us as
        ``has`` says) as its source, if any.

        A source's own rows need no proof checked and are kept without their leaves
        (:func:`catchup.check_groups`); another's cost the returning device about a
        third more. So when a member offers rows that are mostly another member's
        (the origin we lack most batches of, at least ``writer_wait_batches``
        of them: fewer cost less to check than a wait), that writer is awaited for up to
        :data:`WRITER_WAIT_MS`, and asked if the node said it is online. A writer
        the node said went offline is not awaited, nor one that let a wait pass,
        until it is heard from (or comes online again)."""
        now = self._hlc.monotonic_ms()
        if peer is not None:
            self._unanswered.discard(peer)  # heard from
        if self._awaiting is not None:
            writer, until = self._awaiting
            if writer != peer and now < until and writer not in self._offline:
                return writer
            self._awaiting = None
            if writer != peer:
                self._unanswered.add(writer)
        if has is None or peer is None:
            return None
        gaps = {
            origin: seq - self._vv.get(origin, 0)
            for origin, seq in has.items()
            if seq > self._vv.get(origin, 0) and self._counts(origin)
        }
        if not gaps:
            return None
        writer = max(gaps, key=lambda origin: (gaps[origin], origin))
        if (
            gaps[writer] < self._writer_wait_batches
            or writer == peer
            or writer in self._offline
            or writer in self._unanswered
            or not self.may_share(writer)
        ):
            return None
        self._awaiting = (writer, now + WRITER_WAIT_MS)
        if writer in self._online:  # else it asks us as it sees us, or the wait ends
            self._outgoing.append((writer, self.summary(ask=True)))
        return writer

    def _wait(self, peer: str) -> None:
        """``peer`` waits its turn (keeping its place if it already waits)."""
        if peer not in self._deferred:
            self._events += 1
            self._deferred[peer] = self._events

    def _on_page(self, sender: str, page: Page) -> list[SyncMessage]:
        check_page(page)
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
        rest = msgspec.structs.replace(page, groups=())  # merge rows stay in it
        session = Session(session.session, page.epoch, page.next)
        whole: list[Group] = []
        held: list[Group] = []
        for group in checked.groups:
            (whole if catchup.whole_batch(group) else held).append(group)
        kept = {(page.ids[group.origin], group.seq) for group in held}
        materials = tuple(m for m in checked.materials if (m[0], m[1]) in kept)
        # A page staged only may be lost to a power cut: it is fetched again. One
        # whose whole batches went in syncs (their lseqs are promised to pullers).
        with self._file.transaction(durable=bool(whole)):
            if fit == "restart":
                self._file.drop_session(sender)
            changes, applied = self._take_whole(page, whole)
            rows, starts = self._staged_rows(page, held, session.session)
            staged = catchup.Staged(rest, materials, starts, tuple(applied.items()))
            self._file.stage(sender, _staged_encoder.encode(staged), rows)
            self._file.set_session(sender, session)
        self._sessions[sender] = session
        self._watchers.notify("catch-up", sender, changes)
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

    def _take_whole(self, page: Page, groups: list[Group]) -> tuple[list[Change], dict[str, int]]:
        """Put a page's whole batches (``groups``, checked) into the store now, as pushes
        of them would be (inside the page's transaction), and the changes; also, per
        origin, the highest seq among them (what the source's claim is believed as far
        as, :meth:`_finish`).

        A whole batch goes in whole, so it needs no staging: the catch-up's last page
        finds only the rest (groups of partial batches) to apply. Those the catch-up
        would not take are left out: of origins that are not members, made after
        their origin left, or already reflected here (maybe since collected: never
        revived). The version vector moves only when the catch-up completes, so a
        catch-up cut short brings these rows again, and they meet themselves."""
        if not groups:
            return [], {}
        ns_of_group = self.kind == "per-device"
        tops: dict[str, int] = {}
        for group in groups:
            origin = page.ids[group.origin]
            tops[origin] = max(group.seq, tops.get(origin, 0))
        wanted = self._wanted_origins(tops)
        taken: list[tuple[Batch, str]] = []
        for group in groups:
            origin = page.ids[group.origin]
            window = wanted.get(origin)
            if window is None or group.seq <= window[0] or group.hlc.wall_ms > window[1]:
                continue
            assert group.proof is not None  # a whole batch's, catchup.whole_batch
            batch = Batch(origin, group.seq, group.hlc, group.items, group.proof.sig)
            taken.append((batch, origin if ns_of_group else ""))
        if not taken:
            return [], tops
        self._hlc.update(max(batch.hlc for batch, _ in taken))  # checked: not too far ahead
        self._file.set_meta_at_commit("hlc", msgspec.msgpack.encode(self._hlc.last))
        if self._watchers.active:  # the stored rows are read, to report the changes
            changes: list[Change] = []
            for batch, ns in taken:
                changes += self._write_batch(batch, ns, local=False, raws=None, leaves=None)
            return changes, tops
        first = self._file.put_batches([(ns, b.ops, b.hlc, b.origin, b.seq) for b, ns in taken])
        whole = self._file.all_new and self._signer is not None
        noted: list[tuple[str, int, int, bytes | None]] = []
        for batch, ns in taken:
            noted.append((batch.origin, batch.seq, first, self._material(batch, ns, whole=whole)))
            first += len(batch.ops)
        self._file.record_batches(noted, whole=whole)
        return [], tops

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

    def _staged_rows(
        self, page: Page, groups: list[Group], sid: int
    ) -> tuple[list[StagedRow], tuple[Start, ...]]:
        """A page's kept last-writer-wins rows, one tuple each, as staging keeps them
        (inside the transaction that stages them: origins get their numbers there),
        and each group's :data:`Start`."""
        if not groups:
            return [], ()
        ns_of_group = self.kind == "per-device"
        numbers = self._file.origin_numbers(page.ids)
        n = self._file.next_staged(sid)
        out: list[StagedRow] = []
        starts: list[Start] = []
        for group in groups:
            origin = page.ids[group.origin]
            ns = origin if ns_of_group else ""
            number, seq = numbers[group.origin], group.seq
            wall, counter = group.hlc.wall_ms, group.hlc.counter
            starts.append((origin, seq, wall, counter, n))
            places = catchup.places(group)
            out += [
                (sid, n + i, ns, bytearray(op.key, "utf-8"), blob(op.value), wall, counter,
                 number, seq, idx)
                for i, (op, idx) in enumerate(zip(group.items, places, strict=True))
            ]  # fmt: skip
            n += len(group.items)
        return out, tuple(starts)

    def _finish(self, sender: str, claim: Mapping[str, int]) -> None:
        """Complete a catch-up in one transaction: apply its staged groups (partial
        batches; its whole ones went in as their pages came) and claim the
        responder's vv.

        With provenance on (LWW stores), the claim for another origin is believed
        only as far as the proven rows of that origin in this catch-up reach: a
        member cannot advance another's version in our vector (which would make us
        ignore that member's real writes). The origin's own claim is believed."""
        staged = [_staged_decoder.decode(data) for data in self._file.staged(sender)]
        starts = _starts(staged)  # None: pages an older Accord staged; ask the rows
        seen = self._file.staged_origins(sender) if starts is None else _tops(starts)
        wanted = self._wanted_origins(seen)  # of the staged rows
        for item in staged:  # and the whole batches that went in as their pages came
            for origin, top in item.applied:
                seen[origin] = max(top, seen.get(origin, 0))
        merged: dict[tuple[str, str], Row] = {}
        materials: list[tuple[str, int, bytes]] = []
        for item in staged:  # a later page's version of a row supersedes an earlier one
            materials += item.materials
            for row in catchup.merge_rows(item.page):
                for origin, seq in row.dots.items():
                    seen[origin] = max(seen.get(origin, 0), seq)
                merged[(row.ns, row.key)] = row
        rows = [row for row in merged.values() if self._wanted(row)]
        newest = [row.hlc for row in rows]
        if wanted:
            found = (
                self._file.staged_newest(sender, wanted)
                if starts is None
                else max((s[2:4] for s in _taken(starts, wanted)), default=None)
            )
            if found is not None:
                newest.append(Hlc(*found))
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
            firsts = None if starts is None else _batch_starts(starts, wanted)
            changes, all_new = self._put_caught_up(sender, wanted, firsts)
            changes += [change for row in rows if (change := self._store_row(row))]
            full, lazy = self._materials(sender, materials, starts, wanted, all_new=all_new)
            if full:  # their batches' rows are in (or were): keep the lowest lseq
                self._file.record_batches([(o, s, NO_END, m) for o, s, m in full])
            if lazy:
                self._file.record_batches([(o, s, NO_END, m) for o, s, m in lazy], whole=True)
            for origin, seq in advanced.items():
                self._file.set_vv(origin, seq)
            self._file.drop_session(sender, rows=False)
            self._file.set_meta("hlc", msgspec.msgpack.encode(self._hlc.last))
        self._leftovers = True
        self._vv.update(advanced)
        del self._sessions[sender]
        self._watchers.notify("catch-up", sender, changes)

    def _materials(
        self,
        sender: str,
        materials: list[tuple[str, int, bytes]],
        starts: list[Start] | None,
        wanted: Filter,
        *,
        all_new: bool,
    ) -> tuple[list[tuple[str, int, bytes]], list[tuple[str, int, bytes]]]:
        """The materials to keep of a catch-up's batches: full ones, and those kept
        without their leaves (the sender's own whole batches, :func:`catchup.check_groups`).
        Such a batch is kept so only if it was taken and every row taken went in as
        a new key: then its rows are its leaves. If some row lost to a stored one,
        its leaves are hashed from the staged rows now; a batch not taken is not
        kept here (its rows, if stored, came with their own material)."""
        full: list[tuple[str, int, bytes]] = []
        lazy: list[tuple[str, int, bytes]] = []
        at = {} if starts is None else {(s[0], s[1]): s[4] for s in _taken(starts, wanted)}
        for origin, seq, blob_ in materials:
            material = _material_decoder.decode(blob_)
            if not material.rows:
                full.append((origin, seq, blob_))
                continue
            start = at.get((origin, seq))
            if start is None:
                continue
            if all_new:
                lazy.append((origin, seq, blob_))
                continue
            leaves = {
                idx: row_leaf(ns, key, value)
                for ns, key, value, idx in self._file.staged_span(sender, start, material.n)
                if idx is not None
            }
            kept = pv.material(material.sig, material.n, leaves, ())
            full.append((origin, seq, _material_encoder.encode(kept)))
        return full, lazy

    def _wanted_origins(self, origins: Mapping[str, int]) -> Filter:
        """Which staged last-writer-wins rows to take, per origin: those beyond our
        version of it (the rest is reflected already, maybe since collected: never
        revive it), of members, and of former members only if made before they left."""
        out: dict[str, tuple[int, int]] = {}
        for origin, top in origins.items():
            above = self._vv.get(origin, 0)
            if top <= above:
                continue
            if not self._counts(origin):
                self._quiet.warn(origin, "ignoring writes of %s: not a member", origin)
                continue
            ended = self._peers.former(origin)
            out[origin] = (above, NO_END if ended is None else int(ended * 1000))
        return out

    def _put_caught_up(
        self, sender: str, wanted: Filter, starts: dict[tuple[str, int], int] | None
    ) -> tuple[list[Change], bool]:
        """The staged last-writer-wins rows ``wanted`` takes, into the store: SQLite
        keeps each that wins over the stored row, in one statement. Only when someone
        watches are the stored rows read first, to report the changes. Also: did
        every row taken go in as a new key (not known when someone watches: False)?"""
        if not wanted:
            return [], True
        if not self._watchers.active:
            first = self._file.apply_staged(sender, wanted, find_batches=starts is None)
            if starts is not None:
                noted = [(origin, seq, first + n, None) for (origin, seq), n in starts.items()]
                self._file.record_batches(noted)
            return [], self._file.all_new
        flat = self._file.staged_rows(sender, wanted)
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
            first = self._file.put_flat(out)
            lowest: dict[tuple[str, int], int] = {}
            for i, row in enumerate(out):
                lowest.setdefault((row[5], row[6]), first + i)
            self._file.record_batches([(o, s, lseq, None) for (o, s), lseq in lowest.items()])
        return changes, False

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


# What staging notes of a group: its batch (origin, seq), its time (wall_ms,
# counter), and the number of its first staged row.
Start = tuple[str, int, int, int, int]


def _starts(staged: list[catchup.Staged]) -> list[Start] | None:
    """What staging noted of every group of a catch-up, in order; None if a page was
    staged without those notes (by an older Accord)."""
    out: list[Start] = []
    for item in staged:
        if item.starts is None:
            return None
        out += item.starts
    return out


def _tops(starts: list[Start]) -> dict[str, int]:
    """Per origin, the highest seq among the staged rows."""
    out: dict[str, int] = {}
    for origin, seq, *_ in starts:
        out[origin] = max(seq, out.get(origin, 0))
    return out


def _taken(starts: list[Start], wanted: Filter) -> Iterable[Start]:
    """The groups whose rows ``wanted`` takes."""
    for start in starts:
        window = wanted.get(start[0])
        if window is not None and window[0] < start[1] and start[2] <= window[1]:
            yield start


def _batch_starts(starts: list[Start], wanted: Filter) -> dict[tuple[str, int], int]:
    """Per batch that ``wanted`` takes rows of, the number of its first staged row."""
    out: dict[tuple[str, int], int] = {}
    for origin, seq, _wall, _counter, n in _taken(starts, wanted):
        out[(origin, seq)] = min(n, out.get((origin, seq), n))
    return out
