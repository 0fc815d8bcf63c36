"""Five replicas on a seeded faulty network converge, and lose no acknowledged write.

Each seed replays exactly: rerun one with ``ACCORD_FAULTNET_SEEDS=<first>:<last>``
(default ``0:29`` and the seeds that once failed), or call
:func:`accord.data.faultnet.run_seed` from a benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accord.data.faultnet import FaultConfig, run_seed

# Seeds beyond the default range that once failed, run every time: 903 never
# converged when the catch-up source in flight was left out of line (e0c81e8).
ONCE_FAILED = (903,)


def _seeds() -> list[int]:
    spec = os.environ.get("ACCORD_FAULTNET_SEEDS")
    if spec is None:
        return [*range(30), *ONCE_FAILED]
    first, _, last = spec.partition(":")
    return list(range(int(first), int(last or first) + 1))


@pytest.mark.parametrize("seed", _seeds())
def test_every_seed_converges_without_losing_acknowledged_writes(seed: int, tmp_path: Path) -> None:
    report = run_seed(seed, tmp_path)
    assert not report.problems, f"seed {seed} (replay: ACCORD_FAULTNET_SEEDS={seed}): " + "; ".join(
        report.problems
    )
    assert not report.refused, f"seed {seed}: honest peers were refused: {report.refused}"
    assert report.commits > 50, f"seed {seed}: too little work to mean anything"


def test_a_seed_replays_exactly(tmp_path: Path) -> None:
    config = FaultConfig(steps=40)
    first = run_seed(3, tmp_path / "a", config)
    second = run_seed(3, tmp_path / "b", config)
    assert (first.commits, first.sent, first.dropped, first.bytes, first.crashes) == (
        second.commits,
        second.sent,
        second.dropped,
        second.bytes,
        second.crashes,
    )


def test_the_network_is_actually_faulty(tmp_path: Path) -> None:
    report = run_seed(11, tmp_path)
    assert report.dropped > 100
    assert report.crashes > 0
    assert report.collected > 0
