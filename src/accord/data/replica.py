"""A replica of one store: the sync state machine on top of a local :class:`Store`.

Sans-IO: messages in, messages out; the caller moves them (see docs/consistency.md
for which to send when). Storage is the replica's own SQLite file; time comes from
the injected :class:`HybridClock`.

The invariant everything rests on: after every transaction, a replica's state is
exactly the join of the batches its version vector ``vv`` names (``vv[o]`` = the
highest seq of origin ``o`` such that all of ``o``'s batches up to it are applied).
A push is applied only if it is the next seq of its origin; a catch-up page's whole
batches are applied as it comes, its partial ones staged and applied with the last
page, when the responder's vector is adopted: so no reader ever sees part of a
batch and ``vv`` never claims what is not applied.

The receiving side of catch-up (one source at a time, staging, applying) is
:class:`accord.data.receiving.CatchingUp`; who shares the store and whose writes
count, :class:`accord.data.sharing.SharedStore`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from accord.data import catchup
from accord.data.model import (
    DATA_VERSION,
    Batch,
    Page,
    Pull,
    Push,
    Summary,
    SyncMessage,
    decode,
    encode,
)
from accord.data.receiving import CatchingUp
from accord.data.rules import check_batch as check_remote_batch
from accord.data.rules import stable_vector
from accord.errors import MalformedSync, PeerNotAllowed, SyncError

log = logging.getLogger(__name__)

BATCH_SWEEP: Final = 20  # collection rounds between passes that forget unused batches


@dataclass
class PushOutcome:
    """What :meth:`Replica.receive_pushes` did: replies to send, pushes refused."""

    replies: list[tuple[str, SyncMessage]] = field(default_factory=list)
    errors: list[tuple[str, SyncError]] = field(default_factory=list)


class Replica(CatchingUp):
    """A store that syncs: it takes sync messages and returns the replies."""

    def _loaded(self) -> None:
        super()._loaded()
        # Pages promised beyond the first (Pull.ahead), per puller: the pull, where
        # the next page starts, and how many more may go.
        self._serving: dict[str, tuple[Pull, int, int]] = {}
        self._gc_rounds = 0

    # -- sync ---------------------------------------------------------------------

    def receive_bytes(self, sender: str, data: bytes) -> list[bytes]:
        """:meth:`receive` on encoded messages."""
        return [encode(reply) for reply in self.receive(sender, decode(data))]

    def receive(self, sender: str, message: SyncMessage) -> list[SyncMessage]:
        """Handle one message from ``sender``; returns the replies to send back to it.

        Raises a :class:`SyncError` (and changes nothing of what it refused) for a
        message that breaks the rules; batches of a Push before the bad one stay applied.
        """
        self._admit(sender, message)
        if isinstance(message, Push):
            return self._on_push(sender, message)
        if isinstance(message, Pull):
            return self._on_pull(sender, message)
        if isinstance(message, Page):
            return self._on_page(sender, message)
        return self._on_summary(sender, message)

    def _on_push(self, sender: str, push: Push) -> list[SyncMessage]:
        outcome = self.receive_pushes([(sender, push)])
        if outcome.errors:
            raise outcome.errors[0][1]
        return [message for _, message in outcome.replies]

    def receive_pushes(self, pushes: list[tuple[str, Push]]) -> PushOutcome:
        """Several pushes (from one sender or many, in the order they came) at once:
        every batch ready to apply, in one transaction (one sync to disk; each batch
        still whole). A push that breaks a rule is reported in ``errors`` and changes
        nothing of its own from the bad batch on; the others are not affected."""
        out = PushOutcome()
        have: dict[str, int] = {}
        ready: list[tuple[Batch, str]] = []
        for sender, push in pushes:
            try:
                self._admit(sender, push)
                gap = self._ready(sender, push, have, ready)
            except SyncError as exc:
                out.errors.append((sender, exc))
                continue
            if gap and (pull := self.want_from(sender)) is not None:
                out.replies.append((sender, pull))
        if ready:
            self._hlc.update(max(batch.hlc for batch, _ in ready))
            for origin, changes in self._commit_batches(ready).items():
                self._watchers.notify("push", origin, changes)
            self.pushed({batch.origin for batch, _ in ready})
        return out

    def _admit(self, sender: str, message: SyncMessage) -> None:
        if message.store != self.name:
            raise MalformedSync(f"message for store {message.store!r} given to {self.name!r}")
        if message.v != DATA_VERSION:
            raise MalformedSync(f"unsupported data protocol version {message.v}")
        if not self.may_share(sender):
            raise PeerNotAllowed(
                f"{sender} is not a member whose level may receive {self.label} "
                f"(store {self.name!r})"
            )

    def _ready(
        self,
        sender: str,
        push: Push,
        have: dict[str, int],
        ready: list[tuple[Batch, str]],
    ) -> bool:
        """Add the push's batches that follow on from what is applied (or about to be)
        to ``ready``; True if there is a gap (pull instead). A bad batch raises after
        the ones before it are added."""
        for batch in push.batches:
            check_remote_batch(self.merge, batch, sender)
        ns = sender if self.kind == "per-device" else ""
        seq = have.get(sender, self._vv.get(sender, 0))
        try:
            for batch in sorted(push.batches, key=lambda b: b.seq):
                if batch.seq <= seq:
                    continue  # a duplicate
                if batch.seq > seq + 1:
                    return True  # a gap: fetch state instead of waiting
                self._hlc.check(batch.hlc)
                ready.append((batch, ns))
                seq = batch.seq
        finally:
            have[sender] = seq
        return False

    def _on_pull(self, sender: str, pull: Pull) -> list[SyncMessage]:
        self._record_ack(sender, pull.vv)
        self._serving.pop(sender, None)  # a new pull replaces what the last one asked
        after = pull.after if pull.epoch == self.epoch else 0
        replies: list[SyncMessage] = [self._page(sender, pull, after, pull.ahead)]
        if sender not in self._sessions and self._lacks(pull.vv):
            reverse = self.want_from(sender, pull.vv)
            if reverse is not None:
                replies.append(reverse)
        return replies

    def serving(self) -> bool:
        """Are pages promised ahead still to be built (see :meth:`more_pages`)?"""
        return bool(self._serving)

    def more_pages(
        self, ready: Callable[[str], bool] | None = None
    ) -> list[tuple[str, SyncMessage]]:
        """The next page of each catch-up we serve ahead (Pull.ahead), one each (only
        for the pullers ``ready`` says are, if given): send it to its peer, and call
        again (on a later turn of the loop) until :meth:`serving` is False, so each
        page is built while the puller stores the one before."""
        out: list[tuple[str, SyncMessage]] = []
        for peer, (pull, after, left) in list(self._serving.items()):
            if ready is not None and not ready(peer):
                continue
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

    def _on_summary(self, sender: str, summary: Summary) -> list[SyncMessage]:
        self._record_ack(sender, summary.vv)
        answer: list[SyncMessage] = []
        if summary.ask and any(seq > summary.vv.get(o, 0) for o, seq in self._vv.items()):
            answer.append(self.summary())  # it lacks what we have: tell it
        if self._lacks(summary.vv):
            pull = self.want_from(sender, summary.vv)
            return answer if pull is None else [pull, *answer]
        if sender in self._sessions:  # nothing left to fetch from it
            with self._file.transaction():
                self._file.drop_session(sender)
            del self._sessions[sender]
        self._has_nothing_more(sender)
        return answer

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
        # Forgetting unused batches passes over every row: every BATCH_SWEEP-th round
        # only (on the node's 30 s interval, every 10 minutes), and on the first.
        sweep = self._gc_rounds % BATCH_SWEEP == 0
        self._gc_rounds += 1
        if victims or sweep:
            with self._file.transaction():
                for lseq in victims:
                    self._file.delete_row(lseq)
                if sweep:
                    self._file.drop_unused_batches()
        return len(victims)
