"""Peer-caused warnings, each logged once (like zeroconf's QuietLogger).

A peer can make a node warn as often as it sends a bad message; one line per kind
of fault is what an operator needs, the rest go to debug. The set of kinds seen is
bounded, so a hostile peer that varies its faults cannot grow a node's memory: past
the bound new kinds are still logged, just not remembered.
"""

from __future__ import annotations

import logging
from typing import Final

LIMIT: Final = 256


class QuietLog:
    def __init__(self, logger: logging.Logger, limit: int = LIMIT) -> None:
        self._log = logger
        self._limit = limit
        self._seen: set[str] = set()

    def warn(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg`` as a warning the first time ``key`` is seen, at debug after."""
        if key in self._seen:
            self._log.debug(msg, *args)
            return
        if len(self._seen) < self._limit:
            self._seen.add(key)
        self._log.warning(msg, *args)
