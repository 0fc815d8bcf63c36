"""Errors of the apps feature, one family under :class:`accord.errors.AccordError`.

They split by who is at fault: the developer (:class:`ManifestError`), the bundle's
bytes or its signer (:class:`BundleError` and kin), the circle's devices
(:class:`RequirementsNotMet`, :class:`NoPlacement`).
"""

from __future__ import annotations

from collections.abc import Sequence

from accord.errors import AccordError


class AppError(AccordError):
    """Root of every error the apps feature raises on purpose."""


class ManifestError(AppError):
    """An app manifest is missing, is not valid TOML, or breaks the schema."""


class BundleError(AppError):
    """An app bundle cannot be built, decoded or extracted (too big, unsafe paths...)."""


class TamperedBundle(BundleError):
    """The bundle's bytes, signature or manifest do not match what was signed."""


class UntrustedBundle(BundleError):
    """The bundle is signed by a device that is not a member of this circle."""


class RequirementsNotMet(AppError):
    """This device lacks a capability the app requires."""


class NoPlacement(AppError):
    """No device of the circle can run the app; ``reasons`` says why, device by device."""

    def __init__(self, message: str, reasons: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.reasons: tuple[tuple[str, str], ...] = tuple(reasons)
        """``(device_id, reason)`` pairs, e.g. ``("abc...", "lacks camera")``."""
