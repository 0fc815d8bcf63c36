"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any


def machine(*dists: str) -> dict[str, Any]:
    """Platform, CPU, load and the versions of eclipse-zenoh, accord and ``dists``."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }
    for dist in ("eclipse-zenoh", "accord", *dists):
        key = "zenoh" if dist == "eclipse-zenoh" else dist
        try:
            info[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[key] = None
    return info
