"""Where an app runs: a pure, deterministic choice among the circle's devices.

Every device that computes a placement from the same view picks the same device,
so failover needs no election. The rules, in order:

1. Only candidates that are online, have every capability in ``manifest.requires``,
   and whose security level may hold ``manifest.state_label`` are eligible; with
   ``max_level``, only those at that level or below (who may place or fail the app
   over there: see :mod:`accord.apps.authority`). ``exclude`` and ``previous``
   remove more.
2. Mains power before battery (an app should not drain a phone).
3. If ``manifest.prefer_display`` or ``"display"`` is required: larger
   ``display_inches`` first. Otherwise the display does not matter.
4. Lower load first, compared in buckets of 0.05 (``floor(load * 20)``, load
   clamped to 0..1, NaN counting as 1), so measurement noise does not flip choices.
5. Then ``name``, then ``device_id`` (lexicographic).

A last tie-break on the candidate's encoded bytes only matters when the same
``device_id`` appears twice in the input; it keeps even that deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

import msgspec

from accord.apps.errors import NoPlacement
from accord.apps.manifest import AppManifest
from accord.trust.levels import may_receive
from accord.trust.members import level_rank

LOAD_STEP = 0.05
_BUCKETS = round(1 / LOAD_STEP)


class Candidate(msgspec.Struct, frozen=True):
    """One device as the placer sees it."""

    device_id: str
    name: str
    capabilities: list[str]
    mains: bool
    """On mains power (True) or on battery."""
    load: float
    """0..1: CPU fraction, or load average per core."""
    display_inches: float = 0.0
    online: bool = True
    level: str = "SL1"
    """The member's security level as the circle records it (unknown: the lowest)."""


Score = tuple[int, float, int, str, str]


def missing(manifest: AppManifest, candidate: Candidate) -> list[str]:
    """The required capabilities the candidate lacks, in the manifest's order."""
    have = set(candidate.capabilities)
    return [cap for cap in manifest.requires if cap not in have]


def _wants_display(manifest: AppManifest) -> bool:
    return manifest.prefer_display or "display" in manifest.requires


def load_bucket(load: float) -> int:
    """``floor(load * 20)`` with load clamped to 0..1 and NaN as 1 (rule 4)."""
    if math.isnan(load):
        return _BUCKETS
    clamped = min(max(load, 0.0), 1.0)
    return math.floor(clamped * _BUCKETS + 1e-9)


def score(manifest: AppManifest, candidate: Candidate) -> Score:
    """Sort key of an eligible candidate: smaller is better (rules 2 to 5)."""
    inches = candidate.display_inches
    display = -inches if _wants_display(manifest) and math.isfinite(inches) else 0.0
    return (
        0 if candidate.mains else 1,
        display,
        load_bucket(candidate.load),
        candidate.name,
        candidate.device_id,
    )


def _reason(
    manifest: AppManifest,
    candidate: Candidate,
    exclude: Collection[str],
    max_level: str | None = None,
) -> str | None:
    """Why the candidate is not eligible, or None if it is (rule 1)."""
    if candidate.device_id in exclude:
        return "excluded"
    if not candidate.online:
        return "offline"
    lacks = missing(manifest, candidate)
    if lacks:
        return "lacks " + ", ".join(lacks)
    if not may_receive(candidate.level, manifest.state_label):
        return f"{candidate.level} may not hold {manifest.state_label} state"
    if max_level is not None and level_rank(candidate.level) > level_rank(max_level):
        return f"{candidate.level} is above {max_level}, the most the app may go to"
    return None


def _sort_key(manifest: AppManifest, candidate: Candidate) -> tuple[Score, bytes]:
    return score(manifest, candidate), msgspec.msgpack.encode(candidate)


def rank(
    manifest: AppManifest,
    candidates: Iterable[Candidate],
    *,
    exclude: Collection[str] = (),
    max_level: str | None = None,
) -> list[Candidate]:
    """Eligible candidates, best first; the input order never matters."""
    eligible = [c for c in candidates if _reason(manifest, c, exclude, max_level) is None]
    return sorted(eligible, key=lambda c: _sort_key(manifest, c))


def choose(
    manifest: AppManifest,
    candidates: Sequence[Candidate],
    *,
    exclude: Collection[str] = (),
    max_level: str | None = None,
) -> Candidate:
    """The best device for the app, or NoPlacement saying why each device was refused."""
    ranked = rank(manifest, candidates, exclude=exclude, max_level=max_level)
    if ranked:
        return ranked[0]
    reasons = sorted(
        (c.name or c.device_id, c.device_id, _reason(manifest, c, exclude, max_level) or "")
        for c in candidates
    )
    if not reasons:
        raise NoPlacement(
            f"no device can run {manifest.id}: no devices are known; start a node "
            "(accord up) and check that it sees the circle (accord devices)"
        )
    listed = "; ".join(f"{label}: {why}" for label, _, why in reasons)
    hint = ""
    if manifest.requires:
        hint = (
            f" - bring online a device with {', '.join(manifest.requires)}, or change "
            "'requires' in the app's manifest"
        )
    raise NoPlacement(
        f"no device can run {manifest.id}: {listed}{hint}",
        [(device_id, why) for _, device_id, why in reasons],
    )


def failover_successor(
    manifest: AppManifest,
    candidates: Sequence[Candidate],
    *,
    previous: str,
    max_level: str | None = None,
) -> Candidate | None:
    """Where the app goes when ``previous`` fails: the same answer on every device.
    ``max_level``: the checkpoint's authority (its grant's signer level)."""
    ranked = rank(manifest, candidates, exclude=(previous,), max_level=max_level)
    return ranked[0] if ranked else None
