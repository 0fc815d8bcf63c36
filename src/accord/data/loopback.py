"""A perfect in-memory network between replicas, for tests and tools: every
message is encoded and decoded, delivered in order, and answered."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from accord.data.model import SyncMessage, decode, encode
from accord.data.replica import Replica

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


@dataclass
class Traffic:
    messages: int = 0
    bytes: int = 0


def deliver_all(
    replicas: Mapping[str, Replica],
    first: Sequence[tuple[str, str, SyncMessage]],
    *,
    after_each: Callable[[], None] | None = None,
    limit: int = 100_000,
) -> Traffic:
    """A perfect network: deliver (src, dst, message) in order, encoded and decoded,
    with every reply, until none is left. ``after_each`` runs between messages (an
    observer: it sees whatever state a reader could)."""
    queue = deque(first)
    traffic = Traffic()
    while queue:
        src, dst, message = queue.popleft()
        data = encode(message)
        traffic.messages += 1
        traffic.bytes += len(data)
        if traffic.messages > limit:
            raise RuntimeError(f"more than {limit} messages: sync does not quiesce")
        for reply in replicas[dst].receive_bytes(src, data):
            queue.append((dst, src, decode(reply)))
        for peer, pull in replicas[dst].take_pulls():
            queue.append((dst, peer, pull))
        for name, replica in replicas.items():
            for peer, page in replica.more_pages():
                queue.append((name, peer, page))
        if after_each is not None:
            after_each()
    return traffic


def pull(replicas: Mapping[str, Replica], puller: str, source: str) -> Traffic:
    """``puller`` catches up from ``source`` (and ``source`` from it, if behind)."""
    name = replicas[puller].name
    assert replicas[source].name == name
    return deliver_all(replicas, [(puller, source, replicas[puller].pull_from(source))])


def device_id(i: int) -> str:
    """A valid device id for the i-th simulated device."""
    tail = ""
    n = i
    for _ in range(6):
        tail = _ALPHABET[n % 32] + tail
        n //= 32
    return "d" * 20 + tail
