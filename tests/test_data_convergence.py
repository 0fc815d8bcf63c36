"""Whatever order, duplication or grouping the same batches arrive in, every replica
ends in the same state; and no reader or watcher ever sees part of a batch."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.clock import HybridClock, ManualClock
from accord.data import (
    COUNTER,
    SET_UNION,
    Batch,
    ChangeSet,
    Op,
    Push,
    Replica,
    StaticPeers,
    SyncMessage,
)
from accord.data.loopback import deliver_all, device_id
from accord.data.merge import Merge

WRITERS = [device_id(i) for i in range(3)]
READERS = [device_id(i) for i in range(3, 5)]
KEYS = ["k0", "k1", "k2", "k3"]
MERGES: dict[str, Merge | None] = {"lww": None, "counter": COUNTER, "set": SET_UNION}

# A writer's command: advance its clock, then commit a batch, or first pull from a
# peer (so writes also happen after, not only beside, each other).
write = st.tuples(
    st.integers(0, 2),  # writer
    st.sampled_from([0, 0, 0, 1, 1000]),  # ms to advance its clock (0: ties in wall time)
    st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-2, 3)), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 2)),  # pull from this writer first
)
deliveries = st.lists(
    st.tuples(st.sampled_from(["push", "pull"]), st.integers(0, 1000)), max_size=25
)


@dataclass
class World:
    merge: Merge | None
    clocks: dict[str, ManualClock] = field(default_factory=dict)
    replicas: dict[str, Replica] = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    watched: list[tuple[str, ChangeSet]] = field(default_factory=list)
    watch_errors: list[str] = field(default_factory=list)

    def open(self) -> None:
        peers = StaticPeers(WRITERS + READERS)
        for device in WRITERS + READERS:
            self.clocks[device] = ManualClock()
            self.replicas[device] = Replica.open(
                None,
                name="s",
                device_id=device,
                hlc=HybridClock(self.clocks[device]),
                peers=peers,
                merge=self.merge,
                page_bytes=300,  # catch-ups of a few rows already span pages
            )
        for device in READERS:
            self.replicas[device].subscribe(functools.partial(self.watch, device))

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.close()

    def value(self, writer: str, key: str, n: int) -> bytes | None:
        replica = self.replicas[writer]
        if self.merge is COUNTER:
            return COUNTER.add(replica.get(key), writer, n)
        if self.merge is SET_UNION:
            return SET_UNION.of(str(n).encode())
        return None if n < 0 else f"{writer[-1]}{n}".encode()

    def run_writes(
        self, commands: list[tuple[int, int, list[tuple[str, int]], int | None]]
    ) -> None:
        for who, advance, ops, pull_from in commands:
            writer = WRITERS[who]
            self.clocks[writer].advance(advance / 1000)
            if pull_from is not None and pull_from != who:
                source = WRITERS[pull_from]
                deliver_all(
                    self.replicas, [(writer, source, self.replicas[writer].pull_from(source))]
                )
            batch = self.replicas[writer].commit(Op(k, self.value(writer, k, n)) for k, n in ops)
            assert batch is not None
            self.batches.append(batch)
            self.pushes.extend(self.replicas[writer].take_pushes())

    # -- what a reader may see ---------------------------------------------------

    def check_atomic(self) -> None:
        """Every reader's state is exactly the join of the batches its vv names."""
        assert self.watch_errors == []
        for device in READERS:
            replica = self.replicas[device]
            vv = replica.version_vector()
            for batch in self.batches:
                applied = vv.get(batch.origin, 0) >= batch.seq
                for op in batch.ops:
                    row = replica.row(op.key)
                    if self.merge is None:
                        shows = row is not None and row.dots == {batch.origin: batch.seq}
                        assert not shows or applied, f"{device} shows part of an unapplied batch"
                        if applied:
                            assert row is not None
                            assert (row.hlc, row.origin) >= (batch.hlc, batch.origin)
                    elif applied:
                        assert row is not None
                        assert op.value is not None
                        assert row.value is not None
                        assert self.merge.join(row.value, op.value) == row.value
                if self.merge is not None:
                    for key in KEYS:
                        row = replica.row(key)
                        for origin, seq in (row.dots if row else {}).items():
                            assert seq <= vv.get(origin, 0), f"{device} holds an unapplied part"

    def watch(self, device: str, changes: ChangeSet) -> None:
        try:  # the replica logs a watcher's exceptions; collect them to fail the test
            self.on_change(device, changes)
        except AssertionError as exc:
            self.watch_errors.append(f"{device}: {exc!r}")

    def on_change(self, device: str, changes: ChangeSet) -> None:
        self.watched.append((device, changes))
        if changes.source != "push" or self.merge is not None:
            return
        # A pushed batch's changes arrive together: exactly the keys it now shows.
        (batch,) = {
            b for b in self.batches if (b.origin, b.hlc) == (changes.peer, changes.changes[0].hlc)
        }
        assert {(c.origin, c.hlc) for c in changes.changes} == {(batch.origin, batch.hlc)}
        replica = self.replicas[device]
        showing = {
            op.key: row.value
            for op in batch.ops
            if (row := replica.row(op.key)) and row.dots == {batch.origin: batch.seq}
        }
        got = {c.key for c in changes.changes}
        # (a delete of a key that was not there shows no change)
        assert {k for k, v in showing.items() if v is not None} <= got <= set(showing)

    # -- what every replica must end with ------------------------------------------

    def expected(self) -> dict[str, bytes]:
        out: dict[str, tuple[object, bytes | None]] = {}
        for batch in self.batches:
            for op in batch.ops:
                if self.merge is None:
                    old = out.get(op.key)
                    rank = (batch.hlc, batch.origin)
                    if old is None or rank > old[0]:  # type: ignore[operator]
                        out[op.key] = (rank, op.value)
                else:
                    assert op.value is not None
                    prev = out.get(op.key, (None, None))[1]
                    joined = self.merge.join(prev, op.value) if prev else op.value
                    out[op.key] = (None, self.merge.join(joined, joined))
        return {k: v for k, (_, v) in out.items() if v is not None}


def world(merge: str) -> Iterator[World]:
    w = World(MERGES[merge])
    w.open()
    try:
        yield w
    finally:
        w.close()


def converge(
    merge: str,
    commands: list[tuple[int, int, list[tuple[str, int]], int | None]],
    schedule: dict[str, list[tuple[str, int]]],
) -> None:
    for w in world(merge):
        w.run_writes(commands)
        everyone = WRITERS + READERS
        for reader in READERS:
            for kind, n in schedule[reader]:
                if kind == "push" and w.pushes:
                    push = w.pushes[n % len(w.pushes)]  # any order, any number of times
                    first: list[tuple[str, str, SyncMessage]] = [
                        (push.batches[0].origin, reader, push)
                    ]
                else:
                    source = everyone[n % len(everyone)]
                    if source == reader:
                        continue
                    first = [(reader, source, w.replicas[reader].pull_from(source))]
                deliver_all(w.replicas, first, after_each=w.check_atomic)
        # Anti-entropy: every reader pulls from every writer.
        for reader in READERS:
            for writer in WRITERS:
                pulling = [(reader, writer, w.replicas[reader].pull_from(writer))]
                deliver_all(w.replicas, pulling, after_each=w.check_atomic)
        want = w.expected()
        final_vv = {b.origin: b.seq for b in w.batches}
        for reader in READERS:
            replica = w.replicas[reader]
            assert {e.key: e.value for e in replica.scan()} == want
            assert replica.version_vector() == final_vv


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(MERGES)),
    st.lists(write, min_size=1, max_size=12),
    st.fixed_dictionaries(dict.fromkeys(READERS, deliveries)),
)
def test_any_delivery_order_converges_to_the_same_state(
    merge: str,
    commands: list[tuple[int, int, list[tuple[str, int]], int | None]],
    schedule: dict[str, list[tuple[str, int]]],
) -> None:
    converge(merge, commands, schedule)


@settings(max_examples=25, deadline=None)
@given(st.lists(write, min_size=1, max_size=8), st.permutations(range(8)))
def test_permuted_pushes_with_duplicates_give_identical_replicas(
    commands: list[tuple[int, int, list[tuple[str, int]], int | None]], order: list[int]
) -> None:
    """Two readers get every push twice, in opposite orders: same rows."""
    for w in world("lww"):
        w.run_writes(commands)
        n = len(w.pushes)
        forward = [i for i in order if i < n] * 2
        for reader, sequence in [(READERS[0], forward), (READERS[1], forward[::-1])]:
            for i in sequence:
                push = w.pushes[i]
                deliver_all(w.replicas, [(push.batches[0].origin, reader, push)])
            w.check_atomic()
        a, b = (w.replicas[r] for r in READERS)
        assert [a.row(k) for k in KEYS] == [b.row(k) for k in KEYS]
        assert a.version_vector() == b.version_vector()
