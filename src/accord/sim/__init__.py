"""Simulated households: several devices, each a real node process on 127.0.0.1.

``DEFAULT_DEVICES`` is here, import-light, for the ``accord sim`` option default; the
rest is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

DEFAULT_DEVICES = ("nokia-x60", "tablet", "laptop", "tv", "midea-fridge")

__all__ = ["DEFAULT_DEVICES", "Household", "SimDevice"]


def __getattr__(name: str) -> Any:
    if name in ("Household", "SimDevice"):
        from accord.sim import household

        return getattr(household, name)
    raise AttributeError(f"module 'accord.sim' has no attribute {name!r}")


if TYPE_CHECKING:
    from accord.sim.household import Household, SimDevice
