"""A seeded, faulty, in-memory network of replicas: reproducible from its seed.

Drives several devices, each with three stores (last-writer-wins, a counter, a
set) in real SQLite files, through a random workload while the network drops,
duplicates, delays and reorders messages, partitions and heals, and devices crash
(sometimes in the middle of a transaction) and restart from their files. Then it
heals everything, runs anti-entropy rounds and checks every replica against an
oracle of the acknowledged writes.

It plays the node's part the way the node should (docs/consistency.md): push
after commits, pull when a peer appears, a summary to every peer on an interval,
replies to the sender, garbage collection on the interval.

    report = run_seed(7, tmp_dir)
    assert not report.problems, report.problems   # each names the seed
"""

from __future__ import annotations

import random
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.clock import Hlc, HybridClock
from accord.data.loopback import device_id
from accord.data.merge import COUNTER, SET_UNION, Merge
from accord.data.model import Batch, SyncMessage, decode, encode
from accord.data.peers import StaticPeers
from accord.data.replica import Replica
from accord.data.rules import StoreKind
from accord.data.sqlite_store import StoreFile
from accord.errors import SyncError

STORES: dict[str, tuple[StoreKind, Merge | None]] = {
    "kv": ("shared", None),
    "mine": ("per-device", None),
    "hits": ("shared", COUNTER),
    "tags": ("shared", SET_UNION),
}


@dataclass(frozen=True)
class FaultConfig:
    replicas: int = 5
    steps: int = 120
    keys: int = 8
    drop: float = 0.15
    duplicate: float = 0.1
    max_delay: int = 6  # steps a message may wait (so messages reorder)
    partition: float = 0.03  # per step: split the devices in two groups
    heal: float = 0.08
    crash: float = 0.006  # per step and device
    crash_mid_write: float = 0.004  # per row written: the process dies mid-transaction
    restart: float = 0.15
    summary_every: int = 12
    skew_ms: int = 400  # per-device wall clock offsets, and occasional backward steps
    page_bytes: int = 1000  # tiny pages, so catch-ups span many messages
    max_rounds: int = 40  # anti-entropy rounds allowed to converge after healing
    stall_ms: int = 150  # a catch-up source silent this long hands its turn on


@dataclass
class Report:
    seed: int
    commits: int = 0
    sent: int = 0
    dropped: int = 0
    bytes: int = 0
    crashes: int = 0
    rounds: int = 0
    collected: int = 0
    refused: Tally[str] = field(default_factory=Tally)
    problems: list[str] = field(default_factory=list)


class SimulatedCrash(Exception):
    """The process dies here: raised inside a transaction, which rolls back."""


class _WallClock:
    """A device's wall clock: offset from the net's time, and able to step back."""

    def __init__(self, net: FaultNet, offset_ms: int) -> None:
        self._net = net
        self.offset_ms = offset_ms

    def wall(self) -> float:
        return (self._net.now_ms + self.offset_ms) / 1000

    def monotonic(self) -> float:
        return self._net.now_ms / 1000


class _Device:
    def __init__(self, net: FaultNet, index: int) -> None:
        self.net = net
        self.id = device_id(index)
        self.clock = _WallClock(net, net.rng.randint(-net.config.skew_ms, net.config.skew_ms))
        self.stores: dict[str, Replica] = {}
        self.up = False
        self.start()

    def start(self) -> None:
        hlc = HybridClock(self.clock)  # a new process: only what is on disk survives
        for name, (kind, merge) in STORES.items():
            file = StoreFile(self.net.directory / f"{self.id}-{name}.sqlite", synchronous="NORMAL")
            self._arm(file)
            self.stores[name] = Replica(
                file,
                name=name,
                device_id=self.id,
                hlc=hlc,
                peers=self.net.peers,
                kind=kind,
                merge=merge,
                page_bytes=self.net.config.page_bytes,
                tombstone_grace_s=0,
                catchup_stall_ms=self.net.config.stall_ms,
                writer_wait_batches=1,  # any gap: the seeds run the wait
            )
        self.up = True

    def _arm(self, file: StoreFile) -> None:
        """Make some writes die mid-transaction, as a killed process would."""
        write_row, upsert = file.write_row, file.upsert
        rng, rate = self.net.rng, self.net.config.crash_mid_write

        def faulty(row: Any, old_lseq: int | None) -> int:
            if self.net.lossy and rng.random() < rate:
                raise SimulatedCrash(self.id)
            return write_row(row, old_lseq)

        def faulty_upsert(params: Any, *, newer_only: bool) -> None:
            for i in range(len(params)):
                if self.net.lossy and rng.random() < rate:
                    upsert(params[:i], newer_only=newer_only)  # some rows went in, then it died
                    raise SimulatedCrash(self.id)
            upsert(params, newer_only=newer_only)

        apply_staged = file.apply_staged

        def faulty_apply(source: str, wanted: Any, *, find_batches: bool) -> int:
            first = apply_staged(source, wanted, find_batches=find_batches)
            if self.net.lossy and rng.random() < rate * 20:
                raise SimulatedCrash(self.id)  # the process dies before commit
            return first

        setattr(file, "write_row", faulty)  # noqa: B010 - an instance-level fault hook
        setattr(file, "upsert", faulty_upsert)  # noqa: B010
        setattr(file, "apply_staged", faulty_apply)  # noqa: B010

    def stop(self) -> None:
        for replica in self.stores.values():
            replica.close()
        self.stores = {}
        self.up = False


class FaultNet:
    def __init__(self, seed: int, directory: Path, config: FaultConfig) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not crypto
        self.directory = directory
        self.config = config
        self.now_ms = 1_700_000_000_000
        self.report = Report(seed)
        self.peers = StaticPeers(device_id(i) for i in range(config.replicas))
        self.devices = [_Device(self, i) for i in range(config.replicas)]
        self.groups: dict[str, int] = {}  # device -> partition group (absent: group 0)
        self.in_flight: list[tuple[int, int, str, str, bytes]] = []
        self._order = 0
        self.step_no = 0
        self.lossy = True
        # The oracle: every acknowledged write.
        self.lww: dict[tuple[str, str, str], tuple[Hlc, str, bytes | None]] = {}
        self.counts: Tally[str] = Tally()
        self.tags: dict[str, set[bytes]] = {}

    # -- network ------------------------------------------------------------------

    def by_id(self, device: str) -> _Device:
        return next(d for d in self.devices if d.id == device)

    def reachable(self, a: str, b: str) -> bool:
        return self.groups.get(a, 0) == self.groups.get(b, 0)

    def send(self, src: str, dst: str, message: SyncMessage) -> None:
        data = encode(message)
        self.report.sent += 1
        self.report.bytes += len(data)
        copies = 2 if self.lossy and self.rng.random() < self.config.duplicate else 1
        for _ in range(copies):
            if self.lossy and self.rng.random() < self.config.drop:
                self.report.dropped += 1
                continue
            delay = self.rng.randint(0, self.config.max_delay) if self.lossy else 0
            self._order += 1
            self.in_flight.append((self.step_no + delay, self._order, src, dst, data))

    def deliver_due(self) -> None:
        due = [m for m in self.in_flight if m[0] <= self.step_no]
        self.in_flight = [m for m in self.in_flight if m[0] > self.step_no]
        due.sort(key=lambda m: m[1])
        if self.lossy:
            self.rng.shuffle(due)
        for _, _, src, dst, data in due:
            self.deliver(src, dst, data)

    def deliver(self, src: str, dst: str, data: bytes) -> None:
        device = self.by_id(dst)
        if not device.up or not self.reachable(src, dst):
            self.report.dropped += 1
            return
        message = decode(data)
        replica = device.stores[message.store]
        try:
            replies = replica.receive(src, message)
        except SyncError as exc:
            self.report.refused[type(exc).__name__] += 1
            return
        except SimulatedCrash:
            self.crash(device)
            return
        for reply in replies:
            self.send(dst, src, reply)
        for peer, pull in replica.take_pulls():
            self.send(dst, peer, pull)

    def tick(self) -> None:
        """Each up device's once-a-second work: stalled catch-ups hand their turn on;
        and the next page of each catch-up it serves ahead."""
        for device in self.devices:
            for replica in device.stores.values():
                replica.tick()
                for peer, message in replica.take_pulls() + replica.more_pages():
                    self.send(device.id, peer, message)

    def pages_ahead(self) -> None:
        for device in self.devices:
            for replica in device.stores.values():
                for peer, page in replica.more_pages():
                    self.send(device.id, peer, page)

    def lost_sight(self) -> None:
        """What presence tells each device: peers it can no longer reach are gone."""
        for device in self.devices:
            for other in self.devices:
                if other is not device and (
                    not other.up or not self.reachable(device.id, other.id)
                ):
                    for replica in device.stores.values():
                        replica.peer_gone(other.id)
                        for peer, pull in replica.take_pulls():
                            self.send(device.id, peer, pull)

    # -- devices ------------------------------------------------------------------

    def crash(self, device: _Device) -> None:
        self.report.crashes += 1
        device.stop()
        self.lost_sight()

    def appeared(self, device: _Device) -> None:
        """What the node does when peers appear to each other: pull both ways."""
        for other in self.devices:
            if other is device or not other.up or not self.reachable(device.id, other.id):
                continue
            for name in STORES:
                device.stores[name].peer_online(other.id)
                other.stores[name].peer_online(device.id)
                pull = device.stores[name].want_from(other.id)
                if pull is not None:
                    self.send(device.id, other.id, pull)
                back = other.stores[name].want_from(device.id)
                if back is not None:
                    self.send(other.id, device.id, back)

    def flush(self, device: _Device) -> None:
        """The node's coalesced push: every pending local batch to every peer."""
        if not device.up:
            return
        for replica in device.stores.values():
            for push in replica.take_pushes():
                for other in self.devices:
                    if other is not device:
                        self.send(device.id, other.id, push)

    def anti_entropy(self) -> None:
        for device in self.devices:
            if not device.up:
                continue
            for replica in device.stores.values():
                self.report.collected += self._guard(device, replica.collect_garbage)
                summary = replica.summary()
                for other in self.devices:
                    if other is not device:
                        self.send(device.id, other.id, summary)

    def _guard(self, device: _Device, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except SimulatedCrash:
            self.crash(device)
            return 0

    # -- workload -----------------------------------------------------------------

    def write(self, device: _Device) -> None:
        rng = self.rng
        name = rng.choice(list(STORES))
        replica = device.stores[name]
        key = f"k{rng.randrange(self.config.keys)}"
        try:
            if name in ("kv", "mine"):
                ops = rng.randint(1, 3)
                with replica.batch() as b:
                    for _ in range(ops):
                        k = f"k{rng.randrange(self.config.keys)}"
                        if rng.random() < 0.3:
                            b.delete(k)
                        else:
                            b.put(k, rng.randbytes(rng.randint(0, 40)))
                batch = b.committed
                assert batch is not None
                self._record_lww(name, device.id, batch)
            elif name == "hits":
                amount = rng.randint(-3, 5)
                replica.update(key, lambda s: COUNTER.add(s, device.id, amount))
                self.counts[key] += amount
            else:
                items = {rng.randbytes(2) for _ in range(rng.randint(1, 3))}
                replica.put(key, SET_UNION.of(*items))
                self.tags.setdefault(key, set()).update(items)
        except SimulatedCrash:
            self.crash(device)  # not acknowledged: the oracle does not count it
            return
        self.report.commits += 1

    def _record_lww(self, name: str, device: str, batch: Batch) -> None:
        for op in batch.ops:
            slot = (name, device if name == "mine" else "", op.key)
            old = self.lww.get(slot)
            if old is None or (batch.hlc, device) > (old[0], old[1]):
                self.lww[slot] = (batch.hlc, device, op.value)

    # -- the run ------------------------------------------------------------------

    def chaos_step(self) -> None:
        rng, config = self.rng, self.config
        self.step_no += 1
        self.now_ms += rng.randint(1, 30)
        for device in self.devices:
            if device.up and rng.random() < config.crash:
                self.crash(device)
            elif not device.up and rng.random() < config.restart:
                device.start()
                self.appeared(device)
        if rng.random() < config.partition:
            self.groups = {d.id: rng.randrange(2) for d in self.devices}
            self.lost_sight()
        elif self.groups and rng.random() < config.heal:
            self.groups = {}
            for device in self.devices:
                if device.up:
                    self.appeared(device)
        if rng.random() < 0.02:  # an NTP step backwards on one device
            rng.choice(self.devices).clock.offset_ms -= rng.randint(1, config.skew_ms)
        up = [d for d in self.devices if d.up]
        for device in rng.sample(up, k=min(len(up), rng.randint(0, 2))):
            self.write(device)
            if rng.random() < 0.7:
                self.flush(device)
        if self.step_no % config.summary_every == 0:
            self.anti_entropy()
        self.tick()
        self.deliver_due()

    def settle(self) -> None:
        """Heal everything, stop faults, and run anti-entropy until quiet."""
        self.lossy = False
        self.groups = {}
        for device in self.devices:
            if not device.up:
                device.start()
        for device in self.devices:
            self.flush(device)
            self.appeared(device)
        for rounds in range(1, self.config.max_rounds + 1):
            self.report.rounds = rounds
            while self.in_flight:
                self.step_no += 1
                self.deliver_due()
                self.pages_ahead()
            self.now_ms += self.config.stall_ms  # time passes: a lost page's source stalls
            self.tick()
            self.anti_entropy()
            while self.in_flight:
                self.step_no += 1
                self.deliver_due()
            if self.converged():
                return
        self.report.problems.append(
            f"seed {self.seed}: no convergence after {self.config.max_rounds} rounds"
        )

    def converged(self) -> bool:
        first = self.devices[0]
        return all(
            d.stores[n].version_vector() == first.stores[n].version_vector()
            and d.stores[n].scan() == first.stores[n].scan()
            for d in self.devices
            for n in STORES
        )

    def check(self) -> None:
        for device in self.devices:
            for name in STORES:
                got, want = self.observed(device.stores[name]), self.expected(name)
                if got != want:
                    diff = sorted(set(got.items()) ^ set(want.items()), key=repr)[:4]
                    self.report.problems.append(
                        f"seed {self.seed}: {device.id} {name} differs from the oracle: {diff}"
                    )

    def observed(self, replica: Replica) -> dict[tuple[str, str], object]:
        entries = replica.scan()
        if replica.name == "hits":
            return {(e.device, e.key): COUNTER.value(e.value) for e in entries}
        if replica.name == "tags":
            return {(e.device, e.key): SET_UNION.items(e.value) for e in entries}
        return {(e.device, e.key): e.value for e in entries}

    def expected(self, name: str) -> dict[tuple[str, str], object]:
        if name == "hits":
            # A counter's key exists once written, even if its value came back to 0.
            return {("", key): total for key, total in self.counts.items()}
        if name == "tags":
            return {("", key): frozenset(items) for key, items in self.tags.items()}
        return {
            (ns, key): value
            for (store, ns, key), (_, _, value) in self.lww.items()
            if store == name and value is not None
        }

    def close(self) -> None:
        for device in self.devices:
            if device.up:
                device.stop()


def run_seed(seed: int, directory: Path, config: FaultConfig | None = None) -> Report:
    """One full run: chaos, settle, check, then tombstone collection. Deterministic
    in ``seed`` (timing plays no part), so a failing seed replays exactly."""
    net = FaultNet(seed, directory, config or FaultConfig())
    try:
        for _ in range(net.config.steps):
            net.chaos_step()
        net.settle()
        net.check()
        # With everyone acknowledging everything, every tombstone must go, everywhere
        # (once every device's clock, skewed or stepped back, has passed its writes).
        net.now_ms += 10 * net.config.skew_ms + 1000
        for _ in range(3):
            net.anti_entropy()
            while net.in_flight:
                net.step_no += 1
                net.deliver_due()
        for device in net.devices:
            for name, replica in device.stores.items():
                if replica.tombstones():
                    net.report.problems.append(
                        f"seed {seed}: {device.id} store {name}: tombstones left after GC"
                    )
        net.check()
        return net.report
    finally:
        net.close()
