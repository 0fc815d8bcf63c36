"""How a user names a device: the one matcher behind every command that takes a
device (``accord call tv ...``, ``trust revoke``, ``pair join``, ``app run --on``,
``permissions allow``...).

Pure: it sees only what the caller passes (members, or the online directory), and
tries these rules in order, the first that matches anything deciding:

1. the exact name, ignoring case ("living-room tv");
2. the exact id;
3. a prefix of the name, ignoring case ("living");
4. the device type its profile declares ("tv", "refrigerator"), or a common word
   for it ("fridge", "television");
5. a prefix of the id of at least :data:`MIN_ID_PREFIX` characters.

A rule that matches more than one device raises :class:`AmbiguousDevice`, which
lists every candidate by name and short id; the matcher never guesses. A query of
one to three characters never selects a device by its id, so a stray
``accord trust revoke l`` cannot revoke one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from accord.errors import AccordError

MIN_ID_PREFIX = 4
"""The shortest id prefix that may select a device."""

SHORT_ID = 10
"""How many characters of an id name a device in messages (as ``accord trust list``)."""

TYPE_WORDS = {
    "fridge": "refrigerator",
    "television": "tv",
}
"""Everyday words for device types (the type as profiles declare it, in ``profile.py``)."""


class Named(Protocol):
    """Anything a user may name: a directory record or a circle member."""

    @property
    def device_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...


D = TypeVar("D", bound=Named)


class AmbiguousDevice(AccordError):
    """A device name matches several devices; ``candidates`` lists them as
    ``(name, device_id)`` pairs."""

    def __init__(self, query: str, candidates: Sequence[tuple[str, str]]) -> None:
        self.query = query
        self.candidates: tuple[tuple[str, str], ...] = tuple(candidates)
        listed = ", ".join(f"{name} ({device_id[:SHORT_ID]})" for name, device_id in candidates)
        super().__init__(
            f"{query!r} matches {len(candidates)} devices: {listed}; "
            "give more of the name, or an id"
        )


def _fold(text: str) -> str:
    return text.strip().casefold()


def _rules(query: str) -> list[Callable[[Named], bool]]:
    q = _fold(query)
    kind = TYPE_WORDS.get(q, q)
    rules: list[Callable[[Named], bool]] = [
        lambda d: _fold(d.name) == q,
        lambda d: d.device_id.casefold() == q,
        lambda d: _fold(d.name).startswith(q),
        lambda d: d.type.casefold() == kind,
    ]
    if len(q) >= MIN_ID_PREFIX:
        rules.append(lambda d: d.device_id.casefold().startswith(q))
    return rules


def match_device(query: str, devices: Iterable[D]) -> D | None:
    """The one device ``query`` names among ``devices``, or None if it names none.

    Raises :class:`AmbiguousDevice` if the first rule that matches (see the module
    docstring) matches several devices. An empty query names no device."""
    if not _fold(query):
        return None
    pool = list(devices)
    for rule in _rules(query):
        found = [d for d in pool if rule(d)]
        if len(found) == 1:
            return found[0]
        if found:
            found.sort(key=lambda d: (_fold(d.name), d.device_id))
            raise AmbiguousDevice(query.strip(), [(d.name, d.device_id) for d in found])
    return None
