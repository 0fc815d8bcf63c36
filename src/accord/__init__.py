"""Accord: an open cross-device operating layer. The devices of a home become one
super device.

The public API is what ``__all__`` lists; everything else is internal.

Names are imported on first use (PEP 562), so ``import accord`` -- and with it every
``accord`` command -- starts without loading Zenoh, the node or the crypto stack.
``from accord import Node`` works as usual.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

# Each public name and the module it lives in.
_WHERE: dict[str, str] = {
    "AccordError": "accord.errors",
    "BusSettings": "accord.bus.settings",
    "CallTimeout": "accord.errors",
    "Clock": "accord.clock",
    "ControlError": "accord.errors",
    "DeviceDirectory": "accord.bus.directory",
    "DeviceRecord": "accord.bus.directory",
    "DeviceUnavailable": "accord.errors",
    "DirectoryEvent": "accord.bus.directory",
    "HardwareError": "accord.errors",
    "Home": "accord.device.home",
    "HomeError": "accord.errors",
    "ManualClock": "accord.clock",
    "Node": "accord.node",
    "NodeAlreadyRunning": "accord.errors",
    "NodeNotRunning": "accord.errors",
    "PayloadTooLarge": "accord.errors",
    "PermissionDenied": "accord.errors",
    "Profile": "accord.profile",
    "ProfileError": "accord.errors",
    "RemoteError": "accord.errors",
    "SimError": "accord.errors",
    "SuperDevice": "accord.superdevice.api",
    "SystemClock": "accord.clock",
    "TransportError": "accord.errors",
    "WireError": "accord.errors",
    "init_home": "accord.device.home",
    "load_builtin": "accord.profile",
    "load_profile": "accord.profile",
    "open_home": "accord.device.home",
    "parse_profile": "accord.profile",
}

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


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'accord' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if _typing.TYPE_CHECKING:
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
