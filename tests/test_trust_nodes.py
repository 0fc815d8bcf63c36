"""Pairing, sealed details and the member list between nodes on real Zenoh (in-process)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import zenoh

from accord.bus import keys
from accord.bus.settings import BusSettings, zenoh_config
from accord.device.home import init_home
from accord.errors import DeviceUnavailable, PairingError, UnknownSender
from accord.node import Node
from accord.sim.household import free_port
from tests.nodes import Mesh, circle_of, detailed, pair, sees, wait_until


async def test_pairing_makes_members_who_see_each_others_details(mesh: Mesh) -> None:
    phone = await mesh.start("phone", "nokia-x60")
    tablet = await mesh.start("tablet", "tablet")
    assert phone.directory is not None
    await wait_until(lambda: sees(phone, tablet), 5, "presence")
    before = phone.directory.get(tablet.home.device_id)
    assert before is not None
    assert before.standing == "stranger"
    assert before.profile is None  # strangers learn only the public announcement

    started = time.monotonic()
    result = await pair(phone, tablet)
    assert time.monotonic() - started < 5.0  # generous; the benchmark measures it
    assert result["device_id"] == phone.home.device_id
    assert len(result["code"]) == 6
    assert phone.circle is not None
    assert tablet.circle is not None
    assert phone.circle.is_member(tablet.home.device_id)
    assert tablet.circle.is_member(phone.home.device_id)
    assert tablet.circle.members.circle_id == phone.circle.members.circle_id
    await wait_until(detailed(phone, tablet), 5, "phone to fetch the tablet's details")
    await wait_until(detailed(tablet, phone), 5, "tablet to fetch the phone's details")
    rec = phone.directory.get(tablet.home.device_id)
    assert rec is not None
    assert rec.standing == "member"
    assert rec.vendor == "Generic"


async def test_every_member_learns_of_a_new_member(mesh: Mesh) -> None:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    await pair(a, b)
    c = await mesh.start("c", "tv")
    await pair(a, c)  # b takes no part in this pairing
    b_circle = b.circle
    assert b_circle is not None
    await wait_until(lambda: b_circle.is_member(c.home.device_id), 5, "b to learn of c")
    await wait_until(detailed(b, c), 5, "b to see c's details")
    await wait_until(detailed(c, b), 5, "c to see b's details")


async def test_pair_open_stream_reports_the_pairing(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    stream = host.trust.pair_open({"timeout": 30})
    opened = await anext(stream)
    assert opened["event"] == "open"
    directory = joiner.directory
    assert directory is not None
    await wait_until(
        lambda: bool((r := directory.get(host.home.device_id)) and r.pairing),
        5,
        "the pairing flag to reach the joiner",
    )
    joined = await joiner.trust.pair_join({"device": host.home.device_id[:6], "pin": opened["pin"]})
    paired = await asyncio.wait_for(anext(stream), 5)
    assert paired["event"] == "paired"
    assert paired["code"] == joined["code"]  # both sides show the same verification code
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_until(
        lambda: not (r := directory.get(host.home.device_id)) or not r.pairing,
        5,
        "the pairing flag to clear",
    )


async def test_wrong_pin_fails_on_both_sides_and_five_close_the_window(
    mesh: Mesh, short_tmp: Path
) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
    wrong = f"{(int(pin) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(PairingError, match="wrong PIN"):
            await joiner.trust.pair_join({"device": host.name, "pin": wrong})
    assert host.circle is not None
    assert host.circle.state.pairing_failures == 5
    assert not host.circle.pairing_open()
    with pytest.raises(PairingError, match="not accepting pairing"):
        await joiner.trust.pair_join({"device": host.name, "pin": pin})
    assert joiner.circle is not None
    assert not joiner.circle.is_member(host.home.device_id)


async def test_failed_attempts_survive_a_restart(short_tmp: Path) -> None:
    home = init_home(short_tmp / "host", profile_name="laptop")
    settings = BusSettings(listen=(f"tcp/127.0.0.1:{free_port()}",), multicast=False)
    async with Node(home, settings) as host:
        pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
        assert host.circle is not None
        for _ in range(5):
            host.circle.count_pairing_attempt()
    async with Node(home, settings) as host:
        assert host.circle is not None
        assert host.circle.state.pairing_failures == 5
        assert not host.circle.pairing_open()
        assert host.circle.state.pairing_pin != pin


async def test_expired_window_and_reused_pin_are_refused(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    first = await mesh.start("first", "tablet")
    second = await mesh.start("second", "tv")
    await wait_until(lambda: sees(first, host) and sees(second, host), 5, "presence")
    pin = (await host.trust.pair_window({"timeout": 30}))["pin"]
    await first.trust.pair_join({"device": host.name, "pin": pin})
    with pytest.raises(PairingError, match="not accepting pairing"):
        await second.trust.pair_join({"device": host.name, "pin": pin})  # single use
    pin = (await host.trust.pair_window({"timeout": 1}))["pin"]
    circle = host.circle
    assert circle is not None
    await wait_until(lambda: not circle.pairing_open(), 5, "window to expire")
    with pytest.raises(PairingError, match="not accepting pairing"):
        await second.trust.pair_join({"device": host.name, "pin": pin})


async def test_unknown_device_and_bad_pin_format(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    with pytest.raises(DeviceUnavailable, match="no online device"):
        await joiner.trust.pair_join({"device": "toaster", "pin": "123456"})
    with pytest.raises(PairingError, match="6 digits"):
        await joiner.trust.pair_join({"device": host.name, "pin": "12ab"})


async def test_a_stranger_with_raw_zenoh_learns_no_details(mesh: Mesh) -> None:
    a = await mesh.start("a", "nokia-x60")
    b = await mesh.start("b", "tablet")
    await pair(a, b)
    await wait_until(detailed(a, b), 5, "members exchange details")
    conf = zenoh_config(BusSettings(connect=tuple(mesh.endpoints), multicast=False))
    session = zenoh.open(conf)
    received: list[bytes] = []
    try:
        sub = session.declare_subscriber(
            "accord/**", lambda s: received.append(s.payload.to_bytes())
        )
        loop = asyncio.get_running_loop()

        def ask(key: str, payload: bytes) -> list[zenoh.Reply]:
            return list(session.get(key, payload=payload, timeout=1.0))

        for payload in (b"", b"\x00" * 50, b"\x01" * 200):
            replies = await loop.run_in_executor(
                None, ask, keys.details_key(a.home.device_id), payload
            )
            assert replies == []  # strangers get nothing, not even an error
        sub.undeclare()  # type: ignore[no-untyped-call]
    finally:
        session.close()  # type: ignore[no-untyped-call]
    assert a.circle is not None
    assert a.circle.is_member(b.home.device_id)  # the circle is intact
    for payload in received:  # what a stranger sees on the wire: no profile details
        assert b"Generic" not in payload
        assert b"Snapdragon" not in payload


async def circle_of_three(mesh: Mesh) -> tuple[Node, Node, Node]:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    c = await mesh.start("c", "tv")
    await pair(a, b)
    await pair(a, c)
    for x, y in ((a, b), (a, c), (b, c), (c, b)):
        await wait_until(detailed(x, y), 5, f"{x.name} to see {y.name}'s details")
    return a, b, c


def epoch(node: Node) -> int:
    assert node.circle is not None
    return node.circle.state.epoch


def standing(viewer: Node, other: Node) -> str:
    assert viewer.directory is not None
    rec = viewer.directory.get(other.home.device_id)
    return rec.standing if rec else "unknown"


async def test_revoked_device_can_neither_read_nor_inject(mesh: Mesh) -> None:
    a, b, c = await circle_of_three(mesh)
    ca, cb, cc = circle_of(a), circle_of(b), circle_of(c)
    result = await a.trust.trust_revoke({"device": "c"})
    assert result["rekeyed"] == [b.home.device_id]
    await wait_until(lambda: epoch(b) == epoch(a) == 2, 5, "b to get the new key")
    await wait_until(lambda: not cb.is_member(c.home.device_id), 5, "b to learn of it")
    assert not ca.is_member(c.home.device_id)
    assert epoch(c) == 1  # c never got the new key
    # c cannot read what members now seal ...
    with pytest.raises(UnknownSender):
        cc.open(keys.MEMBERS_KEY, ca.seal(keys.MEMBERS_KEY, b"secret"))
    # ... what c seals is refused by the members ...
    with pytest.raises(UnknownSender):
        cb.open(keys.MEMBERS_KEY, cc.seal(keys.MEMBERS_KEY, b"let me in"))
    # ... and c cannot push its old key and list to a member.
    assert not await c.sync.push_key(b.home.device_id)
    assert epoch(b) == 2
    await wait_until(lambda: standing(b, c) == "revoked", 5, "b to show c as revoked")
    assert standing(a, c) == "revoked"
    # the remaining members keep working: a fresh details exchange under the new key
    assert await a.sync._try_fetch(b.home.device_id)


async def test_a_member_away_during_revocation_gets_the_new_key_on_return(
    mesh: Mesh,
) -> None:
    a, b, c = await circle_of_three(mesh)
    home_b = b.home
    await mesh.stack.aclose()  # everyone stops; a and c come back, b stays away
    mesh.stack = AsyncExitStack()
    mesh.endpoints.clear()
    try:
        a = await mesh.start("a", "laptop", home=a.home)
        c = await mesh.start("c", "tv", home=c.home)
        await wait_until(lambda: sees(a, c), 5, "a and c to meet again")
        await a.trust.trust_revoke({"device": "c"})
        b = await mesh.start("b", "tablet", home=home_b)
        assert circle_of(b).state.epoch == 1  # b was away: it still holds the old key
        await wait_until(lambda: epoch(b) == epoch(a) == 2, 5, "b to get the new key")
        await wait_until(lambda: not circle_of(b).is_member(c.home.device_id), 5, "b learns")
        assert await a.sync._try_fetch(b.home.device_id)
        assert epoch(c) == 1
    finally:
        await mesh.stack.aclose()


async def test_leaving_removes_the_device_everywhere_and_rotates(mesh: Mesh) -> None:
    a, b, c = await circle_of_three(mesh)
    old_circle = circle_of(a).members.circle_id
    result = await b.trust.trust_leave({})
    assert result["left"] == old_circle
    assert result["circle_id"] != old_circle
    assert circle_of(b).members.active()[0].device_id == b.home.device_id
    await wait_until(lambda: not circle_of(a).is_member(b.home.device_id), 5, "a to learn")
    await wait_until(lambda: not circle_of(c).is_member(b.home.device_id), 5, "c to learn")
    await wait_until(lambda: epoch(a) == epoch(c) >= 2, 5, "a and c to share a new key")
    await wait_until(
        lambda: circle_of(a).state.circle_key == circle_of(c).state.circle_key, 5, "converge"
    )
    assert await a.sync._try_fetch(c.home.device_id)


async def test_garbage_on_every_trust_key_changes_nothing(mesh: Mesh) -> None:
    """A raw Zenoh process (not Accord's code) throws truncated, oversized, garbage and
    replayed frames at every trust key: typed errors inside, no crash, no change."""
    a, b, _ = await circle_of_three(mesh)
    ca = circle_of(a)
    members_before = ca.members
    epoch_before = ca.state.epoch
    conf = zenoh_config(BusSettings(connect=tuple(mesh.endpoints), multicast=False))
    session = zenoh.open(conf)
    recorded: list[tuple[str, bytes]] = []
    try:
        sub = session.declare_subscriber(
            "accord/**",
            lambda s: recorded.append((str(s.key_expr), s.payload.to_bytes())),
        )
        # A new subscriber takes a moment to reach the publisher: publish until heard.
        deadline = time.monotonic() + 5
        while not any(k == keys.MEMBERS_KEY for k, _ in recorded):
            assert time.monotonic() < deadline, "no member frame reached the subscriber"
            b.sync.publish_members()
            await asyncio.sleep(0.05)
        junk = [b"", b"\x01", b"\x00" * 49, b"\xff" * 5000, bytes(range(256)) * 300]
        junk += [p for k, p in recorded if k == keys.MEMBERS_KEY]  # replays
        target = a.home.device_id
        loop = asyncio.get_running_loop()

        def attack() -> None:
            for payload in junk:
                session.put(keys.MEMBERS_KEY, payload)
                for key in (
                    keys.pair_key(target),
                    keys.details_key(target),
                    keys.session_key(target),
                    keys.rekey_key(target),
                ):
                    list(session.get(key, payload=payload, timeout=0.5))

        await loop.run_in_executor(None, attack)
        sub.undeclare()  # type: ignore[no-untyped-call]
    finally:
        session.close()  # type: ignore[no-untyped-call]
    assert ca.members == members_before
    assert ca.state.epoch == epoch_before
    assert await a.sync._try_fetch(b.home.device_id)  # a still works with its members
    # and pairing still works afterwards
    d = await mesh.start("d", "tv")
    await pair(a, d)
    assert ca.is_member(d.home.device_id)
