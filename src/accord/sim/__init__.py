"""Simulated households: several devices, each a real node process on 127.0.0.1."""

from accord.sim.household import DEFAULT_DEVICES, Household, SimDevice

__all__ = ["DEFAULT_DEVICES", "Household", "SimDevice"]
