"""The circle's catalog of stores: a store's name, kind, label and merge are circle-wide.

Sans-IO: the rules only; :mod:`accord.data.service` keeps the catalog and applies them.

Every device declares each store it holds in ``accord.catalog``, a replicated
*per-device* store labelled S1: key = the store's name, value = a
:class:`Declaration` (kind, label, merge, when) in the device's own namespace. A
per-device namespace is written only by its device, and every row carries its
origin's signature (:mod:`accord.data.provenance`), so a declaration proves who made
it; no member can declare in another's name, or withdraw another's declaration.

What the circle's store of a name is (:func:`resolve`), the same on every device
that holds the same catalog and member list:

* only declarations by current members count, and only for a label the declarer's
  level may hold (an SL1 member cannot claim a name at S2);
* of those, the winner is the one with the **highest label**, then the **highest
  declarer level**, then the earliest ``at``, then the smallest device id.

A conflict therefore never lowers a label, and a member can never win a name over a
declaration of a higher label or by a higher-level member, however early it claims
to have declared (``at`` is the declarer's word). A device creates a store only with
the winner's settings (if there is a winner), opens a store a peer syncs only if it
matches the winner, and refuses its own writes to a store it holds with other
settings (it lost a concurrent creation). Names and settings are visible to every
member, SL1 included; contents are not. The node's own stores (:data:`SYSTEM`) have
fixed settings and are never declared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Final, get_args

import msgspec

from accord.data.limits import STORE_NAME
from accord.data.rules import StoreKind
from accord.trust.levels import DataLabel, may_receive
from accord.trust.members import level_rank

CATALOG: Final = "accord.catalog"
MAX_MERGE_NAME: Final = 64


class Settings(msgspec.Struct, frozen=True, array_like=True):
    """What makes a store the store it is, besides its name."""

    kind: StoreKind
    label: DataLabel
    merge: str = ""  # "" = last-writer-wins, else the merge's name

    def describe(self) -> str:
        """``shared, S2, last-writer-wins``."""
        return f"{self.kind}, {self.label}, {self.merge or 'last-writer-wins'}"


class Declaration(msgspec.Struct, frozen=True, array_like=True):
    """A catalog row's value: "I hold a store of this name, with these settings"."""

    kind: StoreKind
    label: DataLabel
    merge: Annotated[str, msgspec.Meta(max_length=MAX_MERGE_NAME)]
    at: Annotated[int, msgspec.Meta(ge=0)]  # ms, the declarer's wall clock

    @property
    def settings(self) -> Settings:
        return Settings(self.kind, self.label, self.merge)


class Claim(msgspec.Struct, frozen=True):
    """A declaration that counts, with who made it and at what level."""

    name: str
    by: str  # the declarer's device id (its namespace in the catalog)
    level: str
    declaration: Declaration

    @property
    def settings(self) -> Settings:
        return self.declaration.settings


# The node's own stores: their settings are code, not the catalog's (a member cannot
# declare them otherwise). accord.apps* are the apps' checkpoints (accord.apps.runtime).
SYSTEM: Final[dict[str, Settings]] = {
    CATALOG: Settings("per-device", "S1"),
    "accord.apps": Settings("shared", "S1"),
    **{f"accord.apps.{label.lower()}": Settings("shared", label) for label in ("S2", "S3", "S4")},
}
SYSTEM_DECLARER: Final = ""  # the `by` of a system store's claim

_LABEL_RANK: Final = {label: i for i, label in enumerate(get_args(DataLabel))}
_decode: Final = msgspec.msgpack.Decoder(Declaration).decode
_encode: Final = msgspec.msgpack.Encoder().encode


def encode(declaration: Declaration) -> bytes:
    return _encode(declaration)


def decode(value: bytes) -> Declaration | None:
    """A catalog value, or None if it is not a declaration (a member's garbage)."""
    try:
        return _decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def rank(claim: Claim) -> tuple[int, int, int, str]:
    """Smaller wins: the highest label, the highest declarer level, the earliest, the
    smallest device id (so any two claims compare)."""
    return (
        -_LABEL_RANK[claim.declaration.label],
        -level_rank(claim.level),
        claim.declaration.at,
        claim.by,
    )


def claims(
    rows: Iterable[tuple[str, str, bytes]], levels: Mapping[str, str]
) -> dict[str, list[Claim]]:
    """The declarations that count, per store name, best first. ``rows`` are the
    catalog's (namespace, key, value); ``levels`` the current members' levels (a
    declarer not among them, or declaring a label its level may not hold, or a
    system store's name, or anything that does not decode, does not count)."""
    out: dict[str, list[Claim]] = {}
    for by, name, value in rows:
        level = levels.get(by)
        if level is None or name in SYSTEM or not STORE_NAME.match(name):
            continue
        declaration = decode(value)
        if declaration is None or not may_receive(level, declaration.label):
            continue
        out.setdefault(name, []).append(Claim(name, by, level, declaration))
    for found in out.values():
        found.sort(key=rank)
    return out


def resolve(name: str, found: Mapping[str, list[Claim]]) -> Claim | None:
    """The circle's store of ``name``: the system's, the winning claim, or None."""
    system = SYSTEM.get(name)
    if system is not None:
        declaration = Declaration(system.kind, system.label, system.merge, 0)
        return Claim(name, SYSTEM_DECLARER, "", declaration)
    named = found.get(name)
    return named[0] if named else None


# -- what people read ---------------------------------------------------------------


def not_held(name: str, circle: Claim, level: str, who: Callable[[str], str]) -> str:
    """The error when this device may not hold the circle's store of ``name``."""
    return (
        f"store {name!r} exists in this circle with label {circle.declaration.label}; "
        f"this device ({level}) may not hold it ({by(circle, who)})"
    )


def other_settings(name: str, circle: Claim, asked: Settings, who: Callable[[str], str]) -> str:
    """The error when a new store would have other settings than the circle's."""
    return (
        f"store {name!r} exists in this circle as {circle.settings.describe()} "
        f"({by(circle, who)}), not {asked.describe()}: write to it without "
        "--kind/--label/--merge (or with those), or use another name"
    )


def conflict(
    name: str, mine: Settings, circle: Claim, level: str, who: Callable[[str], str]
) -> str:
    """Why this device's store ``name`` is refused writes: it lost to the circle's."""
    why = (
        f"this device ({level}) may not hold it"
        if not may_receive(level, circle.declaration.label)
        else "they are different stores"
    )
    return (
        f"store {name!r} on this device ({mine.describe()}) conflicts with the circle's "
        f"store {name!r} ({circle.settings.describe()}; {by(circle, who)}): {why}. "
        "Writes to it are refused and it syncs with no member holding the circle's; "
        "what it holds stays readable here"
    )


def not_yet(name: str, circle: Claim, who: Callable[[str], str]) -> str:
    """The error when the circle's store of ``name`` has not reached this device."""
    return (
        f"store {name!r} exists in this circle ({circle.settings.describe()}; "
        f"{by(circle, who)}) but has not reached this device yet: a member that holds "
        "it syncs it here when online, and writing a key creates it here"
    )


def by(claim: Claim, who: Callable[[str], str]) -> str:
    """``declared by Nokia X60``."""
    if claim.by == SYSTEM_DECLARER:
        return "a store of the node's own"
    return f"declared by {who(claim.by)}"
