"""Shared pieces of the adversarial suite (issue 12): a household of real node
processes in which some devices run the hostile member (``tests/hostile_node.py``),
a client that drives it, and a raw Zenoh stranger (no Accord code at all).

The victims are plain ``accord up`` processes, driven only through the CLI and their
control sockets, as a person or a script would drive them.
"""

from __future__ import annotations

import base64
import contextlib
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import zenoh

from accord.bus.settings import BusSettings, zenoh_config
from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME, init_home
from accord.errors import AccordError
from accord.rpc.messages import RpcRequest
from accord.sim.household import Household, SimDevice, die_with_parent
from tests.helpers import NoAnswer, accord, device, online_ids, supervised, wait_for

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

REPO = Path(__file__).resolve().parent.parent
SETTINGS = ["anti_entropy_ms=1000"]  # sync summaries every second: repairs come quickly
STOP_TIMEOUT_S = 10.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class AdversaryHousehold(Household):
    """A sim household whose devices of the ``hostile`` profiles run
    ``tests.hostile_node`` instead of ``accord up`` (same Node, same options, paired
    the same way, plus the ``hostile_*`` control methods)."""

    def __init__(
        self,
        profiles: list[str],
        folder: Path,
        *,
        hostile: tuple[str, ...] = (),
        settings: list[str] | None = None,
    ) -> None:
        super().__init__(profiles, folder, settings=settings)
        self.hostile_profiles = set(hostile)

    def _spawn(self, dev: SimDevice, connect: list[str]) -> None:
        if dev.profile not in self.hostile_profiles:
            super()._spawn(dev, connect)
            return
        cmd = [self.python, "-m", "tests.hostile_node", "--home", str(dev.home)]
        cmd += ["--no-multicast", "--listen", dev.endpoint]
        for ep in connect:
            cmd += ["--connect", ep]
        for s in self.settings:
            cmd += ["--set", s]
        with open(dev.home / "node.log", "ab") as log:
            dev.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )


def adversary_household(
    profiles: list[str],
    prefix: str,
    shared: SharedProcesses,
    hostile: tuple[str, ...] = (),
) -> Iterator[AdversaryHousehold]:
    """A started household, every device paired into the first one's circle, seeing
    every other online and listing every other as a member; stopped after (its folder,
    with each node's log, is kept).

    For module-scoped fixtures: its nodes are registered with ``shared`` (the
    ``shared_processes`` fixture), so the per-test leak check leaves them alone at
    whatever pids restarts give them; stopping it checks that every process it started
    is gone."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # short: Unix socket paths
    house = AdversaryHousehold(profiles, folder / "h", hostile=hostile, settings=SETTINGS)
    with supervised(house, shared):
        house.start()
        settle(house)
        yield house


def settle(house: Household, timeout: float = 20.0) -> None:
    """Wait until every running member (of the first device's circle: one revoked by a
    test may still run) sees every other online and lists it as a member."""
    host = house.devices[0]
    revoked = set(trust_list(host)["revoked"]) if host.running else set()
    running = [d for d in house.devices if d.running and d.device_id not in revoked]
    everyone = {d.device_id for d in running}
    for dev in running:
        wait_for(partial(sees_all, dev, everyone), timeout, f"{dev.name} to see every member")
    for dev in running:
        wait_for(partial(lists_all, dev, everyone), timeout, f"{dev.name} to list every member")


def sees_all(observer: SimDevice, device_ids: set[str]) -> bool:
    """Does ``observer`` see every one of ``device_ids`` online?"""
    return device_ids <= online_ids(observer.home)


def revive(house: Household) -> None:
    """Start again any device an earlier test left stopped, and wait until all is settled."""
    for dev in house.devices:
        if not dev.running:
            house.restart(dev)
    settle(house)


def client(dev: SimDevice, timeout: float = 10.0) -> ControlClient:
    return ControlClient(dev.home / "run" / SOCKET_NAME, timeout=timeout)


def trust_list(dev: SimDevice) -> dict[str, Any]:
    try:
        result: dict[str, Any] = client(dev, timeout=3.0).call("trust_list")
    except AccordError as exc:
        raise NoAnswer(f"{dev.name} did not answer: {exc}") from exc
    return result


def member_ids(dev: SimDevice) -> set[str]:
    return {m["device_id"] for m in trust_list(dev)["members"]}


def lists_all(observer: SimDevice, device_ids: set[str]) -> bool:
    """Does ``observer`` list every one of ``device_ids`` as a member?"""
    return device_ids <= member_ids(observer)


def level_is(observer: SimDevice, device_id: str, level: str) -> bool:
    return level_seen(observer, device_id) == level


def revoked_on(observer: SimDevice, device_id: str) -> bool:
    return device_id in trust_list(observer)["revoked"]


def kv_text(dev: SimDevice, store: str, key: str) -> str | None:
    """A key's value as text on ``dev`` (None: no such store or key there, yet)."""
    try:
        result = client(dev).call("kv_get", store=store, key=key)
    except AccordError:
        return None
    text = result.get("text") if result.get("found") else None
    return None if text is None else str(text)


def kv_is(dev: SimDevice, store: str, key: str, value: str) -> bool:
    return kv_text(dev, store, key) == value


def freezer(fridge: SimDevice) -> float:
    """The freezer's setpoint, as the fridge itself reads it."""
    rows = client(fridge).call("call", device=fridge.device_id, target="thermostat.setpoints")
    return float(next(r["setpoint_c"] for r in rows if r["cabinet"] == "freezer"))


def set_freezer(caller: SimDevice, fridge: SimDevice, celsius: float) -> float:
    """``caller`` sets the freezer with the ordinary CLI; the setpoint the fridge took."""
    args = msgspec.json.encode({"cabinet": "freezer", "celsius": celsius}).decode()
    home = ("--home", str(caller.home), "--json")
    proc = accord("call", fridge.device_id, "thermostat.set", args, *home)
    assert proc.returncode == 0, proc.stderr
    return float(msgspec.json.decode(proc.stdout)["setpoint_c"])


def level_seen(observer: SimDevice, device_id: str) -> str | None:
    """The security level ``observer`` holds for member ``device_id`` (None: no member)."""
    for m in trust_list(observer)["members"]:
        if m["device_id"] == device_id:
            return str(m["security_level"])
    return None


def stop(dev: SimDevice) -> None:
    """Stop one device's node (SIGTERM, as ``accord down`` ends it)."""
    assert dev.proc is not None
    dev.proc.send_signal(signal.SIGTERM)
    dev.proc.wait(STOP_TIMEOUT_S)


def restart(house: Household, dev: SimDevice) -> None:
    """Stop ``dev`` and start it again on the same home; wait until all is settled."""
    stop(dev)
    house.restart(dev)
    settle(house)


# -- the hostile member ------------------------------------------------------------------


class HostileMember:
    """Drives a hostile member process through its ``hostile_*`` control methods."""

    def __init__(self, dev: SimDevice) -> None:
        self.dev = dev

    @property
    def device_id(self) -> str:
        return self.dev.device_id

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> Any:
        return client(self.dev, timeout).call(f"hostile_{method}", **params)

    def put(self, key: str, payload: bytes, times: int = 1) -> None:
        self.call("put", key=key, payload_b64=b64(payload), times=times)

    def get(self, key: str, payload: bytes, timeout: float = 2.0) -> list[bytes]:
        result = self.call("get", key=key, payload_b64=b64(payload), timeout=timeout)
        return [unb64(p) for p in result["replies"]]

    def seal(self, key: str, plaintext: bytes, *, send: str = "", **header: Any) -> list[bytes]:
        """Seal with any header (see ``Hostile.seal``) and send it; the replies."""
        result = self.call("seal", key=key, plaintext_b64=b64(plaintext), send=send, **header)
        return [unb64(p) for p in result["replies"]]

    def channel_get(self, peer: str, key: str, plaintext: bytes) -> list[bytes]:
        """A query sealed on this member's own channel with ``peer``: what ``peer``
        answered, opened."""
        result = self.call("channel", peer=peer, key=key, plaintext_b64=b64(plaintext))
        return [unb64(p) for p in result["plain_b64"]]

    def channel_put(self, peer: str, key: str, plaintext: bytes) -> None:
        self.call("channel", peer=peer, key=key, plaintext_b64=b64(plaintext), send="put")

    def capture(self, key: str) -> None:
        self.call("capture", key=key)

    def stop_capture(self, key: str) -> None:
        self.call("capture", key=key, stop=True)

    def captured(self, key: str) -> list[bytes]:
        return [unb64(p) for p in self.call("captured", key=key)["payloads_b64"]]

    def data_log(self, store: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.call("data_log", store=store)["messages"]
        return messages


def live_hostile(house: Household, profile: str) -> HostileMember:
    """The hostile member of ``profile``, running and a member of the first device's
    circle. One revoked by an earlier test comes back as a compromised device would:
    under a new identity, paired again with a PIN."""
    dev = device(house, profile)
    host = house.devices[0]
    if dev.running and dev.device_id in member_ids(host):
        return HostileMember(dev)
    if dev.running:
        stop(dev)
    home = init_home(dev.home, profile_name=dev.profile, force=True)
    dev.name, dev.device_id = home.name, home.device_id
    house.restart(dev)
    house._pair(dev, host)
    settle(house)
    return HostileMember(dev)


def rpc_request(params: Any, timeout_ms: int = 2000) -> bytes:
    """The plaintext of an RPC request, as Accord's client seals it."""
    raw = msgspec.Raw(msgspec.msgpack.encode(params))
    return msgspec.msgpack.encode(RpcRequest(1, raw, timeout_ms))


# -- the stranger --------------------------------------------------------------------------


class Captured:
    """What a stranger captured on a key, added from Zenoh's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payloads: deque[bytes] = deque(maxlen=10_000)
        self.stops: list[Callable[[], None]] = []

    def add(self, payload: bytes) -> None:
        with self._lock:
            self._payloads.append(payload)

    def payloads(self) -> list[bytes]:
        """Everything captured so far, oldest first."""
        with self._lock:
            return list(self._payloads)

    def stop(self) -> None:
        """Capture no more."""
        for undeclare in self.stops:
            with contextlib.suppress(zenoh.ZError):
                undeclare()
        self.stops = []


class Stranger:
    """An unpaired device: a raw Zenoh session (no Accord code), connected to the
    household's endpoints. It can capture queries and puts on any key, replay them,
    put anything anywhere and declare liveliness tokens."""

    def __init__(self, endpoints: list[str]) -> None:
        conf = zenoh_config(BusSettings(connect=tuple(endpoints), multicast=False))
        self.session = zenoh.open(conf)
        self._entities: list[Any] = []  # held, or Zenoh would undeclare them

    def __enter__(self) -> Stranger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(zenoh.ZError):
            self.session.close()  # type: ignore[no-untyped-call]

    def capture(self, key: str) -> Captured:
        """Keep the payload of every query and put on ``key`` (a key expression). The
        queries are never answered: the real callee still answers its caller."""
        kept = Captured()

        def on_query(query: zenoh.Query) -> None:
            if query.payload is not None:
                kept.add(query.payload.to_bytes())
            query.drop()  # type: ignore[no-untyped-call]

        def on_sample(sample: zenoh.Sample) -> None:
            kept.add(sample.payload.to_bytes())

        queryable = self.session.declare_queryable(key, on_query)
        subscriber = self.session.declare_subscriber(key, on_sample)
        kept.stops = [queryable.undeclare, subscriber.undeclare]
        return kept

    def query(self, key: str, payload: bytes, timeout: float = 2.0) -> list[bytes]:
        """Every reply to one query (unconsolidated)."""
        replies = self.session.get(
            key, payload=payload, timeout=timeout, consolidation=zenoh.ConsolidationMode.NONE
        )
        return [r.ok.payload.to_bytes() for r in replies if r.ok is not None]

    def put(self, key: str, payload: bytes) -> None:
        self.session.put(key, payload)

    def token(self, key: str) -> None:
        self._entities.append(self.session.liveliness().declare_token(key))

    def answer(self, key: str, payload_for: Any) -> None:
        """Answer queries on ``key`` with ``payload_for(query key)`` (None: no answer)."""

        def on_query(query: zenoh.Query) -> None:
            payload = payload_for(str(query.key_expr))
            if payload is not None:
                query.reply(query.key_expr, payload)
            query.drop()  # type: ignore[no-untyped-call]

        self._entities.append(self.session.declare_queryable(key, on_query))


def devices_json(dev: SimDevice) -> list[dict[str, Any]]:
    """``accord devices --json`` on ``dev``."""
    proc = accord("devices", "--home", str(dev.home), "--json")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = msgspec.json.decode(proc.stdout)
    return rows
