"""Security levels and data labels: the one check every sender uses.

A device declares its level SL1..SL5; data carries a label S1..S4. Data labelled
Sx may go only to a device whose level allows it: SL1 -> S1, SL2 -> up to S2,
SL3 -> up to S3, SL4 and SL5 -> up to S4.
"""

from __future__ import annotations

from typing import Literal, get_args

from accord.errors import LevelDenied

DataLabel = Literal["S1", "S2", "S3", "S4"]
SecurityLevel = Literal["SL1", "SL2", "SL3", "SL4", "SL5"]

_HIGHEST_LABEL: dict[str, int] = {"SL1": 1, "SL2": 2, "SL3": 3, "SL4": 4, "SL5": 4}
_LABEL_RANK: dict[str, int] = {label: i + 1 for i, label in enumerate(get_args(DataLabel))}


def may_receive(level: str, label: str) -> bool:
    """True if a device of security ``level`` may receive data labelled ``label``.

    Unknown levels or labels are never allowed (fail closed)."""
    highest = _HIGHEST_LABEL.get(level)
    rank = _LABEL_RANK.get(label)
    return highest is not None and rank is not None and rank <= highest


def require_may_receive(level: str, label: str, device: str) -> None:
    """Raise :class:`LevelDenied` unless ``device`` (of ``level``) may receive ``label``."""
    if not may_receive(level, label):
        raise LevelDenied(
            f"{device} is {level}; data labelled {label} needs {_min_level(label)} or higher"
        )


def _min_level(label: str) -> str:
    for level, highest in _HIGHEST_LABEL.items():
        if _LABEL_RANK.get(label, 99) <= highest:
            return level
    return "a known level"
