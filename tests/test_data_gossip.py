"""Who a store's summaries go to: all of a small circle, a rotating few of a big one
(so a round costs O(N log N) messages circle-wide, and everyone is still reached)."""

from __future__ import annotations

import math

import pytest

from accord.data import SyncMessage, gossip
from accord.data.model import Summary
from tests.nodes import Mesh

PEERS = [f"p{i:03d}" for i in range(99)]


def test_a_small_circle_hears_every_summary() -> None:
    small = PEERS[: gossip.ALL_UP_TO]
    for turn in range(5):
        assert gossip.rotating(small, turn) == small


def test_a_big_circle_is_reached_a_few_at_a_time_and_all_within_n_over_k_rounds() -> None:
    k = gossip.fanout(len(PEERS))
    assert k == math.ceil(math.log2(len(PEERS)))
    reached: set[str] = set()
    rounds = math.ceil(len(PEERS) / k)
    for turn in range(rounds):
        picked = gossip.rotating(PEERS, turn)
        assert len(picked) == k
        assert len(set(picked)) == k
        reached |= set(picked)
    assert reached == set(PEERS)


def test_a_round_costs_n_log_n_messages_not_n_squared() -> None:
    n = 100
    per_round = sum(len(gossip.rotating(PEERS, turn)) for turn in range(n))
    assert per_round <= n * math.ceil(math.log2(n))
    assert per_round < n * (n - 1) / 10


def test_no_peers_and_one_peer() -> None:
    assert gossip.rotating([], 3) == []
    assert gossip.rotating(["only"], 3) == ["only"]


def test_an_idle_member_of_a_big_circle_speaks_every_few_rounds() -> None:
    big = len(PEERS)
    spoke = [turn for turn in range(1, 13) if not gossip.quiet(big, True, turn)]
    assert spoke == [4, 8, 12]
    assert not any(gossip.quiet(big, False, turn) for turn in range(1, 13))  # a change: now
    small = gossip.ALL_UP_TO
    assert not any(gossip.quiet(small, True, turn) for turn in range(1, 13))  # as before


async def test_a_node_in_a_big_circle_gossips_to_a_few_and_only_what_changed(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's anti-entropy in a circle of 20 online members: each store's summary
    (asking) goes to ceil(log2 20) of them, a different few next round; a store
    unchanged since it was last gossiped stays quiet until its 4th round."""
    phone = await mesh.start("phone", "nokia-x60")
    await phone.data.open("notes").put("k", b"v")
    data = phone.data
    members = sorted(f"member{i:02d}" for i in range(20))
    monkeypatch.setattr(data, "_online", set(members))
    for name in data.stores.names():
        monkeypatch.setattr(data.stores.get(name), "may_share", lambda _peer: True)
    sent: list[tuple[str, str, SyncMessage]] = []
    monkeypatch.setattr(
        data, "_send", lambda peer, replica, message: sent.append((peer, replica.name, message))
    )
    data._round = 0
    data.anti_entropy()
    to_notes = [(p, m) for p, name, m in sent if name == "notes"]
    assert len(to_notes) == gossip.fanout(20) == 5
    assert all(isinstance(m, Summary) and m.ask for _, m in to_notes)
    first = {p for p, _ in to_notes}
    sent.clear()
    await data.open("notes").put("k2", b"v")  # changed: it speaks; the others are quiet
    data.anti_entropy()
    assert {name for _, name, _ in sent} == {"notes"}
    assert not first & {p for p, _, _ in sent}  # the next few
    sent.clear()
    data.anti_entropy()  # round 3: nothing changed
    assert sent == []
    data.anti_entropy()  # round 4: every store speaks
    assert {name for _, name, _ in sent} == set(data.stores.names())
