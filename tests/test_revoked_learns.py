"""A revoked device learns it (issue 13 §1), from a signed notice it can verify.

Before: after `accord trust revoke "Midea Refrigerator"` the fridge still listed the
whole circle, showed everyone as members, took `kv put` that nobody received and
reported the phone as gone when it called it. Now the revoker tells it at once, and
any member it reaches later answers its offers and queries with the signed proof of
its revocation; it believes only a proof by a member with the authority to revoke it.
In-process nodes on real Zenoh.
"""

from __future__ import annotations

import logging

import msgspec
import pytest

from accord.bus import keys
from accord.device.identity import Identity
from accord.errors import AccordError, TrustError
from accord.node import Node
from accord.trust import members as ml
from accord.trust import session
from accord.trust.channel_service import NOTICE_BURST, NOTICE_PREFIX, RevocationNotice
from accord.trust.sync import CircleSync
from tests.nodes import Mesh, circle_of, household, sees, wait_until

WAIT = 10.0


@pytest.fixture
async def house(mesh: Mesh) -> tuple[Node, Node, Node]:
    phone, tablet, fridge = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("fridge", "midea-fridge")
    )
    return phone, tablet, fridge


def _revoked(node: Node) -> bool:
    return circle_of(node).membership() == "revoked"


def _notice(circle_id: str, device_id: str, by: Identity, at: float) -> bytes:
    unsigned = ml.Revocation(device_id, by.device_id, at, b"\0" * 64)
    proof = msgspec.structs.replace(
        unsigned, signature=by.sign(ml.REVOCATION_CONTEXT + unsigned.signed_bytes())
    )
    return NOTICE_PREFIX + msgspec.msgpack.encode(RevocationNotice(circle_id, proof))


async def _send(sender: Node, to: Node, payload: bytes) -> list[bytes]:
    assert sender._bus is not None
    replies = await sender._bus.get(keys.channel_key(to.home.device_id), 2.0, payload)
    return [r for _, r in replies]


async def test_a_revoked_device_that_is_online_learns_it_at_once(
    house: tuple[Node, Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    phone, tablet, fridge = house
    assert (await fridge.trust.trust_list({}))["membership"] == "member"
    caplog.set_level(logging.WARNING, logger="accord.trust.circle")

    result = await phone.trust.trust_revoke({"device": "fridge"})

    assert result["notified"] is True
    assert _revoked(fridge)
    proof = circle_of(fridge).removal()
    assert proof is not None
    assert proof.by == phone.home.device_id
    status = await fridge._status({})
    assert status["membership"] == "revoked"
    assert status["revocation"]["by"] == phone.home.device_id
    assert status["revocation"]["by_name"] == "phone"
    assert status["revocation"]["at"] == proof.at
    message = status["revocation"]["message"]
    assert message.startswith(f"this device was removed from circle {status['circle_id'][:4]}")
    assert "by phone at " in message
    assert message.endswith("pair again to rejoin")
    assert status["circle_members"] == 0
    listed = await fridge.trust.trust_list({})
    assert listed["membership"] == "revoked"
    assert listed["members"] == []
    # Its directory no longer shows the others as members.
    assert fridge.directory is not None
    for other in (phone, tablet):
        rec = fridge.directory.get(other.home.device_id)
        assert rec is not None
        assert rec.standing == "stranger"
    # Commands that would reach the circle say why they cannot.
    for name in ("phone", "tablet"):
        with pytest.raises(TrustError, match=r"removed from circle .* by phone"):
            fridge.trust.resolve_member(name)
    assert fridge.trust.resolve_member("fridge").device_id == fridge.home.device_id
    with pytest.raises(TrustError, match="pair again to rejoin"):
        await fridge.trust.pair_window({"timeout": 30})
    with pytest.raises(AccordError):
        await fridge.rpc.call(phone.home.device_id, "device", "info", timeout=2.0)
    # A write stays on this device: it syncs with nobody.
    store = fridge.data.open("notes")
    await store.put("k", b"v")
    assert fridge.data.stats("notes")["shared_with"] == []
    # The one warning, in words.
    warnings = [r.getMessage() for r in caplog.records if "removed from circle" in r.getMessage()]
    assert len(warnings) == 1, warnings
    # The others still are a circle; the phone and tablet are unaffected.
    assert circle_of(phone).membership() == "member"
    assert circle_of(tablet).membership() == "member"
    await phone.rpc.call(tablet.home.device_id, "device", "info", timeout=5.0)


async def test_the_removal_is_kept_across_a_restart(
    house: tuple[Node, Node, Node], mesh: Mesh
) -> None:
    phone, _tablet, fridge = house
    await phone.trust.trust_revoke({"device": "fridge"})
    assert _revoked(fridge)
    await fridge.stop()
    fridge = await mesh.start("fridge", "midea-fridge", home=fridge.home)
    assert _revoked(fridge)
    status = await fridge._status({})
    assert status["revocation"]["by_name"] == "phone"


async def test_a_device_revoked_while_away_learns_it_when_it_comes_back(
    house: tuple[Node, Node, Node], mesh: Mesh
) -> None:
    phone, tablet, fridge = house
    home = fridge.home
    await fridge.stop()
    await wait_until(lambda: not sees(phone, fridge), WAIT, "the phone to see the fridge go")
    result = await phone.trust.trust_revoke({"device": "fridge"})
    assert result["notified"] is False
    await wait_until(lambda: circle_of(tablet).standing(home.device_id) == "revoked", WAIT,
                     "the tablet to hear of it")  # fmt: skip
    fridge = await mesh.start("fridge", "midea-fridge", home=home)
    assert not _revoked(fridge)  # it has not reached anyone yet
    await wait_until(lambda: _revoked(fridge), WAIT, "the fridge to learn it was revoked")
    proof = circle_of(fridge).removal()
    assert proof is not None
    assert proof.by == phone.home.device_id


async def test_a_device_that_missed_the_notice_learns_it_on_its_next_call(
    house: tuple[Node, Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice sent at revocation is lost: the fridge still believes it is a
    member until it calls the phone, whose "no channel" hint makes it open a new
    channel, which the phone answers with the notice."""
    phone, tablet, fridge = house
    monkeypatch.setattr(CircleSync, "_spawn_notice", lambda self, device_id: None)
    await phone.trust.trust_revoke({"device": "fridge"})
    await wait_until(lambda: circle_of(tablet).standing(fridge.home.device_id) == "revoked",
                     WAIT, "the tablet to hear of it")  # fmt: skip
    assert not _revoked(fridge)
    with pytest.raises(AccordError):
        await fridge.rpc.call(phone.home.device_id, "device", "info", timeout=3.0)
    assert _revoked(fridge)
    assert "by phone" in circle_of(fridge).removed_message()


async def test_forged_notices_change_nothing(house: tuple[Node, Node, Node]) -> None:
    """Anyone can send a notice; only a proof by a member with the authority to revoke
    the device counts. The SL1 fridge's own valid signature does not revoke the SL4
    phone, nor a stranger's, nor a forged one in the tablet's name, nor a proof for
    another circle, another device, or a time before the phone was admitted."""
    phone, tablet, fridge = house
    circle = circle_of(phone)
    cid, me = circle.members.circle_id, phone.home.device_id
    stranger = Identity.generate()
    now = fridge.clock.wall()
    forged_by_tablet = _notice(cid, me, stranger, now)
    forged = msgspec.msgpack.decode(forged_by_tablet[len(NOTICE_PREFIX) :], type=RevocationNotice)
    forged = msgspec.structs.replace(
        forged, proof=msgspec.structs.replace(forged.proof, by=tablet.home.device_id)
    )
    added = circle.member(me)
    assert added is not None
    notices = [
        _notice(cid, me, fridge.home.identity, now),  # valid, but the fridge is SL1
        _notice(cid, me, stranger, now),  # not a member
        NOTICE_PREFIX + msgspec.msgpack.encode(forged),  # the tablet's name, not its key
        _notice("0" * 16, me, tablet.home.identity, now),  # another circle
        _notice(cid, tablet.home.device_id, phone.home.identity, now),  # another device
        _notice(cid, me, fridge.home.identity, added.added_at - 1),  # older than the phone
        NOTICE_PREFIX + b"\xc1garbage",
    ]
    for payload in notices:
        assert await _send(fridge, phone, payload) == []
    assert circle.membership() == "member"
    assert circle.members.revoked == ()
    # The fridge cannot talk the tablet (SL3) out of the circle either.
    assert await _send(fridge, tablet, _notice(cid, tablet.home.device_id,
                                               fridge.home.identity, now)) == []  # fmt: skip
    assert circle_of(tablet).membership() == "member"
    await phone.rpc.call(tablet.home.device_id, "device", "info", timeout=5.0)
    await tablet.rpc.call(phone.home.device_id, "device", "info", timeout=5.0)


async def test_notices_go_only_to_a_revoked_devices_signed_offers_and_are_rate_limited(
    house: tuple[Node, Node, Node],
) -> None:
    """The sender of an offer is only claimed: an offer naming the revoked fridge gets
    the notice only if the fridge signed it, and at most NOTICE_BURST a second."""
    phone, tablet, fridge = house
    fridge_id, phone_id = fridge.home.device_id, phone.home.device_id
    await phone.trust.trust_revoke({"device": "fridge"})
    assert phone._channels is not None
    offer = session.Initiator(fridge.home.identity, phone_id).offer()
    forged = session.Initiator(Identity.generate(), phone_id).offer()
    forged = fridge_id.encode() + forged[session.ID_LEN :]  # the fridge's name, not its key
    assert phone._channels.notice_for_offer(forged) is None
    to_tablet = session.Initiator(fridge.home.identity, tablet.home.device_id).offer()
    assert phone._channels.notice_for_offer(to_tablet) is None  # not addressed to the phone
    answers = [phone._channels.notice_for_offer(offer) for _ in range(NOTICE_BURST + 3)]
    assert all(a is not None and a.startswith(NOTICE_PREFIX) for a in answers[:NOTICE_BURST])
    assert answers[NOTICE_BURST:] == [None] * 3
    # A member's offer never gets one.
    member_offer = session.Initiator(tablet.home.identity, phone_id).offer()
    assert phone._channels.notice_for_offer(member_offer) is None


async def test_a_valid_notice_counts_whoever_relays_it(house: tuple[Node, Node, Node]) -> None:
    """The control for the test above: the same path takes a proof by the phone (SL4)
    that revokes the fridge (SL1), whoever carries it."""
    phone, tablet, fridge = house
    cid = circle_of(fridge).members.circle_id
    notice = _notice(cid, fridge.home.device_id, phone.home.identity, fridge.clock.wall())
    assert await _send(tablet, fridge, notice) == [b"ok"]
    assert _revoked(fridge)
    assert "by phone" in circle_of(fridge).removed_message()


async def test_trust_list_names_revoked_devices(house: tuple[Node, Node, Node]) -> None:
    phone, _tablet, fridge = house
    await phone.trust.trust_revoke({"device": "fridge"})
    listing = await phone.trust.trust_list({})
    assert listing["revoked"] == [fridge.home.device_id]
    assert listing["revoked_names"] == {fridge.home.device_id: "fridge"}
