"""Sync between replicas, message by message: push, pull, pages, acks and collection,
membership, labels, namespaces, and the cost of catching up."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from accord.clock import HybridClock, ManualClock
from accord.data import COUNTER, ChangeSet, Page, Pull, Push, Replica, StaticPeers, Summary
from accord.data.loopback import deliver_all, device_id, pull
from accord.data.merge import Merge
from accord.data.model import DATA_VERSION, PULL_AHEAD, MergeRow, decode, encode
from accord.data.receiving import ARRIVING_MS
from accord.data.rules import StoreKind
from accord.errors import MalformedSync, PeerNotAllowed
from accord.trust.levels import DataLabel

A, B, C = device_id(0), device_id(1), device_id(2)


class Trio:
    """Three devices sharing one store, in memory, with one wall clock."""

    def __init__(
        self,
        *,
        kind: StoreKind = "shared",
        merge: Merge | None = None,
        label: DataLabel = "S1",
        page_bytes: int = 1024 * 1024,
        grace_s: float = 0.0,
        levels: dict[str, str] | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.peers = StaticPeers([A, B, C], levels, default_level=None if levels else "SL5")
        self.r = {
            d: Replica.open(
                None,
                name="s",
                device_id=d,
                hlc=HybridClock(self.clock),
                peers=self.peers,
                kind=kind,
                merge=merge,
                label=label,
                page_bytes=page_bytes,
                tombstone_grace_s=grace_s,
            )
            for d in (A, B, C)
        }

    def push(self, src: str, *dsts: str) -> list[Push]:
        pushes = self.r[src].take_pushes()
        for dst in dsts:
            for p in pushes:
                deliver_all(self.r, [(src, dst, p)])
        return pushes

    def summary(self, src: str, dst: str) -> None:
        deliver_all(self.r, [(src, dst, self.r[src].summary())])

    def close(self) -> None:
        for replica in self.r.values():
            replica.close()


@pytest.fixture
def trio() -> Iterator[Trio]:
    t = Trio()
    yield t
    t.close()


def test_push_applies_in_order_and_ignores_duplicates(trio: Trio) -> None:
    a, b = trio.r[A], trio.r[B]
    a.put("k", b"1")
    a.put("k", b"2")
    pushes = a.take_pushes()
    assert len(pushes) == 1  # two commits coalesced into one message
    assert [x.seq for x in pushes[0].batches] == [1, 2]
    assert b.receive(A, pushes[0]) == []
    assert b.receive(A, pushes[0]) == []
    assert b.get("k") == b"2"
    assert b.version_vector() == {A: 2}


def test_a_gap_in_pushes_asks_for_a_pull(trio: Trio) -> None:
    a, b = trio.r[A], trio.r[B]
    a.put("k", b"1")
    lost = a.take_pushes()
    a.put("j", b"2")
    later = a.take_pushes()
    replies = b.receive(A, later[0])
    assert b.get("j") is None  # seq 2 without seq 1 is not applied
    assert len(replies) == 1
    assert isinstance(replies[0], Pull)
    deliver_all(trio.r, [(B, A, replies[0])])
    assert b.get("k") == b"1"
    assert b.get("j") == b"2"
    assert b.version_vector() == {A: 2}
    assert b.receive(A, lost[0]) == []  # late arrival: a duplicate now


def test_lww_concurrent_writes_resolve_identically(trio: Trio) -> None:
    a, b, c = trio.r[A], trio.r[B], trio.r[C]
    a.put("k", b"from-a")
    b.put("k", b"from-b")  # the same wall time: the device id breaks the tie
    trio.push(A, B, C)
    trio.push(B, A, C)
    assert a.get("k") == b.get("k") == c.get("k") == b"from-b"
    trio.clock.advance(1)
    a.put("k", b"later")
    trio.push(A, B, C)
    assert a.get("k") == b.get("k") == c.get("k") == b"later"


def test_local_write_wins_over_everything_seen_even_with_a_slow_clock() -> None:
    fast = ManualClock(1_700_000_030.0)
    peers = StaticPeers([A, B])
    a = Replica.open(None, name="s", device_id=A, hlc=HybridClock(fast), peers=peers)
    b = Replica.open(None, name="s", device_id=B, hlc=HybridClock(ManualClock()), peers=peers)
    try:
        a.put("k", b"a-ahead")
        b.receive(A, a.take_pushes()[0])
        b.put("k", b"b-after-seeing-a")
        assert b.get("k") == b"b-after-seeing-a"
        a.receive(B, b.take_pushes()[0])
        assert a.get("k") == b"b-after-seeing-a"
    finally:
        a.close()
        b.close()


def test_a_write_after_a_catch_up_is_newer_than_every_row_it_brought() -> None:
    """The clock moves past the newest row a catch-up brings (not only its first):
    a write made here afterwards wins everywhere, even over the newest of them."""
    fast = ManualClock(1_700_000_030.0)
    peers = StaticPeers([A, B])
    a = Replica.open(None, name="s", device_id=A, hlc=HybridClock(fast), peers=peers,
                     page_bytes=512)  # fmt: skip
    b = Replica.open(None, name="s", device_id=B, hlc=HybridClock(ManualClock()), peers=peers)
    try:
        for i in range(12):
            fast.advance(1.0)  # each batch later than the one before, all ahead of b's clock
            a.put(f"k{i:02}", bytes(60))
        a.take_pushes()
        pull({A: a, B: b}, B, A)  # several pages
        assert b.version_vector() == a.version_vector()
        b.put("k11", b"b-after-the-catch-up")
        a.receive(B, b.take_pushes()[0])
        assert a.get("k11") == b.get("k11") == b"b-after-the-catch-up"
        assert a.row("k11") == b.row("k11")
    finally:
        a.close()
        b.close()


def test_watchers_see_remote_changes_with_their_origin(trio: Trio) -> None:
    seen: list[ChangeSet] = []
    trio.r[B].subscribe(seen.append)
    with trio.r[A].batch() as batch:
        batch.put("x", b"1")
        batch.put("y", b"2")
    trio.push(A, B)
    trio.r[C].put("z", b"3")
    pull(trio.r, B, C)
    assert [(s.source, s.peer, [(c.key, c.origin) for c in s.changes]) for s in seen] == [
        ("push", A, [("x", A), ("y", A)]),
        ("catch-up", C, [("z", C)]),
    ]


def test_catch_up_pages_are_bounded_and_applied_at_the_end() -> None:
    trio = Trio(page_bytes=2048)
    try:
        a, b = trio.r[A], trio.r[B]
        for i in range(20):
            with a.batch() as batch:
                for j in range(10):
                    batch.put(f"k{i:02}-{j}", bytes(50))
        a.take_pushes()
        pages: list[Page] = []
        visible: list[int] = []

        def observe() -> None:
            visible.append(len(b.scan()))

        msg = b.pull_from(A)
        while True:
            one_page = msgspec.structs.replace(msg, ahead=0)  # step by step
            replies = a.receive(B, decode(encode(one_page)))
            page = replies[0]
            assert isinstance(page, Page)
            pages.append(page)
            assert len(encode(page)) <= 2048 + 512
            nxt = b.receive(A, decode(encode(page)))
            observe()
            if page.done:
                assert isinstance(nxt[0], Summary)
                break
            assert isinstance(nxt[0], Pull)
            msg = nxt[0]
        assert len(pages) > 5  # 20 batches of ~650 B, kept whole, in pages of 2 KiB
        assert visible[:-1] == [0] * (len(pages) - 1)  # nothing visible until the last page
        assert visible[-1] == 200
        assert b.version_vector() == a.version_vector()
    finally:
        trio.close()


def test_a_page_never_holds_less_than_one_row_even_a_huge_one() -> None:
    trio = Trio(page_bytes=100)
    try:
        trio.r[A].put("big", b"x" * 4 * 1024 * 1024)
        trio.r[A].put("small", b"y")
        traffic = pull(trio.r, B, A)
        assert trio.r[B].get("big") == b"x" * 4 * 1024 * 1024
        assert traffic.messages == 1 + 2 + 1  # pull, a page and the next sent ahead, summary
    finally:
        trio.close()


def test_catch_up_moves_bytes_in_proportion_to_what_changed() -> None:
    trio = Trio(page_bytes=64 * 1024)
    try:
        a, b = trio.r[A], trio.r[B]
        for i in range(40):
            with a.batch() as batch:
                for j in range(50):
                    batch.put(f"key-{i:03}-{j:03}", bytes(100))
        first = pull(trio.r, B, A)
        store_bytes = 2000 * (100 + 14)
        assert first.bytes > store_bytes
        for i in range(10):
            a.put(f"key-{i:03}-000", b"changed" * 10)
        a.delete("key-039-049")
        again = pull(trio.r, B, A)
        changed_bytes = 11 * (100 + 14)
        assert again.bytes < 3 * changed_bytes + 600, again
        assert again.bytes * 50 < first.bytes
        assert b.scan() == a.scan()
        # Nothing changed: a pull costs a few small messages.
        assert pull(trio.r, B, A).bytes < 400
    finally:
        trio.close()


def test_restarting_a_catch_up_in_the_middle_resumes_from_the_cursor() -> None:
    trio = Trio(page_bytes=1024)
    try:
        a, b = trio.r[A], trio.r[B]
        for i in range(30):
            a.put(f"k{i:02}", bytes(100))
        first = msgspec.structs.replace(b.pull_from(A), ahead=0)  # step by step
        page = a.receive(B, first)[0]
        nxt = b.receive(A, page)[0]
        assert isinstance(nxt, Pull)
        assert nxt.after > 0
        assert b.scan() == []
        again = b.pull_from(A)  # what the node sends after a restart or a lost page
        assert (again.session, again.after, again.epoch) == (nxt.session, nxt.after, nxt.epoch)
        deliver_all(trio.r, [(B, A, again)])
        assert b.scan() == a.scan()
    finally:
        trio.close()


def test_a_stale_or_reordered_page_is_ignored(trio: Trio) -> None:
    a, b = trio.r[A], trio.r[B]
    a.put("k", b"v")
    old = a.receive(B, b.pull_from(A))[0]
    assert b.receive(A, old) == [b.summary()]
    assert b.receive(A, old) == []  # its session is over
    unasked = a.receive(C, trio.r[C].pull_from(A))[0]
    assert b.receive(A, unasked) == []


def test_summary_acks_and_invites_a_pull(trio: Trio) -> None:
    a, b = trio.r[A], trio.r[B]
    a.put("k", b"v")
    replies = b.receive(A, a.summary())
    assert len(replies) == 1
    assert isinstance(replies[0], Pull)
    assert a.receive(B, b.summary()) == []


def test_tombstones_go_only_after_every_member_acknowledged(trio: Trio) -> None:
    a, b, c = trio.r[A], trio.r[B], trio.r[C]
    a.put("k", b"v")
    a.delete("k")
    trio.push(A, B)
    trio.clock.advance(1)
    assert a.collect_garbage() == 0  # nobody acknowledged
    trio.summary(B, A)
    assert a.collect_garbage() == 0  # C has not
    pull(trio.r, C, A)  # C catches up, which acknowledges to A
    assert c.get("k") is None
    assert c.tombstones() == 1
    trio.summary(C, A)
    assert a.collect_garbage() == 1
    assert a.tombstones() == 0
    # B and C learn the others' acks from summaries, and collect too.
    for src, dst in [(A, B), (C, B), (A, C), (B, C)]:
        trio.summary(src, dst)
    assert b.collect_garbage() == 1
    assert c.collect_garbage() == 1
    # A collected tombstone never comes back through a late duplicate or a pull.
    for src, dst in [(A, B), (B, C), (C, A)]:
        pull(trio.r, dst, src)
    assert a.tombstones() == b.tombstones() == c.tombstones() == 0
    assert a.get("k") is b.get("k") is c.get("k") is None


def test_collection_waits_for_writes_made_before_a_peer_saw_the_delete() -> None:
    trio = Trio()
    try:
        a, c = trio.r[A], trio.r[C]
        slow = ManualClock(trio.clock.wall() - 5)  # C's clock is 5 s behind
        c._hlc = HybridClock(slow)  # give C a slow clock
        a.put("k", b"v")
        trio.push(A, B, C)
        trio.clock.advance(1)
        a.delete("k")
        c.put("k", b"older-than-the-delete")  # concurrent, and stamped earlier
        c_write = c.take_pushes()
        trio.push(A, B, C)  # C sees the delete now, and acknowledges it
        for src in (B, C):
            a.receive(src, trio.r[src].summary())  # (not acting on the invitation to pull)
        # C acknowledged the tombstone but A lacks a write C made before that:
        assert a.collect_garbage() == 0
        deliver_all(trio.r, [(C, A, c_write[0])])
        assert a.get("k") is None  # the delete is newer
        a.receive(C, c.summary())
        assert a.collect_garbage() == 1
        deliver_all(trio.r, [(C, A, c_write[0])])  # a late duplicate revives nothing
        assert a.get("k") is None
    finally:
        trio.close()


def test_grace_period_holds_tombstones() -> None:
    trio = Trio(grace_s=60)
    try:
        a = trio.r[A]
        a.put("k", b"v")
        a.delete("k")
        for src in (B, C):
            pull(trio.r, src, A)
            trio.summary(src, A)
        assert a.collect_garbage() == 0
        trio.clock.advance(61)
        assert a.collect_garbage() == 1
    finally:
        trio.close()


def test_revoked_devices_writes_are_ignored(trio: Trio) -> None:
    a, b, c = trio.r[A], trio.r[B], trio.r[C]
    c.put("before", b"kept")
    trio.push(C, A, B)
    c.put("after", b"dropped")
    push = c.take_pushes()[0]
    trio.peers.revoke(C)
    with pytest.raises(PeerNotAllowed):
        a.receive(C, push)
    # A peer that still took C's write relays it in a catch-up: ignored too.
    trio.peers.add(C)
    b.receive(C, push)
    trio.peers.revoke(C)
    pull(trio.r, A, B)
    assert a.get("before") == b"kept"
    assert a.get("after") is None
    assert a.version_vector()[C] == 1
    assert a.may_share(C) is False
    assert C not in a.participants()


def test_per_device_namespace_is_enforced_on_remote_data() -> None:
    trio = Trio(kind="per-device")
    try:
        a, b, c = trio.r[A], trio.r[B], trio.r[C]
        a.put("name", b"laptop")
        (push,) = a.take_pushes()
        from accord.errors import ForgedOrigin

        with pytest.raises(ForgedOrigin):
            c.receive(B, push)  # B relays A's batch as its own push: refused
        c.receive(A, push)
        assert c.get("name", device=A) == b"laptop"
        # A page names no namespace for last-writer-wins rows: a group's rows land
        # in its origin's, so a row in A's namespace with B's dot cannot be written.
        # A merge-style row (which names its namespace) is refused in this store.
        page = a.receive(B, b.pull_from(A))[0]
        assert isinstance(page, Page)
        assert page.groups
        assert not page.rows
        forged = msgspec.structs.replace(
            page,
            ids=(A, B),
            rows=(MergeRow(1, "name", b"evil", page.groups[0].hlc, 1, ((1, 1),)),),
        )
        with pytest.raises(MalformedSync):
            b.receive(A, decode(encode(forged)))
        assert b.get("name", device=A) is None
        b.receive(A, page)
        assert b.get("name", device=A) == b"laptop"
    finally:
        trio.close()


def test_labels_exclude_peers_whose_level_forbids_them() -> None:
    trio = Trio(label="S3", levels={A: "SL4", B: "SL2"})  # C's level is not known yet
    try:
        a, b = trio.r[A], trio.r[B]
        assert a.may_share(B) is False
        assert a.may_share(C) is False  # unknown level: fail closed for sending
        assert a.participants() == [C]  # ... but collection waits for it
        b.put("k", b"v")
        with pytest.raises(PeerNotAllowed, match="S3"):
            a.receive(B, b.take_pushes()[0])
        with pytest.raises(PeerNotAllowed):
            a.receive(A, a.summary())  # not from ourselves either
        with pytest.raises(PeerNotAllowed, match="not shared"):
            a.pull_from(B)
    finally:
        trio.close()


def test_merge_stores_converge_by_join() -> None:
    trio = Trio(merge=COUNTER)
    try:
        for device, amount in [(A, 3), (B, 4), (C, -1), (A, 2)]:
            trio.r[device].update("n", lambda s, d=device, n=amount: COUNTER.add(s, d, n))  # type: ignore[misc]
        trio.push(A, B)
        for puller, source in [(C, B), (A, C), (B, C), (C, A)]:
            pull(trio.r, puller, source)
        values = {d: COUNTER.value(r.get("n")) for d, r in trio.r.items()}
        assert values == {A: 8, B: 8, C: 8}
        assert len({r.get("n") for r in trio.r.values()}) == 1  # equal bytes, too
    finally:
        trio.close()


def test_own_lost_batches_come_back_from_peers() -> None:
    """A device whose store file was lost learns its own seq back before writing."""
    trio = Trio()
    try:
        trio.r[A].put("k", b"v")
        trio.push(A, B)
        trio.r[A].close()
        trio.r[A] = Replica.open(
            None, name="s", device_id=A, hlc=HybridClock(trio.clock), peers=trio.peers
        )
        pull(trio.r, A, B)
        assert trio.r[A].get("k") == b"v"
        assert trio.r[A].put("j", b"w").seq == 2
    finally:
        trio.close()


def test_summary_and_pull_carry_the_version_and_store(trio: Trio) -> None:
    summary = trio.r[A].summary()
    assert summary == Summary(DATA_VERSION, "s", {})
    trio.r[A].put("k", b"v")
    assert trio.r[A].summary().vv == {A: 1}


def test_pages_come_ahead_while_the_puller_stores_them() -> None:
    """A pull with ``ahead`` gets that many more pages without asking again, each
    marked ``more`` but the last; the puller answers only the last."""
    trio = Trio(page_bytes=1024)
    try:
        a, b = trio.r[A], trio.r[B]
        for i in range(100):
            a.put(f"k{i:02}", bytes(100))
        pull_msg = b.pull_from(A)
        assert pull_msg.ahead == PULL_AHEAD
        (first,) = a.receive(B, pull_msg)
        assert isinstance(first, Page)
        assert first.more
        assert b.receive(A, first) == []  # the next page is on its way: no pull
        pages = [first]
        while pages[-1].more:
            ((peer, page),) = a.more_pages()
            assert peer == B
            assert isinstance(page, Page)
            assert page.after == pages[-1].next
            pages.append(page)
        assert len(pages) == 1 + PULL_AHEAD  # the first and those ahead
        assert a.more_pages() == []
        replies = [b.receive(A, page) for page in pages[1:]]
        assert replies[:-1] == [[]] * (PULL_AHEAD - 1)
        (nxt,) = replies[-1]
        assert isinstance(nxt, Pull)
        assert nxt.after == pages[-1].next
        deliver_all(trio.r, [(B, A, nxt)])
        assert b.scan() == a.scan()
    finally:
        trio.close()


def test_a_waiting_source_is_skipped_only_for_news_it_gave_while_waiting() -> None:
    """The one-source rule skips a waiting member whose acknowledgement shows nothing
    more, but only an acknowledgement newer than its wait: an older one (say from
    before it left the circle) may predate what it has now."""
    trio = Trio()
    try:
        a, b, c = trio.r[A], trio.r[B], trio.r[C]
        a.receive(C, c.summary())  # C's last word: nothing
        c.put("late", b"news")  # ...then C writes, and A has not heard
        b.put("k", b"v")
        first = a.want_from(B)
        assert first is not None
        assert a.want_from(C) is None  # waits its turn
        replies = a.receive(B, b.receive(A, first)[0])
        assert replies == [a.summary()]  # the catch-up from B is done...
        ((peer, pull_c),) = a.take_pulls()  # ...and C's old word does not skip its turn
        assert peer == C
        deliver_all(trio.r, [(A, C, pull_c)])
        assert a.get("late") == b"news"
        # News given while waiting does count: B says it has nothing more, so its turn
        # is skipped.
        b.put("k2", b"v")
        c.put("later", b"x")
        assert a.want_from(C) is not None
        assert a.want_from(B) is None
        a.receive(B, msgspec.structs.replace(b.summary(), vv=a.version_vector()))
        deliver_all(trio.r, [(A, C, a.pull_from(C))])
        assert a.take_pulls() == []
        assert a.get("k2") is None  # B said it had nothing more: not asked (yet)
    finally:
        trio.close()


def test_a_summary_that_asks_is_answered_by_a_member_that_has_more() -> None:
    """A store newly open on A asks the others what they have: B, which has more,
    answers with its own summary (which asks nothing), and A pulls; C, which has
    nothing more, stays silent."""
    trio = Trio()
    try:
        a, b, c = trio.r[A], trio.r[B], trio.r[C]
        b.put("k", b"v")
        asking = a.summary(ask=True)
        assert c.receive(A, asking) == []
        (answer,) = b.receive(A, asking)
        assert isinstance(answer, Summary)
        assert not answer.ask
        (pull_b,) = a.receive(B, answer)
        assert isinstance(pull_b, Pull)
        assert b.receive(A, b.summary()) == []  # a summary that asks nothing gets none
        deliver_all(trio.r, [(A, B, pull_b)])
        assert a.get("k") == b"v"
    finally:
        trio.close()


def test_batches_no_row_needs_any_more_are_forgotten_by_collection() -> None:
    trio = Trio()
    try:
        a = trio.r[A]
        a.put("k", b"1")
        a.put("k", b"2")  # batch 1 has no row left
        a.collect_garbage()  # the first round sweeps
        rows = a._file._db.execute("SELECT origin, seq FROM batches").fetchall()
        assert rows == [(A, 2)]
    finally:
        trio.close()


def test_a_member_ahead_only_on_rows_pushes_bring_is_not_pulled_from() -> None:
    """During a fan-in every member's summary shows rows whose pushes are on their way:
    pulling would fetch them twice. A's pushes to C are arriving, so C does not pull
    from A when A's summary shows one more batch; once no push of A's came for
    ARRIVING_MS, C's tick pulls from A after all (the push was lost)."""
    trio = Trio()
    try:
        a, c = trio.r[A], trio.r[C]
        a.put("k1", b"v1")
        trio.push(A, C)  # arriving
        a.put("k2", b"v2")
        a.take_pushes()  # lost on the way to C
        assert c.receive(A, a.summary()) == []
        assert c.take_pulls() == []
        trio.clock.advance(ARRIVING_MS / 1000 - 0.1)
        c.tick()
        assert c.take_pulls() == []  # still arriving
        trio.clock.advance(0.2)
        c.tick()
        ((peer, pull_a),) = c.take_pulls()
        assert peer == A
        assert isinstance(pull_a, Pull)
        deliver_all(trio.r, [(C, A, pull_a)])
        assert c.get("k2") == b"v2"
    finally:
        trio.close()


def test_a_gap_is_pulled_for_at_once_even_while_pushes_arrive() -> None:
    """Pushes do not fill a gap: a push whose seq skips one is pulled for at once."""
    trio = Trio()
    try:
        a, c = trio.r[A], trio.r[C]
        a.put("k1", b"v1")
        trio.push(A, C)
        a.put("k2", b"v2")
        a.take_pushes()  # lost
        a.put("k3", b"v3")
        (push3,) = a.take_pushes()
        (pull_a,) = c.receive(A, push3)
        assert isinstance(pull_a, Pull)
        deliver_all(trio.r, [(C, A, pull_a)])
        assert (c.get("k2"), c.get("k3")) == (b"v2", b"v3")
    finally:
        trio.close()


def test_a_waiting_member_we_know_nothing_of_is_asked_not_pulled_from() -> None:
    """When its turn comes, a member whose state we do not know is asked (a summary
    with ``ask``): it answers only if it has more, so a catch-up from another source
    is not fetched a second time from it."""
    trio = Trio()
    try:
        a, b, c = trio.r[A], trio.r[B], trio.r[C]
        b.put("k", b"v")
        c.receive(B, b.take_pushes()[0])  # C holds what B has
        first = a.want_from(B)
        assert first is not None
        assert a.want_from(C) is None  # waits; A knows nothing of C
        traffic = deliver_all(trio.r, [(A, B, first)])
        # Pull, page, A's summary to B; then A's ask to C, which has nothing A lacks
        # now, so it stays silent: no second pull, no second page.
        assert traffic.messages == 4
        assert a.get("k") == b"v"
        asked = a.summary(ask=True)
        assert c.receive(A, asked) == []
    finally:
        trio.close()
