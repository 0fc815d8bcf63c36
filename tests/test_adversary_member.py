"""A compromised member against real victim processes (issue 12, the adversarial suite).

The household: a phone (SL4, the pairing host), a tablet (SL3) and a refrigerator
(SL1), each a plain ``accord up`` process, and a TV (SL2) that runs
``tests/hostile_node.py``: the same Node, paired with a PIN like any device, whose
code the test drives to misbehave. It holds what a compromised member holds (its own
identity key, the circle key, its pairwise channels) and uses it as an attacker
would. The victims are driven only through the CLI and their control sockets.

Each test is one attack of issue 12 and says what it did before the defence. The
household is shared by the module; a test that revokes the hostile member leaves it
to :func:`tests.adversary.live_hostile` to come back under a new identity.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from accord.bus import keys
from accord.data.model import DATA_VERSION, Pull
from accord.data.model import encode as encode_sync
from accord.data.service import Envelope
from accord.device.identity import raw_id
from accord.hardware.messages import SetpointParams
from accord.rpc.messages import NO_CHANNEL, RpcResult
from accord.sim.household import SimDevice
from accord.wire.seal import HEADER, MAX_COUNTER, Kind
from tests.adversary import (
    AdversaryHousehold,
    HostileMember,
    adversary_household,
    b64,
    client,
    freezer,
    kv_is,
    kv_text,
    level_is,
    level_seen,
    lists_all,
    live_hostile,
    restart,
    revive,
    revoked_on,
    rpc_request,
    set_freezer,
    trust_list,
)
from tests.helpers import accord, device, wait_for

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

HOSTILE = "tv"  # SL2: below the S3 data it will try to get


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[AdversaryHousehold]:
    yield from adversary_household(
        ["nokia-x60", "tablet", "midea-fridge", HOSTILE],
        "acc-advm-",
        shared_processes,
        hostile=(HOSTILE,),
    )


@pytest.fixture
def house(_household: AdversaryHousehold) -> AdversaryHousehold:
    """The module's household, whole: a device an earlier test stopped runs again."""
    revive(_household)
    return _household


@pytest.fixture
def hostile(house: AdversaryHousehold) -> HostileMember:
    return live_hostile(house, HOSTILE)


def _phone(house: AdversaryHousehold) -> SimDevice:
    return device(house, "nokia-x60")


def _tablet(house: AdversaryHousehold) -> SimDevice:
    return device(house, "tablet")


def _fridge(house: AdversaryHousehold) -> SimDevice:
    return device(house, "midea-fridge")


def _restrict_thermostat_to_the_phone(house: AdversaryHousehold) -> None:
    fridge, phone = _fridge(house), _phone(house)
    proc = accord(
        "permissions", "allow", "thermostat", "phone", "--home", str(fridge.home), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["services"]
    assert next(r for r in rows if r["service"] == "thermostat")["device_ids"] == [phone.device_id]


# -- sender authenticity (issue 12 §1) ----------------------------------------------------


def test_a_member_cannot_set_the_freezer_in_the_phones_name(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """Before: RPC was sealed under the shared circle key and the fridge believed the
    sender field, so the tablet set the freezer to -22 °C as "the phone", past
    ``accord permissions``. Now a request opens only on the caller's own channel."""
    phone, fridge = _phone(house), _fridge(house)
    _restrict_thermostat_to_the_phone(house)
    before = freezer(fridge)
    target = -22.0 if before != -22.0 else -23.0
    key = keys.rpc_key(fridge.device_id, "thermostat", "set")
    request = rpc_request(SetpointParams("freezer", target))

    # In its own name the request reaches the fridge, which refuses it by its allow-list.
    [answer] = hostile.channel_get(fridge.device_id, key, request)
    result = msgspec.msgpack.decode(answer, type=RpcResult)
    assert (result.ok, result.error_type) == (False, "PermissionDenied")

    # In the phone's name: under the circle key, as a pairwise frame under the circle
    # key with a made-up session, and under a made-up secret. The fridge runs none.
    forgeries: list[dict[str, Any]] = [
        {"kind": "broadcast", "root": "circle"},
        {"kind": "pairwise", "root": "circle", "epoch": 1234},
        {"kind": "pairwise", "root": "zero", "epoch": 1234},
    ]
    for header in forgeries:
        for counter in (1, 2**40):
            replies = hostile.seal(
                key,
                request,
                send="get",
                sender=phone.device_id,
                stream=7,
                counter=counter,
                **header,
            )
            # "no channel" (an empty answer, which runs nothing) or no answer at all
            assert all(r == NO_CHANNEL for r in replies), header
    assert freezer(fridge) == before

    # The phone itself may, and is not held back by any of it.
    assert set_freezer(phone, fridge, target) == target
    assert freezer(fridge) == target


def test_a_forged_frame_with_a_huge_counter_does_not_silence_the_phone(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """Before: one frame in the phone's name with counter 2^64-1 made every receiver
    drop the phone's real frames until it restarted. The hostile member captures the
    phone's real request to learn its channel's session and stream, then sends frames
    with that header and a huge counter (or a newer stream) to every key the fridge
    opens channel frames on: calls, cancels, credit, data."""
    phone, fridge = _phone(house), _fridge(house)
    pattern = keys.rpc_key(fridge.device_id, "*", "*")
    hostile.capture(pattern)
    try:
        client(phone).call("call", device=fridge.device_id, target="device.info")
        captured = wait_for(lambda: hostile.captured(pattern), 10, "a captured request")
    finally:
        hostile.stop_capture(pattern)
    _v, kind, sender, session, stream, _counter = HEADER.unpack_from(captured[-1])
    assert (kind, sender) == (Kind.PAIRWISE, raw_id(phone.device_id))
    junk = b"\x00" * 64
    forged = [
        HEADER.pack(1, kind, sender, session, stream, MAX_COUNTER) + junk,
        HEADER.pack(1, kind, sender, session, stream + 1000, 1) + junk,
        HEADER.pack(1, kind, sender, session, 2**32 - 1, MAX_COUNTER) + junk,
    ]
    queried = [
        keys.rpc_key(fridge.device_id, "device", "info"),
        keys.rpc_key(fridge.device_id, "thermostat", "set"),
    ]
    published = [
        keys.rpc_cancel_key(fridge.device_id),
        keys.rpc_credit_key(fridge.device_id),
        keys.data_key(fridge.device_id),
    ]
    for frame in forged:
        for key in queried:
            hostile.get(key, frame)
        for key in published:
            hostile.put(key, frame)
    # The same, sealed for real under the circle key (which any member can): how the
    # phone's calls travelled before channels, when this silenced it.
    for lane, counter in ((stream, MAX_COUNTER), (2**32 - 1, 1)):
        for key, how in [*((k, "get") for k in queried), *((k, "put") for k in published)]:
            hostile.seal(
                key,
                rpc_request(None),
                send=how,
                kind="broadcast",
                sender=phone.device_id,
                stream=lane,
                counter=counter,
            )
    # A query after the puts: the fridge has handled them (one link, in order).
    hostile.get(keys.rpc_key(fridge.device_id, "device", "info"), junk)

    info = client(phone).call("call", device=fridge.device_id, target="device.info")
    assert info["device_id"] == fridge.device_id
    target = -16.5 if freezer(fridge) != -16.5 else -17.5
    assert set_freezer(phone, fridge, target) == target
    client(phone).call("kv_put", store="adv-counter", key="after", value="still heard")
    wait_for(
        partial(kv_is, fridge, "adv-counter", "after", "still heard"),
        10,
        "the phone's write to reach the fridge",
    )


def test_a_forged_broadcast_stream_does_not_silence_the_phones_member_lists(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """The circle key lets any member seal a frame that opens as the phone's: with
    the highest stream number, it makes the phone's real broadcast frames look older.
    The phone then confirms the tablet at SL4 (a member list it publishes under the
    circle key): every member must still learn it."""
    phone, tablet, fridge = _phone(house), _tablet(house), _fridge(house)
    assert level_seen(phone, tablet.device_id) == "SL3"
    try:
        hostile.seal(
            keys.MEMBERS_KEY,
            b"\xc0",
            send="put",
            kind="broadcast",
            root="circle",
            sender=phone.device_id,
            stream=2**32 - 1,
            counter=1,
        )
        for observer in (tablet, fridge):  # a query after the put: it has been handled
            hostile.get(keys.details_key(observer.device_id), b"")
        proc = accord("trust", "set-level", "tablet", "SL4", "--home", str(phone.home), "--json")
        assert proc.returncode == 0, proc.stderr
        for observer in (tablet, fridge):
            learned = partial(level_is, observer, tablet.device_id, "SL4")
            wait_for(learned, 5, f"{observer.name} to learn the tablet's new level")
    finally:  # whatever the receivers took from the forgery dies with their boot
        for dev in (tablet, fridge, hostile.dev):
            restart(house, dev)


# -- member records (issue 12 §3) ---------------------------------------------------------


def test_a_member_that_re_signs_itself_sl5_keeps_its_level_and_gets_no_s3_data(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """Before: the member list merge kept whichever record any active member signed,
    so the hostile member re-signed its own record as SL5 and then received S3 data.
    Now a record is taken only from a voucher at its level or higher, never itself."""
    phone, tablet, fridge = _phone(house), _tablet(house), _fridge(house)
    forged = hostile.call("forge_level", level="SL5", credit=phone.device_id)
    decoy = forged["decoy"]
    try:
        for observer in (phone, tablet, fridge):
            # The last list vouches for a decoy at SL1, which a member may: once the
            # observer lists the decoy, it has processed every forged list.
            processed = partial(lists_all, observer, {decoy})
            wait_for(processed, 10, f"{observer.name} to process the hostile member's lists")
            assert level_seen(observer, hostile.device_id) == "SL2", observer.name

        # The phone writes S3 data: the SL3 tablet gets it, the "SL5" member does not,
        # neither pushed...
        client(phone).call("kv_put", store="adv-vault", key="pin", value="4321", label="S3")
        wait_for(partial(kv_is, tablet, "adv-vault", "pin", "4321"), 10, "the tablet's copy")
        client(phone).call("kv_put", store="adv-public", key="marker", value="1")
        wait_for(lambda: hostile.data_log("adv-public"), 10, "the S1 write after it")
        # ...nor when it asks for it on its own channel (a pull, then one of an S1
        # store: when that one is answered, the first was handled).
        data_key = keys.data_key(phone.device_id)
        for n, (store, label) in enumerate((("adv-vault", "S3"), ("adv-public", "S1")), 1):
            pull = Pull(DATA_VERSION, store, {}, session=10_000 + n)
            envelope = Envelope("shared", label, "", encode_sync(pull))  # type: ignore[arg-type]
            hostile.channel_put(phone.device_id, data_key, msgspec.msgpack.encode(envelope))
        wait_for(
            lambda: any(m["type"] == "page" for m in hostile.data_log("adv-public")),
            10,
            "the phone to answer the S1 pull",
        )
        assert hostile.data_log("adv-vault") == []
        assert kv_text(hostile.dev, "adv-vault", "pin") is None
    finally:
        proc = accord("trust", "revoke", decoy, "--home", str(phone.home), "--json")
        assert proc.returncode == 0, proc.stderr


# -- remote code (issue 12 §4) ------------------------------------------------------------

INTRUDER_MANIFEST = 'id = "intruder"\nversion = "1"\nentry = "intruder"\ncontinuable = false\n'
INTRUDER_CODE = '''
from accord.apps import Ability


class Intruder(Ability):
    """Does nothing: whether it runs at all is what the test looks at."""
'''


def _apps_on(dev: SimDevice) -> set[str]:
    return {a["app_id"] for a in client(dev).call("app_ls")["apps"]}


def _running_on(dev: SimDevice) -> set[str]:
    return {
        r["app_id"] for r in client(dev).call("ps")["running"] if r["device_id"] == dev.device_id
    }


def test_the_sl1_fridge_cannot_install_or_run_an_app_on_the_sl4_phone(
    house: AdversaryHousehold, short_tmp: Path
) -> None:
    """Before: the SL1 fridge installed and ran an app on the SL4 phone with the
    ordinary CLI (which then read the phone's key). By default only a member at the
    target's level or higher may install or run apps there; the phone's owner
    installing it does not let the fridge run it."""
    phone, fridge = _phone(house), _fridge(house)
    app = short_tmp / "intruder"
    app.mkdir()
    (app / "accord-app.toml").write_text(INTRUDER_MANIFEST)
    (app / "intruder.py").write_text(INTRUDER_CODE)
    as_fridge = ("--home", str(fridge.home), "--json")
    try:
        installed = accord("app", "install", str(app), "--on", "phone", *as_fridge, timeout=90)
        assert installed.returncode != 0, installed.stdout
        [failed] = json.loads(installed.stdout)["failed"]
        assert (failed["device_id"], failed["error_type"]) == (phone.device_id, "PermissionDenied")
        assert "intruder" not in _apps_on(phone)
        ran = accord("app", "run", "intruder", "--on", "phone", *as_fridge, timeout=90)
        assert ran.returncode != 0, ran.stdout
        assert "PermissionDenied" in ran.stderr
        assert "intruder" not in _apps_on(phone)
        # Installed by the phone's owner, it is still not the fridge's to run there.
        own = accord("app", "install", str(app), "--home", str(phone.home), "--json", timeout=90)
        assert own.returncode == 0, own.stderr
        ran = accord("app", "run", "intruder", "--on", "phone", *as_fridge, timeout=90)
        assert ran.returncode != 0, ran.stdout
        assert "PermissionDenied" in ran.stderr
        assert "intruder" not in _running_on(phone)
    finally:
        for dev in (phone, fridge):
            if "intruder" in _running_on(dev):
                accord("app", "stop", "intruder", "--home", str(dev.home))
            if "intruder" in _apps_on(dev):
                accord("app", "remove", "intruder", "--home", str(dev.home))


# -- data provenance (issue 12 §2) --------------------------------------------------------


def test_a_member_cannot_rewrite_the_phones_rows_in_a_catch_up(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """Before (and still): the hostile member answered the tablet's pull with a row
    credited to the phone and a version vector claiming the phone's seq 10^9, so the
    phone's row was overwritten on the tablet and its later writes were ignored."""
    phone, tablet = _phone(house), _tablet(house)
    store = "adv-ledger"
    client(phone).call("kv_put", store=store, key="balance", value="100")
    for dev in (tablet, hostile.dev):
        wait_for(partial(kv_is, dev, store, "balance", "100"), 10, f"the {dev.name}'s copy")
    forged_row = {"key": "balance", "value_b64": b64(b"0"), "origin": phone.device_id, "seq": 10**9}
    hostile.call(
        "forge_catchup",
        target=tablet.device_id,
        store=store,
        rows=[forged_row],
        vv={phone.device_id: 10**9},
    )
    wait_for(
        lambda: hostile.call("forge_status")["pages_sent"] >= 1,
        10,
        "the tablet to pull from the hostile member",
    )
    sent = time.time()

    def summaries_since() -> int:
        return sum(
            1
            for m in hostile.data_log(store)
            if m["sender"] == tablet.device_id and m["type"] == "summary" and m["at"] > sent
        )

    # The tablet answers a finished catch-up with a summary, and sends one every second.
    wait_for(lambda: summaries_since() >= 2, 10, "the tablet to handle the forged page")
    assert kv_text(tablet, store, "balance") == "100"  # the phone's row stands
    for dev in (tablet, phone):  # and nobody claims a write of the phone's it never made
        stats = next(s for s in client(dev).call("kv_stores")["stores"] if s["name"] == store)
        assert stats["version_vector"].get(phone.device_id, 0) < 10**9, dev.name
    client(phone).call("kv_put", store=store, key="balance", value="150")
    wait_for(
        partial(kv_is, tablet, store, "balance", "150"),
        10,
        "the phone's next write to reach the tablet",
    )


# -- keys and epochs (issue 12 §5): last, since it revokes the hostile member ----------


def test_key_updates_at_the_frame_bound_neither_break_the_phone_nor_block_revoking_their_sender(
    house: AdversaryHousehold, hostile: HostileMember
) -> None:
    """Before: one key update with epoch 2^32 made the phone unable to start again
    (struct.error), and with 2^32-1 the sender could no longer be revoked (InternalError,
    the revoker left half-rotated). Now a key is taken only one step ahead of what the
    revocations justify and below the u32 bound, and revoking is all or nothing."""
    phone, tablet, fridge = _phone(house), _tablet(house), _fridge(house)
    epoch = trust_list(phone)["epoch"]
    for bad in (2**32, 2**32 - 1, 2**32 - 2, epoch + 5):
        hostile.call("push_key", target=phone.device_id, epoch=bad)
    assert trust_list(phone)["epoch"] == epoch

    restart(house, phone)  # what it saved must let it start again
    assert client(phone).call("status")["device_id"] == phone.device_id
    assert trust_list(phone)["epoch"] == epoch

    proc = accord("trust", "revoke", hostile.device_id, "--home", str(phone.home), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["epoch"] == epoch + 1
    assert {tablet.device_id, fridge.device_id} <= set(result["rekeyed"])
    for dev in (phone, tablet, fridge):
        wait_for(partial(revoked_on, dev, hostile.device_id), 10, f"{dev.name}: the revocation")
        assert trust_list(dev)["epoch"] == epoch + 1, dev.name
    # The rest of the circle works on under the new key.
    assert set_freezer(phone, fridge, -18.0) == -18.0
