"""Unpaired hostile devices against real victim processes (issue 12, the adversarial
suite).

The household: a phone (SL4, the pairing host), a tablet and a refrigerator, each a
plain ``accord up`` process driven by the CLI and its control socket. The stranger is
a raw Zenoh session in the test process (:class:`tests.adversary.Stranger`): no
Accord code, no keys, only what anyone on the network can do: capture queries and
puts on any key, replay them, put and answer anything, declare liveliness tokens.

Each test is one attack of issue 12 and says what it did before the defence.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from accord.bus import keys
from accord.bus.directory import MAX_STRANGERS
from accord.device.home import init_home
from accord.device.identity import Identity
from accord.rpc.messages import NO_CHANNEL
from accord.sim.household import SimDevice, die_with_parent, free_port
from accord.trust.pairing import PairRequest
from accord.trust.session import ID_LEN
from accord.wire.messages import PROTOCOL_VERSION, PublicAnnouncement, encode, sign_public
from tests.adversary import (
    AdversaryHousehold,
    Stranger,
    adversary_household,
    client,
    devices_json,
    freezer,
    kv_is,
    member_ids,
    restart,
    revive,
    set_freezer,
    settle,
)
from tests.helpers import accord, device, wait_for, wait_seen

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

FLOOD = 600


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[AdversaryHousehold]:
    yield from adversary_household(
        ["nokia-x60", "tablet", "midea-fridge"], "acc-advs-", shared_processes
    )


@pytest.fixture
def house(_household: AdversaryHousehold) -> AdversaryHousehold:
    """The module's household, whole: a device an earlier test stopped runs again."""
    revive(_household)
    return _household


def _endpoints(house: AdversaryHousehold) -> list[str]:
    return [d.endpoint for d in house.devices]


def _phone(house: AdversaryHousehold) -> SimDevice:
    return device(house, "nokia-x60")


# -- replay across restarts (issue 12 §6) -------------------------------------------------


def test_a_request_captured_and_replayed_after_the_fridge_restarts_does_nothing(
    house: AdversaryHousehold,
) -> None:
    """Before: a sealed thermostat.set captured on the wire and replayed after the
    fridge restarted was accepted (replay state lived only in memory). Now requests
    travel on channels that die with the callee's boot."""
    phone, fridge = _phone(house), device(house, "midea-fridge")
    key = keys.rpc_key(fridge.device_id, "thermostat", "set")
    with Stranger(_endpoints(house)) as stranger:
        captured = stranger.capture(key)
        set_freezer(phone, fridge, -23.5)
        frames = wait_for(captured.payloads, 5, "the stranger to capture the phone's request")
        captured.stop()
        assert freezer(fridge) == -23.5
        set_freezer(phone, fridge, -19.0)
        for frame in frames:  # replayed at once, in the same boot: a replay, refused
            stranger.query(key, frame)
        assert freezer(fridge) == -19.0

        restart(house, fridge)
        before = freezer(fridge)
        assert before != -23.5

        def replayed() -> bool:
            answers = [a for frame in frames for a in stranger.query(key, frame)]
            # The fridge answers (a stranger reaches it again after its restart), and
            # only with "no channel": the request did not run.
            assert all(a == NO_CHANNEL for a in answers), answers
            return bool(answers)

        wait_for(replayed, 15, "the fridge to answer the replayed request")
    assert freezer(fridge) == before
    set_freezer(phone, fridge, -20.5)  # the phone's own channel heals by itself
    assert freezer(fridge) == -20.5


# -- channels (issue 12 §6) -----------------------------------------------------------------


def test_data_channel_offers_replayed_all_along_do_not_break_kv_sync(
    house: AdversaryHousehold,
) -> None:
    """Before: replayed data-channel offers replaced the session in use, and kv sync
    between members broke silently until restart. The stranger captures every offer
    made while the tablet restarts (phone, tablet and fridge open new channels), then
    replays them continuously while phone and tablet write and call each other. The
    store is S2, so the SL1 fridge cannot carry the writes around a broken channel."""
    phone, tablet = _phone(house), device(house, "tablet")
    with Stranger(_endpoints(house)) as stranger:
        captured = stranger.capture(f"{keys.ROOT}/channel/*")
        restart(house, tablet)
        for writer, reader in ((phone, tablet), (tablet, phone)):
            client(writer).call(
                "kv_put", store="adv-offers", key="warm-up", value=writer.name, label="S2"
            )
            first = partial(kv_is, reader, "adv-offers", "warm-up", writer.name)
            wait_for(first, 10, f"a first write by {writer.name}")
        pair = {phone.device_id, tablet.device_id}

        def between_the_two() -> list[bytes]:
            return [o for o in captured.payloads() if {o[:ID_LEN].decode(), _target(o)} == pair]

        offers = wait_for(between_the_two, 10, "an offer between the phone and the tablet")
        captured.stop()  # (it would capture the replays too)
        stop = threading.Event()
        replays = 0

        def replay() -> None:
            nonlocal replays
            while not stop.is_set():
                for offer in offers:
                    stranger.query(keys.channel_key(_target(offer)), offer, timeout=1.0)
                    replays += 1

        replayer = threading.Thread(target=replay, daemon=True)
        replayer.start()
        try:
            wait_for(lambda: replays >= 2 * len(offers), 10, "the replays to start")
            for i in range(5):
                for writer, reader in ((phone, tablet), (tablet, phone)):
                    value = f"{writer.name} {i}"
                    client(writer).call("kv_put", store="adv-offers", key=writer.name, value=value)
                    arrived = partial(kv_is, reader, "adv-offers", writer.name, value)
                    wait_for(arrived, 10, f"{writer.name}'s write {i} to reach {reader.name}")
                info = client(phone).call("call", device=tablet.device_id, target="device.info")
                assert info["device_id"] == tablet.device_id
        finally:
            stop.set()
            replayer.join(10)
        assert replays >= 2 * len(offers)


def _target(offer: bytes) -> str:
    """Whom a channel offer is for: ``initiator id || target id || ...``."""
    return offer[ID_LEN : 2 * ID_LEN].decode(errors="replace")


# -- pairing (issue 12 §7) ------------------------------------------------------------------


def _garbage(stranger_id: str, joiner_id: str) -> list[bytes]:
    """Pairing requests that test no PIN guess: not MessagePack, the wrong shape, an
    unknown step, a hello whose PAKE message has the wrong length, aborts and confirms
    naming the real joiner with handshake ids it never got."""
    requests: list[Any] = [
        PairRequest(1, "hello", stranger_id, b"\x01" * 5),
        PairRequest(1, "hello", joiner_id, b""),
        PairRequest(1, "hello", joiner_id, os.urandom(100)),
        PairRequest(1, "abort", joiner_id, b"", os.urandom(16)),
        PairRequest(1, "confirm", joiner_id, os.urandom(64), os.urandom(16)),
        PairRequest(1, "abort", joiner_id, b""),
        {"v": 1, "step": "guess", "joiner_id": joiner_id, "data": b""},
        {"v": 1, "step": "hello", "joiner_id": "not an id", "data": b"\x00" * 33},
    ]
    return [b"", b"\xc1", os.urandom(200)] + [msgspec.msgpack.encode(r) for r in requests]


def _start_node(home: Path, port: int, connect: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "accord",
        "up",
        "--home",
        str(home),
        "--no-multicast",
        "--listen",
        f"tcp/127.0.0.1:{port}",
        "--connect",
        connect,
    ]
    with open(home / "node.log", "ab") as log:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent()
        )


def test_garbage_hellos_and_spoofed_aborts_do_not_close_a_pairing_window(
    house: AdversaryHousehold, short_tmp: Path
) -> None:
    """Before: garbage hellos counted toward the 5-attempt lockout and closed the
    owner's window, and a spoofed abort naming a joiner killed its real handshake.
    Here the stranger sends far more than 5 garbage requests into a window opened with
    ``accord pair open``, and keeps sending aborts and confirms in the joiner's name
    while it joins: the joiner still gets in with the PIN."""
    phone = _phone(house)
    newcomer = init_home(short_tmp / "newcomer", profile_name="laptop", name="Newcomer")
    node = _start_node(newcomer.path, free_port(), phone.endpoint)
    window = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accord",
            "pair",
            "open",
            "--home",
            str(phone.home),
            "--json",
            "--timeout",
            "90",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert window.stdout is not None
        opened = json.loads(window.stdout.readline())
        assert opened["event"] == "open", opened
        wait_seen(newcomer.path, phone.device_id, 15, "the newcomer to see the phone")
        pair_key = keys.pair_key(phone.device_id)
        with Stranger(_endpoints(house)) as stranger:
            garbage = _garbage(Identity.generate().device_id, newcomer.device_id)
            for payload in garbage * 3:  # each answered (with an error) before the next
                assert stranger.query(pair_key, payload), "the phone answers every request"
            stop = threading.Event()

            def spoof() -> None:
                while not stop.is_set():
                    for payload in garbage[-5:]:
                        stranger.query(pair_key, payload, timeout=1.0)

            spoofer = threading.Thread(target=spoof, daemon=True)
            spoofer.start()
            try:
                joined = accord(
                    "pair",
                    "join",
                    phone.device_id,
                    "--pin",
                    opened["pin"],
                    "--home",
                    str(newcomer.path),
                    "--json",
                )
            finally:
                stop.set()
                spoofer.join(10)
        assert joined.returncode == 0, joined.stderr
        assert json.loads(joined.stdout)["device_id"] == phone.device_id
        paired = json.loads(window.stdout.readline())
        assert (paired["event"], paired["device_id"]) == ("paired", newcomer.device_id)
        assert window.wait(10) == 0
        assert newcomer.device_id in member_ids(phone)
    finally:
        if window.poll() is None:
            window.terminate()
        window.wait(10)
        if window.stdout is not None:
            window.stdout.close()
        node.terminate()
        node.wait(10)
        if newcomer.device_id in member_ids(phone):  # leave the circle as it was
            revoked = accord("trust", "revoke", newcomer.device_id, "--home", str(phone.home))
            assert revoked.returncode == 0, revoked.stderr
        settle(house)


# -- presence (issue 12 §7) -----------------------------------------------------------------


def _announcement(identity: Identity, name: str, *, pairing: bool = False, seq: int = 1) -> bytes:
    ann = PublicAnnouncement(
        v=PROTOCOL_VERSION,
        device_id=identity.device_id,
        name=name,
        type="tv",
        public_key=identity.public_bytes,
        pairing=pairing,
        seq=seq,
    )
    return encode(sign_public(ann, identity.sign))


def _stored_ids(dev: SimDevice) -> set[str]:
    """The device ids in the node's directory database on disk (read beside it)."""
    db = sqlite3.connect(dev.home / "data" / "directory.sqlite3")
    try:
        return {d for (d,) in db.execute("SELECT device_id FROM devices")}
    finally:
        db.close()


def test_600_fake_devices_stay_within_the_directory_bound_and_off_the_disk(
    house: AdversaryHousehold,
) -> None:
    """Before: 600 fake announcements became 603 directory records, kept on disk
    forever. Now at most MAX_STRANGERS non-members are held, in memory only, and the
    members keep being served while the flood is worked through."""
    phone, tablet = _phone(house), device(house, "tablet")
    members = member_ids(tablet)
    flood = [Identity.generate() for _ in range(FLOOD)]
    answers = {i.device_id: _announcement(i, f"Fake {n}") for n, i in enumerate(flood)}
    fake = set(answers)

    def non_members(rows: list[dict[str, Any]]) -> int:
        return sum(1 for r in rows if r["device_id"] not in members)

    with Stranger(_endpoints(house)) as stranger:
        stranger.answer(f"{keys.ANNOUNCE_PREFIX}/*", lambda k: answers.get(k.rsplit("/", 1)[-1]))
        for identity in flood:
            stranger.token(keys.presence_key(identity.device_id))

        def full() -> bool:
            rows = devices_json(tablet)
            assert non_members(rows) <= MAX_STRANGERS  # at every look, not only at the end
            assert _stored_ids(tablet) <= members
            return non_members(rows) == MAX_STRANGERS

        wait_for(full, 60, f"the tablet's directory to hold {MAX_STRANGERS} strangers")
        # Members are served all along: a call, a sync, and the phone's real name.
        info = client(phone).call("call", device=tablet.device_id, target="device.info")
        assert info["device_id"] == tablet.device_id
        client(phone).call("kv_put", store="adv-flood", key="during", value="served")
        wait_for(partial(kv_is, tablet, "adv-flood", "during", "served"), 10, "the sync")
        rows = devices_json(tablet)
        assert non_members(rows) <= MAX_STRANGERS
        by_id = {r["device_id"]: r for r in rows}
        assert by_id[phone.device_id]["name"] == phone.name
        assert by_id[phone.device_id]["online"]
    wait_for(
        lambda: {r["device_id"] for r in devices_json(tablet) if r["online"]}.isdisjoint(fake),
        20,
        "the fake devices to go offline",
    )
    stored = _stored_ids(tablet)
    assert stored <= members
    assert stored.isdisjoint(fake)


def test_no_unsigned_or_forged_announcement_renames_the_phone(
    house: AdversaryHousehold,
) -> None:
    """Before: an unsigned announcement renamed "Phone" to "Fridge" on every device.
    Now announcements are signed by the device key, and a member's name comes only
    from its sealed details. The stranger publishes its forgeries, then a genuine
    change of a device of its own; once the observers show that change, they have
    handled the forgeries (one publisher, one subscriber, in order)."""
    phone = _phone(house)
    observers = [device(house, "tablet"), device(house, "midea-fridge")]
    with Stranger(_endpoints(house)) as stranger:
        [genuine] = stranger.query(keys.announce_key(phone.device_id), b"")
        real = msgspec.msgpack.decode(genuine, type=PublicAnnouncement)
        forger = Identity.generate()
        renamed = msgspec.structs.replace(real, name="Fridge", type="refrigerator")
        unsigned = msgspec.structs.replace(renamed, sig=b"", seq=real.seq + 1)
        forged = sign_public(msgspec.structs.replace(renamed, seq=real.seq + 2), forger.sign)
        stranger.answer(keys.announce_key(phone.device_id), lambda _k: encode(forged))
        own = Identity.generate()
        stranger.answer(keys.announce_key(own.device_id), lambda _k: _announcement(own, "Stranger"))
        stranger.token(keys.presence_key(own.device_id))
        for observer in observers:
            wait_seen(observer.home, own.device_id, 10, f"{observer.name} to see the stranger")
        for payload in (genuine, encode(unsigned), encode(forged)):  # a replay, then forgeries
            stranger.put(keys.announce_key(phone.device_id), payload)
        stranger.put(
            keys.announce_key(own.device_id), _announcement(own, "Stranger", pairing=True, seq=2)
        )

        def handled(observer: SimDevice) -> bool:
            row = next(r for r in devices_json(observer) if r["device_id"] == own.device_id)
            return bool(row["pairing"])

        for observer in observers:
            wait_for(partial(handled, observer), 10, f"{observer.name}: the stranger's flip")
            row = next(r for r in devices_json(observer) if r["device_id"] == phone.device_id)
            assert (row["name"], row["type"]) == (phone.name, "phone"), observer.name
