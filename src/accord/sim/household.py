"""Start a household of real node processes on loopback, watch it, and stop it cleanly."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME, init_home, open_home
from accord.errors import AccordError, SimError
from accord.sim import DEFAULT_DEVICES

__all__ = ["DEFAULT_DEVICES", "Household", "SimDevice", "die_with_parent", "free_port"]

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_LIBC: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, never in a forked child
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when its parent dies, so a killed sim
    or benchmark leaves no orphans (Linux; elsewhere it does nothing)."""

    def arm() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig))

    return arm


@dataclass
class SimDevice:
    profile: str
    home: Path
    port: int
    name: str = ""
    device_id: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp/127.0.0.1:{self.port}"

    @property
    def client(self) -> ControlClient:
        return ControlClient(self.home / "run" / SOCKET_NAME, timeout=2.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Household:
    """A set of device homes under one folder, each run as ``accord up`` in a child."""

    def __init__(
        self,
        profiles: list[str],
        folder: Path,
        *,
        settings: list[str] | None = None,
        python: str = sys.executable,
        pair: bool = True,
        relay: str | None = None,
    ) -> None:
        if not profiles:
            raise SimError("a household needs at least one device")
        self.folder = folder
        self.python = python
        self.settings = settings or []
        self.pair = pair
        self.relay = relay  # every node a client of this relay (accord up --relay)
        self.relay_proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()  # set it (e.g. from a signal handler) to abort start
        self.devices: list[SimDevice] = []
        counts: dict[str, int] = {}
        for profile in profiles:
            counts[profile] = counts.get(profile, 0) + 1
            suffix = f"-{counts[profile]}" if counts[profile] > 1 else ""
            self.devices.append(SimDevice(profile, folder / f"{profile}{suffix}", 0))

    def prepare(self) -> None:
        """Create (or reuse) each device's home."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for dev in self.devices:
            try:
                home = open_home(dev.home)
            except AccordError:
                home = init_home(dev.home, profile_name=dev.profile, force=True)
            dev.name, dev.device_id = home.name, home.device_id

    def start(self, on_progress: Any = None) -> None:
        """Start every node, each connecting to those already up, wait until ready, and
        (unless ``pair=False``) pair each into the first device's circle with a PIN."""
        self.prepare()
        for i, dev in enumerate(self.devices):
            if self.stopping.is_set():
                return
            dev.port = free_port()
            self._spawn(dev, [d.endpoint for d in self.devices[:i]])
            self._wait_ready(dev)
            if self.pair and i > 0 and not self.stopping.is_set():
                self.pair_into(dev, self.devices[0])
            if on_progress is not None:
                on_progress(dev)

    def pair_into(self, dev: SimDevice, host: SimDevice) -> None:
        """Pair ``dev`` into ``host``'s circle (``host`` may be of another household,
        e.g. at another site behind a relay), as a person would with the PIN."""
        self._pair(dev, host)

    def _pair(self, dev: SimDevice, host: SimDevice) -> None:
        members = host.client.call("trust_list")["members"]
        if any(m["device_id"] == dev.device_id for m in members):
            return  # a reused home that is already a member
        deadline = time.monotonic() + READY_TIMEOUT
        while not any(
            r["device_id"] == host.device_id and r["online"] for r in dev.client.call("devices")
        ):
            if time.monotonic() > deadline:
                raise SimError(f"{dev.name} never saw {host.name}")
            if self.stopping.wait(0.05):
                return
        pin = host.client.call("pair_window", timeout=30)["pin"]
        ControlClient(dev.home / "run" / SOCKET_NAME, timeout=15.0).call(
            "pair_join", device=host.device_id, pin=pin
        )

    def _spawn(self, dev: SimDevice, connect: list[str]) -> None:
        cmd = [self.python, "-m", "accord", "up", "--home", str(dev.home), "--no-multicast"]
        if self.relay is not None:
            cmd += ["--relay", self.relay]  # listens nowhere: the relay is its one link
        else:
            cmd += ["--listen", dev.endpoint]
            for ep in connect:
                cmd += ["--connect", ep]
        for s in self.settings:
            cmd += ["--set", s]
        with open(dev.home / "node.log", "ab") as log:  # the child keeps its own copy
            dev.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the sim only; it stops the children
                preexec_fn=die_with_parent(),
            )

    def _wait_ready(self, dev: SimDevice) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not dev.running:
                raise SimError(f"{dev.profile} exited at start; see {dev.home / 'node.log'}")
            try:
                dev.client.call("status")
            except AccordError:
                if self.stopping.wait(0.05):
                    return
                continue
            return
        raise SimError(f"{dev.profile} was not ready within {READY_TIMEOUT:g} s")

    def start_relay(self) -> str:
        """Run ``accord relay`` on a free loopback port as a child that the household
        stops with its nodes; every node started after this connects through it."""
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "relay.log", "ab") as log:
            self.relay_proc = subprocess.Popen(
                [self.python, "-m", "accord", "relay", "--listen", endpoint],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        host, port = endpoint.removeprefix("tcp/").rsplit(":", 1)
        deadline = time.monotonic() + READY_TIMEOUT
        while not _accepts(host, int(port)):
            if self.relay_proc.poll() is not None:
                raise SimError(f"the relay exited at start; see {self.folder / 'relay.log'}")
            if time.monotonic() > deadline:
                raise SimError(f"the relay was not listening within {READY_TIMEOUT:g} s")
            time.sleep(0.02)
        self.relay = endpoint
        return endpoint

    def restart(self, dev: SimDevice) -> None:
        """Start a stopped device again, connecting to every other running one."""
        others = [d.endpoint for d in self.devices if d is not dev and d.running]
        self._spawn(dev, others)
        self._wait_ready(dev)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every child, then SIGKILL those still there after ``timeout``."""
        for dev in self.devices:
            if dev.running:
                assert dev.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    dev.proc.send_signal(signal.SIGCONT)  # a frozen child must hear SIGTERM
                    dev.proc.terminate()
        deadline = time.monotonic() + timeout
        for dev in self.devices:
            if dev.proc is None:
                continue
            try:
                dev.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(dev.proc.pid, signal.SIGKILL)
                dev.proc.wait()
        if self.relay_proc is not None:  # last: the nodes leave cleanly through it
            self.relay_proc.terminate()
            try:
                self.relay_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.relay_proc.kill()
                self.relay_proc.wait()

    def snapshot(self) -> list[dict[str, Any]]:
        """Each device's process state and what its node sees."""
        views: dict[str, list[dict[str, Any]]] = {}
        circles: dict[str, int] = {}
        for dev in self.devices:
            if dev.running:
                with contextlib.suppress(AccordError):
                    views[dev.device_id] = dev.client.call("devices")
                    circles[dev.device_id] = dev.client.call("status")["circle_members"]
        rows = []
        for dev in self.devices:
            sees = views.get(dev.device_id)
            seen_by = sum(
                1
                for viewer, recs in views.items()
                if viewer != dev.device_id
                and any(r["device_id"] == dev.device_id and r["online"] for r in recs)
            )
            rows.append(
                {
                    "profile": dev.profile,
                    "name": dev.name,
                    "device_id": dev.device_id,
                    "pid": dev.proc.pid if dev.proc else None,
                    "running": dev.running,
                    "endpoint": dev.endpoint,
                    "sees_online": None if sees is None else sum(r["online"] for r in sees),
                    "seen_by": seen_by,
                    "viewers": sum(1 for viewer in views if viewer != dev.device_id),
                    "circle_members": circles.get(dev.device_id),
                    "summary": next(
                        (r["summary"] for r in sees or [] if r["device_id"] == dev.device_id), ""
                    ),
                }
            )
        return rows
