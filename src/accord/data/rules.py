"""The pure rules of a store: how an incoming write resolves against the stored row,
and what a peer's batch or row must obey before it is applied. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from accord.data.merge import Merge, lww_wins
from accord.data.model import Batch, Page, Row, check_wire_batch
from accord.data.sqlite_store import Session
from accord.errors import ForgedOrigin, MalformedSync, StoreError
from accord.trust.levels import DataLabel

StoreKind = Literal["shared", "per-device"]


class StoreConfig(msgspec.Struct, frozen=True):
    """What a store is, stored in its file: reopening with other settings is refused."""

    kind: StoreKind
    label: DataLabel
    merge: str = ""  # "" = last-writer-wins, else the Merge's name


def resolve(found: Row | None, incoming: Row, merge: Merge | None) -> Row | None:
    """The row to store once ``incoming`` meets ``found``; None if nothing changes."""
    if merge is None:
        if found is not None and not lww_wins(
            incoming.hlc, incoming.origin, found.hlc, found.origin
        ):
            return None
        return incoming
    assert incoming.value is not None
    try:
        if found is None:
            # join(x, x) canonicalises: equal states are equal bytes on every replica.
            return msgspec.structs.replace(
                incoming, value=merge.join(incoming.value, incoming.value)
            )
        assert found.value is not None
        state = merge.join(found.value, incoming.value)
    except Exception as exc:  # a user's merge may raise anything
        raise StoreError(f"merge {merge.name!r} failed on key {incoming.key!r}: {exc}") from exc
    dots = dict(found.dots)
    for origin, seq in incoming.dots.items():
        dots[origin] = max(dots.get(origin, 0), seq)
    if state == found.value and dots == found.dots:
        return None
    newest = max((found.hlc, found.origin), (incoming.hlc, incoming.origin))
    return Row(found.ns, found.key, state, newest[0], newest[1], dots)


def dominated(dots: Mapping[str, int], vv: Mapping[str, int]) -> bool:
    """True if every contribution to a row is already in ``vv`` (so, by the replica's
    invariant, already reflected in its state)."""
    return all(seq <= vv.get(origin, 0) for origin, seq in dots.items())


def stable_vector(
    vv: Mapping[str, int], acks: Mapping[str, Mapping[str, int]], participants: list[str]
) -> dict[str, int] | None:
    """Per origin, the seq every participant (and we) acknowledged: tombstones at or
    below it may go. None while collection must wait:

    * a participant has not acknowledged anything yet;
    * we lack writes a participant made before its last acknowledgement: those may
      be older than a tombstone it acknowledged, and would revive the key if they
      arrived after the tombstone had gone. (Writes made after a device saw a
      tombstone carry a later HLC, so they rightly win over it.)
    """
    if any(peer not in acks for peer in participants):
        return None
    if any(vv.get(peer, 0) < acks[peer].get(peer, 0) for peer in participants):
        return None
    return {
        origin: min([seq] + [acks[peer].get(origin, 0) for peer in participants])
        for origin, seq in vv.items()
    }


PageFit = Literal["ignore", "next", "restart"]


def page_fit(session: Session | None, page: Page) -> PageFit:
    """Where a received page belongs in our catch-up from its sender: the next page
    of the session, the first page in a new numbering of the sender's rows (its
    file was replaced), or nowhere (unasked, stale, duplicated, out of order: the
    next pull resumes from our cursor)."""
    if session is None or page.session != session.session:
        return "ignore"
    if page.epoch != session.epoch:
        return "restart" if page.after == 0 else "ignore"
    return "next" if page.after == session.cursor else "ignore"


def check_batch(merge: Merge | None, batch: Batch, sender: str) -> None:
    """A pushed batch: the sender's own, well formed, valid states for a merge store."""
    if batch.origin != sender:
        raise ForgedOrigin(f"{sender} pushed a batch in the name of {batch.origin}")
    check_wire_batch(batch)
    if merge is not None:
        for op in batch.ops:
            _check_state(merge, op.key, op.value)


def check_row(kind: StoreKind, merge: Merge | None, row: Row) -> None:
    """A catch-up row: namespace and dots that fit the store's kind, a valid state."""
    if row.origin not in row.dots:
        raise MalformedSync(f"row {row.key!r}: origin {row.origin} is not among its dots")
    if kind == "shared":
        if row.ns != "":
            raise MalformedSync(f"row {row.key!r} has a device namespace in a shared store")
    elif row.ns == "" or any(origin != row.ns for origin in row.dots):
        raise ForgedOrigin(f"row {row.key!r} of namespace {row.ns!r} written by another device")
    if merge is None:
        if len(row.dots) != 1:
            raise MalformedSync(f"last-writer-wins row {row.key!r} must have exactly one dot")
    else:
        _check_state(merge, row.key, row.value)


def _check_state(merge: Merge, key: str, value: bytes | None) -> None:
    if value is None:
        raise MalformedSync(f"key {key!r}: a merge store has no deletes")
    try:
        merge.validate(value)
    except Exception as exc:  # a user's validate may raise anything; the peer is at fault
        raise MalformedSync(f"key {key!r}: not a valid {merge.name} state: {exc}") from exc
