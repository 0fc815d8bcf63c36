"""Errors of the continuity features, one family under :class:`AccordError`."""

from __future__ import annotations

from accord.errors import AccordError


class ContinuityError(AccordError):
    """Root of every error the continuity features raise on purpose."""


class TransferError(ContinuityError):
    """A file send was refused or broke off (no room, bad path, interrupted link)."""


class TransferRefused(TransferError):
    """The receiver will not take this offer (bad names, sizes or block lists)."""


class ClipboardError(ContinuityError):
    """A clipboard item cannot be copied, announced or pasted."""


class NotificationError(ContinuityError):
    """A notification cannot be posted, mirrored or dismissed."""


class SettingsError(ContinuityError):
    """A continuity setting has an unknown name or a value out of range."""
