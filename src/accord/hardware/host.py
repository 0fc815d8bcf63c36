"""Host drivers: real readings from the machine the node runs on, where it has them."""

from __future__ import annotations

import psutil

from accord.errors import HardwareError
from accord.hardware.messages import BatteryStatus
from accord.profile import Profile


class HostBattery:
    """The host's battery through psutil (laptops); a host without one says so."""

    driver = "host"

    def __init__(self, profile: Profile) -> None:
        battery = profile.hardware.battery
        self._capacity = battery.capacity_mah if battery else 0

    @staticmethod
    def available() -> bool:
        try:
            return psutil.sensors_battery() is not None
        except (AttributeError, OSError):
            return False

    def status(self) -> BatteryStatus:
        try:
            reading = psutil.sensors_battery()
        except (AttributeError, OSError) as exc:
            raise HardwareError(f"cannot read the host battery: {exc}") from None
        if reading is None:
            raise HardwareError("this host reports no battery")
        return BatteryStatus(
            round(float(reading.percent), 1), bool(reading.power_plugged), self._capacity, "host"
        )


def host_load() -> dict[str, float]:
    """CPU and memory use of the host, for device.info and placement."""
    return {
        "cpu_pct": float(psutil.cpu_percent(interval=None)),
        "memory_pct": float(psutil.virtual_memory().percent),
    }
