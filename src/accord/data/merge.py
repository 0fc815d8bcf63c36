"""How concurrent writes combine: last-writer-wins, or a user's merge (a CRDT join).

A merge store keeps, per key, a *state*; every write is a state too, and the store
keeps ``join(current, incoming)``. Replicas converge whatever order, duplication or
grouping writes arrive in only if ``join`` is a semilattice join:

* commutative  ``join(a, b) == join(b, a)``
* associative  ``join(join(a, b), c) == join(a, join(b, c))``
* idempotent   ``join(a, a) == a``

and deterministic and canonical (equal states are equal bytes, on every device and
every version of the code). ``validate`` must reject bytes that are not a state;
peers' states pass through it before they are joined.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Final, Protocol

import msgspec

from accord.clock import Hlc
from accord.wire.messages import DECODE_ERRORS, DeviceId


class Merge(Protocol):
    """A deterministic, state-based merge (see the module docstring for the laws)."""

    @property
    def name(self) -> str:
        """Stored with the store; reopening it with another merge is refused."""
        ...

    def join(self, a: bytes, b: bytes) -> bytes: ...

    def validate(self, state: bytes) -> None:
        """Raise ValueError if ``state`` is not a valid state of this merge."""
        ...


def lww_wins(hlc: Hlc, origin: str, old_hlc: Hlc, old_origin: str) -> bool:
    """True if the write (hlc, origin) beats the stored one: later HLC wins, equal
    HLCs are broken by device id, so every replica picks the same winner."""
    return (hlc, origin) > (old_hlc, old_origin)


_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_counter_decoder: Final = msgspec.msgpack.Decoder(dict[DeviceId, tuple[_Count, _Count]])
_set_decoder: Final = msgspec.msgpack.Decoder(list[bytes])
_encoder: Final = msgspec.msgpack.Encoder()


class CounterMerge:
    """A PN-counter: per device, the total it added and the total it subtracted.
    Join is the pointwise maximum, so each device's own totals only grow.

    Write with :meth:`add` (the contribution of one device) and read with :meth:`value`.
    """

    name: Final = "counter"

    def _decode(self, state: bytes) -> dict[str, tuple[int, int]]:
        try:
            return _counter_decoder.decode(state)
        except DECODE_ERRORS as exc:
            raise ValueError(f"not a counter state: {exc}") from exc

    def _encode(self, entries: dict[str, tuple[int, int]]) -> bytes:
        return _encoder.encode({k: list(entries[k]) for k in sorted(entries)})

    def validate(self, state: bytes) -> None:
        self._decode(state)

    def join(self, a: bytes, b: bytes) -> bytes:
        left, right = self._decode(a), self._decode(b)
        out = dict(left)
        for device, (p, n) in right.items():
            q, m = out.get(device, (0, 0))
            out[device] = (max(p, q), max(n, m))
        return self._encode(out)

    def add(self, state: bytes | None, device: str, amount: int) -> bytes:
        """The contribution that adds ``amount`` (may be negative) as ``device``,
        given the key's current ``state``."""
        p, n = self._decode(state).get(device, (0, 0)) if state else (0, 0)
        p, n = (p + amount, n) if amount >= 0 else (p, n - amount)
        return self._encode({device: (p, n)})

    def value(self, state: bytes | None) -> int:
        if not state:
            return 0
        return sum(p - n for p, n in self._decode(state).values())


class SetUnionMerge:
    """A grow-only set of byte strings; join is union. Items are never removed
    (model removal with two such sets, as the circle's member list does)."""

    name: Final = "set-union"

    def _decode(self, state: bytes) -> list[bytes]:
        try:
            items = _set_decoder.decode(state)
        except DECODE_ERRORS as exc:
            raise ValueError(f"not a set state: {exc}") from exc
        return items

    def validate(self, state: bytes) -> None:
        items = self._decode(state)
        if any(a >= b for a, b in itertools.pairwise(items)):
            raise ValueError("set state is not sorted and unique")

    def join(self, a: bytes, b: bytes) -> bytes:
        return self.of(*self._decode(a), *self._decode(b))

    def of(self, *items: bytes) -> bytes:
        """The state holding ``items`` (also the contribution that adds them)."""
        return _encoder.encode(sorted(set(items)))

    def items(self, state: bytes | None) -> frozenset[bytes]:
        return frozenset(self._decode(state)) if state else frozenset()


COUNTER: Final = CounterMerge()
SET_UNION: Final = SetUnionMerge()
