"""QuietLog: one warning per kind of peer fault, and bounded memory under a flood."""

from __future__ import annotations

import logging

import pytest

from accord.wire.quiet import QuietLog


def test_each_kind_warns_once_and_the_seen_set_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.quiet")
    quiet = QuietLog(log, limit=3)
    with caplog.at_level(logging.DEBUG, logger="test.quiet"):
        for _ in range(3):
            quiet.warn("bad-frame", "bad frame from %s", "fridge")
        for i in range(1000):  # a hostile peer varying its faults
            quiet.warn(f"kind-{i}", "fault %d", i)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings[:1]] == ["bad frame from fridge"]
    assert sum(r.getMessage() == "bad frame from fridge" for r in warnings) == 1
    assert len(quiet._seen) == 3
