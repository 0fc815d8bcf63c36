"""Accord: an open cross-device operating layer. The devices of a home become one
super device.

The public API is what ``__all__`` lists; everything else is internal.
"""

from accord.bus.directory import DeviceDirectory, DeviceRecord, DirectoryEvent
from accord.bus.settings import BusSettings
from accord.clock import Clock, ManualClock, SystemClock
from accord.device.home import Home, init_home, open_home
from accord.errors import (
    AccordError,
    CallTimeout,
    ControlError,
    DeviceUnavailable,
    HardwareError,
    HomeError,
    NodeAlreadyRunning,
    NodeNotRunning,
    PayloadTooLarge,
    PermissionDenied,
    ProfileError,
    RemoteError,
    SimError,
    TransportError,
    WireError,
)
from accord.node import Node
from accord.profile import Profile, load_builtin, load_profile, parse_profile
from accord.superdevice.api import SuperDevice

__version__ = "0.1.0"

__all__ = [
    "AccordError",
    "BusSettings",
    "CallTimeout",
    "Clock",
    "ControlError",
    "DeviceDirectory",
    "DeviceRecord",
    "DeviceUnavailable",
    "DirectoryEvent",
    "HardwareError",
    "Home",
    "HomeError",
    "ManualClock",
    "Node",
    "NodeAlreadyRunning",
    "NodeNotRunning",
    "PayloadTooLarge",
    "PermissionDenied",
    "Profile",
    "ProfileError",
    "RemoteError",
    "SimError",
    "SuperDevice",
    "SystemClock",
    "TransportError",
    "WireError",
    "__version__",
    "init_home",
    "load_builtin",
    "load_profile",
    "open_home",
    "parse_profile",
]
