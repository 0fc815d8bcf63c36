"""Line numbers for a field of a TOML file, so errors can point at it.

``tomllib`` reports syntax errors with their line but forgets positions once a
file parses, and our checks run on the parsed values. This finds a field again in
the text: the table header (``[trigger]``, the n-th ``[[action]]``), then the
``key =`` line inside it, then keys of inline tables on or after that line. It is
a best effort that never fails: the nearest enclosing line it can find, else 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


def _key_at(line: str, key: str) -> bool:
    """Does ``key = ...`` start on this line, or appear in an inline table on it?"""
    return re.search(rf"(^|[{{,\s]){re.escape(key)}\s*=", line) is not None


def locate(source: str, path: Sequence[str | int]) -> int:
    """The 1-based line of ``path`` (e.g. ``("action", 1, "params", "text")``)."""
    lines = source.splitlines()
    start, end = 0, len(lines)
    rest = list(path)
    if rest and isinstance(rest[0], str):
        section = _section(lines, rest[0], rest[1] if len(rest) > 1 else None)
        if section is not None:
            start, end, used = section
            rest = rest[used:]
        else:
            end = _first_header(lines)
    found = start
    for part in rest:
        if isinstance(part, int):
            continue  # an item of an inline array: keep to the line of its key
        for i in range(found, end):
            if _key_at(lines[i], part):
                found = i
                break
    return found + 1


def _first_header(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if _HEADER.match(line):
            return i
    return len(lines)


def _section(lines: list[str], name: str, index: str | int | None) -> tuple[int, int, int] | None:
    """(first line, end, path parts used) of table ``name`` (the ``index``-th of an
    array of tables); None if the file has no such header."""
    seen = -1
    for i, line in enumerate(lines):
        match = _HEADER.match(line)
        if not match or match.group(2).strip("\"' ") != name:
            continue
        array = match.group(1) == "[["
        seen += 1
        if array and isinstance(index, int) and seen != index:
            continue
        end = next((j for j in range(i + 1, len(lines)) if _HEADER.match(lines[j])), len(lines))
        used = 2 if array and isinstance(index, int) else 1
        return i, end, used
    return None
