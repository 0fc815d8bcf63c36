"""Who a store's summaries go to: all of a small circle, a rotating few of a big one
(so a round costs O(N log N) messages circle-wide, and everyone is still reached)."""

from __future__ import annotations

import math

from accord.data import gossip

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
