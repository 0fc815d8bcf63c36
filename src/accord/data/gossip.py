"""Which members a store's summaries go to: every member of a small circle, a rotating
few of a big one, so one round of anti-entropy (or a store opening) costs O(N log N)
messages circle-wide instead of O(N^2).

A difference still spreads: a summary that asks is answered by a member that has
more, and the one that lacks pulls; with ~log2(N) members reached per node and round
(a different few each round), a row one member missed reaches it within a few
rounds. Tombstones are collected later in a big circle (every participant's
acknowledgement arrives within about N / fanout rounds instead of one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

ALL_UP_TO: Final = 8  # circles this small hear every summary, as before
QUIET_EVERY: Final = 4  # an unchanged member of a big circle gossips every 4th round


def fanout(members: int) -> int:
    """How many of ``members`` a round reaches."""
    if members <= ALL_UP_TO:
        return members
    return max(2, math.ceil(math.log2(members)))


def rotating(peers: Sequence[str], turn: int) -> list[str]:
    """The ``fanout`` of ``peers`` whose turn ``turn`` is (all of a small circle):
    consecutive slices of the sorted list, so each is reached every N / fanout turns."""
    k = fanout(len(peers))
    if k >= len(peers):
        return list(peers)
    start = (turn * k) % len(peers)
    return [peers[(start + i) % len(peers)] for i in range(k)]


def quiet(members: int, unchanged: bool, turn: int) -> bool:
    """Skip this round's summaries of a store? Only in a big circle, only if the
    store is as it was when last gossiped, and not every QUIET_EVERY-th round."""
    return members > ALL_UP_TO and unchanged and turn % QUIET_EVERY != 0
