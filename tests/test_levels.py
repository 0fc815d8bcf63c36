"""Security levels and data labels: the full SL x S matrix, fail-closed on anything
unknown, and a LevelDenied message that says who, what level and what is needed."""

from __future__ import annotations

import pytest

from accord.errors import LevelDenied, TrustError
from accord.trust.levels import may_receive, require_may_receive

LEVELS = ["SL1", "SL2", "SL3", "SL4", "SL5"]
LABELS = ["S1", "S2", "S3", "S4"]
ALLOWED = {
    "SL1": {"S1"},
    "SL2": {"S1", "S2"},
    "SL3": {"S1", "S2", "S3"},
    "SL4": {"S1", "S2", "S3", "S4"},
    "SL5": {"S1", "S2", "S3", "S4"},
}
MIN_LEVEL = {"S1": "SL1", "S2": "SL2", "S3": "SL3", "S4": "SL4"}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("label", LABELS)
def test_matrix(level: str, label: str) -> None:
    expected = label in ALLOWED[level]
    assert may_receive(level, label) is expected
    if expected:
        require_may_receive(level, label, "kitchen-tv")
    else:
        with pytest.raises(LevelDenied):
            require_may_receive(level, label, "kitchen-tv")


def test_matrix_counts() -> None:
    allowed = [(lv, lb) for lv in LEVELS for lb in LABELS if may_receive(lv, lb)]
    assert len(allowed) == 1 + 2 + 3 + 4 + 4


@pytest.mark.parametrize(
    ("level", "label"),
    [
        ("SL0", "S1"),
        ("SL6", "S1"),
        ("sl5", "S1"),
        ("SL5 ", "S1"),
        ("", "S1"),
        ("S1", "S1"),
        ("SL5", "S0"),
        ("SL5", "S5"),
        ("SL5", "s1"),
        ("SL5", ""),
        ("SL5", "SL1"),
        ("SL5", " S1"),
        ("", ""),
    ],
)
def test_unknown_level_or_label_fails_closed(level: str, label: str) -> None:
    assert may_receive(level, label) is False
    with pytest.raises(LevelDenied):
        require_may_receive(level, label, "fridge")


@pytest.mark.parametrize(("level", "label"), [("SL1", "S2"), ("SL2", "S3"), ("SL3", "S4")])
def test_denial_message(level: str, label: str) -> None:
    with pytest.raises(LevelDenied) as info:
        require_may_receive(level, label, "Living room TV")
    message = str(info.value)
    assert "Living room TV" in message
    assert level in message
    assert label in message
    assert MIN_LEVEL[label] in message
    assert isinstance(info.value, TrustError)


def test_denial_message_for_unknown_label_names_device_and_level() -> None:
    with pytest.raises(LevelDenied) as info:
        require_may_receive("SL5", "S9", "hall-speaker")
    assert "hall-speaker" in str(info.value)
    assert "SL5" in str(info.value)
