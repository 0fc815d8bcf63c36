"""The rules' errors: a bad rule file (with its line and field), a refused action."""

from __future__ import annotations

from accord.errors import AccordError


class RuleError(AccordError):
    """Something about a rule went wrong."""


class RuleFileError(RuleError):
    """A rule file does not parse or breaks a rule; says where (``file:line: field``)."""

    def __init__(self, message: str, *, file: str = "", line: int = 0, field: str = "") -> None:
        where = f"{file or 'rule'}:{line}" if line else (file or "rule")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")
        self.file = file
        self.line = line
        self.field = field
        self.reason = message


class UnknownRule(RuleError):
    """No rule of that name in the circle."""


class ActionRefused(RuleError):
    """A member refused to run a rule's action (forged, stale, or beyond its author)."""
