"""Details exchanged on a pairwise channel: one exchange teaches both sides, a join
pushes no circle key, and forged or replayed details are refused (real Zenoh, in
process)."""

from __future__ import annotations

import random
import secrets

import msgspec
import pytest

from accord.bus import keys
from accord.device.identity import raw_id
from accord.errors import SealError, TrustError
from accord.node import Node
from accord.trust import session
from accord.trust.keypush import KEY_HELD, KEY_REFUSED, KeyPush, KeyUpdate
from accord.trust.sessions import session_number
from accord.trust.sync import Details, reaction_delay
from accord.wire.messages import encode
from accord.wire.seal import Kind, Sealer, StreamId
from tests.nodes import Mesh, circle_of, detailed, pair, wait_until


def details_of(node: Node) -> Details:
    return msgspec.msgpack.decode(node.sync._my_details(), type=Details)


def test_reactions_to_a_join_spread_with_the_circle() -> None:
    rng = random.Random(7)
    small = [reaction_delay(10, 0.5, rng) for _ in range(200)]
    big = [reaction_delay(100, 0.5, rng) for _ in range(200)]
    assert all(0.5 <= d <= 0.7 for d in small)
    assert all(0.5 <= d <= 2.5 for d in big)
    assert max(big) > 2.0  # spread over the whole window, not bunched at its start


async def test_a_join_pushes_no_circle_key_and_both_learn_each_other(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushes: list[str] = []
    real_push = KeyPush.push

    async def counted(self: KeyPush, device_id: str) -> bool:
        pushes.append(device_id)
        return await real_push(self, device_id)

    monkeypatch.setattr(KeyPush, "push", counted)
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    c = await mesh.start("c", "tv")
    await pair(a, b)
    await pair(a, c)
    for x, y in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
        await wait_until(detailed(x, y), 5, f"{x.name} to hold {y.name}'s details")
    assert pushes == []  # each newcomer got the current key in its credentials


async def test_a_member_with_an_older_key_is_pushed_ours_on_the_next_exchange(
    mesh: Mesh,
) -> None:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    await pair(a, b)
    await wait_until(detailed(b, a), 5, "b to hold a's details")
    ca, cb = circle_of(a), circle_of(b)
    # a rotated while b was not listening (as after a revocation b missed)
    ca._commit(ca.state.rotated(a.home.device_id))
    assert cb.state.epoch == 1
    assert await b.sync._try_fetch(a.home.device_id)  # b tells a it holds epoch 1
    await wait_until(lambda: cb.state.epoch == 2, 5, "a to push b the new key")
    assert cb.state.circle_key == ca.state.circle_key


async def test_forged_or_replayed_details_are_refused(mesh: Mesh) -> None:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    c = await mesh.start("c", "tv")
    await pair(a, b)
    await pair(a, c)
    await wait_until(detailed(a, b), 5, "a to hold b's details")
    await wait_until(detailed(a, c), 5, "a to hold c's details")
    key = keys.details_key(a.home.device_id)
    b_id, c_id = b.home.device_id, c.home.device_id
    channels_b = b.sync._channels
    assert await channels_b.ensure(a.home.device_id)

    # b, a member, sends c's details as its own: a takes nothing, and answers b
    assert a.directory is not None
    before = a.directory.get(c_id)
    forged = channels_b.seal(a.home.device_id, key, encode(details_of(c)))
    assert forged is not None
    reply = await a.sync._serve_details(key, forged)
    assert reply  # b still gets a's details
    assert a.directory.get(c_id) == before
    with pytest.raises(TrustError):
        a.sync._take(b_id, details_of(c))

    # a reply read once is refused the second time (replay), and so is one sealed for
    # another asker
    query = channels_b.seal(a.home.device_id, key, b"")
    assert query is not None
    answer = await a.sync._serve_details(key, query)
    assert answer
    b.sync._read_reply(key, a.home.device_id, answer)
    with pytest.raises(SealError):
        b.sync._read_reply(key, a.home.device_id, answer)
    with pytest.raises((SealError, TrustError)):
        c.sync._read_reply(key, a.home.device_id, answer)

    # garbage where details belong: a typed refusal, no crash, a still answers
    junk = channels_b.seal(a.home.device_id, key, b"\x93not details")
    assert junk is not None
    assert await a.sync._serve_details(key, junk)


async def _send_key(sender: Node, target: Node, epoch: int, key: bytes) -> tuple[bytes, bytes]:
    """A key update as a member sends one; (the offer used, the target's answer)."""
    circle = circle_of(sender)
    target_id = target.home.device_id
    member = circle.member(target_id)
    assert member is not None
    initiator = session.Initiator(sender.home.identity, target_id)
    offer = initiator.offer()
    answer = await target.sync._keys.serve_session(keys.session_key(target_id), offer)
    assert answer is not None
    secret = initiator.on_answer(answer, member.public_key)
    update = KeyUpdate(circle.signed_list(), epoch, key, sender.home.device_id)
    sid = StreamId(Kind.PAIRWISE, raw_id(sender.home.device_id), session_number(offer),
                   circle.boot)  # fmt: skip
    rekey = keys.rekey_key(target_id)
    reply = await target.sync._keys.serve_rekey(
        rekey, Sealer(secret, sid).seal(rekey, encode(update))
    )
    assert reply is not None
    return offer, reply


async def test_a_key_update_is_acknowledged_only_if_taken_and_replayed_offers_get_nothing(
    mesh: Mesh,
) -> None:
    a = await mesh.start("a", "laptop")
    b = await mesh.start("b", "tablet")
    await pair(a, b)
    cb = circle_of(b)
    # out of what b's member list justifies (no revocation): refused, and said so
    _, reply = await _send_key(a, b, cb.state.epoch + 5, secrets.token_bytes(32))
    assert reply == KEY_REFUSED
    assert cb.state.epoch == 1
    # the key b holds: acknowledged
    offer, reply = await _send_key(a, b, cb.state.epoch, cb.state.circle_key)
    assert reply == KEY_HELD
    # the same offer again (a replay): no answer, before any crypto
    assert await b.sync._keys.serve_session(keys.session_key(b.home.device_id), offer) is None
