"""Two sites through one relay, as real node processes on 127.0.0.1: devices at "home"
and "away" (Zenoh clients that listen nowhere, so a relay is their only route) pair,
call and sync. The away devices use the shared relay directly; the home devices use a
relay of their own at home, linked to the shared one (routers route between each
other), so their traffic with each other stays at home. A snooper on the shared relay
sees only announcements, handshakes and sealed frames; while it is down the home
devices keep working together, and after it restarts every node comes back."""

from __future__ import annotations

import base64
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import zenoh

from accord.bus.relay import Relay, relay_config
from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME
from accord.errors import AccordError
from accord.sim.household import Household, SimDevice, free_port
from tests.helpers import supervised, wait_for, wait_sees_all

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

SECRET = "relay-must-not-read-this-7f3a"
# Keys whose payload is sealed end to end (docs/protocol.md, "Key-expression layout").
SEALED = ("details", "circle", "rekey", "rpc", "rpc-cancel", "rpc-credit", "data")
# Keys that are public by design: announcements, PIN and key-exchange handshakes
# (SPAKE2 and signed ephemeral keys: safe to observe), liveliness tokens.
PUBLIC = ("presence", "announce", "pair", "session", "channel")


class SnoopingRelay:
    """The relay's own config, with a subscriber and a queryable on all of Accord's
    keys declared on the relay session: what a curious relay operator records."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._session: zenoh.Session | None = None
        self._undo: list[zenoh.Subscriber[None] | zenoh.Queryable[None]] = []

    def open(self) -> None:
        self._session = zenoh.open(relay_config([self.endpoint]))
        # indirect=False: called on Zenoh's thread, no Python thread per entity.
        self._undo = [
            self._session.declare_subscriber(
                "accord/v1/**", zenoh.handlers.Callback(self._on_sample, indirect=False)
            ),
            self._session.declare_queryable(
                "accord/v1/**", zenoh.handlers.Callback(self._on_query, indirect=False)
            ),
        ]

    def _record(self, key: str, payload: bytes) -> None:
        with self._lock:
            self.seen.append((key, payload))

    def _on_sample(self, sample: zenoh.Sample) -> None:
        self._record(str(sample.key_expr), sample.payload.to_bytes())

    def _on_query(self, query: zenoh.Query) -> None:  # never replies: only listens
        payload = query.payload.to_bytes() if query.payload is not None else b""
        self._record(str(query.key_expr), payload)

    def close(self) -> None:
        for entity in self._undo:
            entity.undeclare()  # type: ignore[no-untyped-call]
        self._undo = []
        if self._session is not None:
            self._session.close()  # type: ignore[no-untyped-call]
            self._session = None

    def recorded(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.seen)


@pytest.fixture(scope="module")
def relay() -> Iterator[SnoopingRelay]:
    snooper = SnoopingRelay(f"tcp/127.0.0.1:{free_port()}")
    snooper.open()
    try:
        yield snooper
    finally:
        snooper.close()


@pytest.fixture(scope="module")
def home_relay(relay: SnoopingRelay) -> Iterator[Relay]:
    """The home's own relay (on the LAN in real life), linked to the shared one."""
    with Relay([f"tcp/127.0.0.1:{free_port()}"], connect=[relay.endpoint]) as running:
        yield running


@pytest.fixture(scope="module")
def sites(
    relay: SnoopingRelay, home_relay: Relay, shared_processes: SharedProcesses
) -> Iterator[tuple[Household, Household]]:
    folder = Path(tempfile.mkdtemp(prefix="acc-rly-"))  # short: Unix socket paths
    home = Household(["nokia-x60", "tablet"], folder / "home", relay=home_relay.listen[0])
    away = Household(["laptop", "tv"], folder / "away", relay=relay.endpoint, pair=False)
    with supervised(home, shared_processes):
        home.start()
        with supervised(away, shared_processes):
            away.start()
            for dev in away.devices:
                away.pair_into(dev, home.devices[0])
            everyone = {d.device_id for d in [*home.devices, *away.devices]}
            for dev in [*home.devices, *away.devices]:
                wait_sees_all(dev.home, everyone, timeout=15)
            yield home, away


def _client(dev: SimDevice, timeout: float = 10.0) -> ControlClient:
    return ControlClient(dev.home / "run" / SOCKET_NAME, timeout=timeout)


def _call_when_ready(caller: SimDevice, callee: SimDevice, text: str) -> dict[str, object]:
    def attempt() -> dict[str, object] | None:
        try:
            result: dict[str, object] = _client(caller).call(
                "call",
                device=callee.device_id,
                target="display.show",
                args={"text": text},
                timeout=3,
            )
        except AccordError:
            return None
        return result

    return wait_for(attempt, 20, f"{caller.name} to call {callee.name} through the relay")


def _value_on(dev: SimDevice, store: str, key: str) -> str | None:
    try:
        rows = _client(dev).call("kv_ls", store=store, values=True)["entries"]
    except AccordError:
        return None
    for row in rows:
        if row["key"] == key:
            return base64.b64decode(row["value_b64"]).decode()
    return None


def test_two_sites_pair_call_and_sync_through_the_relay(
    sites: tuple[Household, Household],
) -> None:
    _call_and_sync(*sites)


def _call_and_sync(home: Household, away: Household) -> None:
    """A call from home to away and a write from away to home, both carrying SECRET."""
    phone, tv, laptop = home.devices[0], away.devices[1], away.devices[0]
    members = _client(tv).call("status")["circle_members"]
    assert members == 4
    shown = _call_when_ready(phone, tv, f"{SECRET} call")
    assert shown["text"] == f"{SECRET} call"
    _client(laptop).call("kv_put", store="notes", key="todo", value=f"{SECRET} kv")
    for dev in home.devices:
        wait_for(
            lambda d=dev: _value_on(d, "notes", "todo") == f"{SECRET} kv",  # type: ignore[misc]
            10,
            f"the away laptop's write to reach {dev.name} at home",
        )


def test_the_relay_sees_only_sealed_frames_and_public_handshakes(
    relay: SnoopingRelay, sites: tuple[Household, Household]
) -> None:
    _call_and_sync(*sites)  # traffic worth snooping, whichever test ran before
    seen = relay.recorded()
    kinds = {key.split("/")[2] for key, _ in seen}
    assert {"rpc", "data", "announce", "pair"} <= kinds, kinds
    for key, payload in seen:
        assert SECRET.encode() not in payload, f"plaintext on {key}"
        kind = key.split("/")[2]
        assert kind in SEALED or kind in PUBLIC, f"unreviewed key {key}"
        if kind in SEALED:
            # A sealed frame (docs/protocol.md): version 1, kind pairwise (1) or
            # broadcast (2), a 34-byte header and a 16-byte tag at least.
            assert len(payload) >= 50, (key, len(payload))
            assert payload[0] == 1, key
            assert payload[1] in (1, 2), key


def test_nodes_come_back_after_the_relay_restarts(
    relay: SnoopingRelay, sites: tuple[Household, Household]
) -> None:
    home, away = sites
    phone, tablet, tv = home.devices[0], home.devices[1], away.devices[1]
    relay.close()
    wait_for(
        lambda: tv.device_id not in _online(phone),
        10,
        "the phone to see the tv gone with the relay",
    )
    # The home devices still reach each other, through their own relay.
    assert tablet.device_id in _online(phone)
    assert _call_when_ready(phone, tablet, "still home")["text"] == "still home"
    relay.open()  # same endpoint: the away nodes and the home relay redial it
    everyone = {d.device_id for d in [*home.devices, *away.devices]}
    for dev in [*home.devices, *away.devices]:
        wait_sees_all(dev.home, everyone, timeout=15)
    assert _call_when_ready(phone, tv, "back")["text"] == "back"
    _client(tv).call("kv_put", store="notes", key="after", value="restart")
    wait_for(lambda: _value_on(phone, "notes", "after") == "restart", 10, "sync after restart")


def _online(dev: SimDevice) -> set[str]:
    try:
        rows = _client(dev, 2.0).call("devices")
    except AccordError:
        return {"(no answer)"}  # never reads as "gone"
    return {r["device_id"] for r in rows if r["online"]}
