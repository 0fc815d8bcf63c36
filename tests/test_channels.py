"""Pairwise channels (sans-IO): replayed offers cannot break a working channel, and a
restarted peer's new session takes over only once it is used."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.device.identity import Identity
from accord.errors import SealError, TrustError, UnknownSender
from accord.trust.channels import MAX_PENDING, Channels

A, B, EVE = Identity.generate(), Identity.generate(), Identity.generate()


def _pair(boot_a: int = 1, boot_b: int = 1) -> tuple[Channels, Channels]:
    keys = {A.device_id: A.public_bytes, B.device_id: B.public_bytes}
    return (
        Channels(A, boot_a, keys.get),
        Channels(B, boot_b, keys.get),
    )


def _connect(a: Channels, b: Channels, peer_of_a: str) -> bytes:
    initiator, offer = a.initiate(peer_of_a)
    _, answer = b.respond(offer)
    a.complete(peer_of_a, initiator, offer, answer)
    return offer


def _roundtrip(a: Channels, b: Channels) -> None:
    frame = a.seal(B.device_id, "k", b"ping")
    assert frame is not None
    assert b.open("k", frame) == (A.device_id, b"ping")
    back = b.seal(A.device_id, "k", b"pong")
    assert back is not None
    assert a.open("k", back) == (B.device_id, b"pong")


def test_a_channel_carries_both_ways() -> None:
    a, b = _pair()
    _connect(a, b, B.device_id)
    assert not b.has(A.device_id)  # answered, not yet used by A: pending
    _roundtrip(a, b)


def test_replayed_offers_never_break_a_working_channel() -> None:
    """An attacker replays A's captured offer, many times: B answers (it cannot tell),
    but keeps sending on the session A actually uses."""
    a, b = _pair()
    offer = _connect(a, b, B.device_id)
    _roundtrip(a, b)
    with pytest.raises(TrustError, match="replayed"):
        b.respond(offer)
    other_a, _ = _pair()
    for _ in range(3 * MAX_PENDING):  # fresh offers A once made, captured earlier
        _, old_offer = other_a.initiate(B.device_id)
        b.respond(old_offer)
    _roundtrip(a, b)


def test_a_restarted_peers_new_session_takes_over_when_used() -> None:
    a, b = _pair()
    _connect(a, b, B.device_id)
    _roundtrip(a, b)
    a2, _ = _pair(boot_a=2)  # A restarted: its sessions are gone
    stale = b.seal(A.device_id, "k", b"old")
    assert stale is not None
    with pytest.raises(UnknownSender):
        a2.open("k", stale)
    _connect(a2, b, B.device_id)
    _roundtrip(a2, b)


def test_a_non_member_gets_no_answer() -> None:
    _, b = _pair()
    eve = Channels(EVE, 1, {B.device_id: B.public_bytes}.get)
    _, offer = eve.initiate(B.device_id)
    with pytest.raises(TrustError):
        b.respond(offer)
    assert b.peers() == []


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=300))
def test_any_bytes_either_open_or_raise_a_seal_error(junk: bytes) -> None:
    _, b = _pair()
    with pytest.raises(SealError):
        b.open("k", junk)


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=300))
def test_any_offer_bytes_are_answered_or_refused_with_a_trust_error(junk: bytes) -> None:
    _, b = _pair()
    with pytest.raises(TrustError):
        b.respond(junk)


def test_an_answered_offer_replayed_later_is_refused_before_any_crypto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = _pair()
    offers = [a.initiate(B.device_id)[1] for _ in range(MAX_PENDING + 3)]
    for offer in offers:
        b.respond(offer)
    calls: list[int] = []
    from accord.trust import session

    real = session.respond

    def counting(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "respond", counting)
    for offer in offers:  # long evicted from the pending list, still remembered
        with pytest.raises(TrustError, match="replayed"):
            b.respond(offer)
    assert calls == []


def test_a_large_frame_sealed_into_one_buffer_opens_like_any_other_and_no_twice() -> None:
    a, b = _pair()
    assert a.seal_buffer(B.device_id, "k", b"x") is None  # no channel yet
    _connect(a, b, B.device_id)
    payload = bytes(range(256)) * 1024  # 256 KiB
    frame = a.seal_buffer(B.device_id, "k", payload)
    assert isinstance(frame, bytearray)
    assert b.open("k", bytes(frame)) == (A.device_id, payload)
    with pytest.raises(SealError):
        b.open("k", bytes(frame))  # a replay
    follow = a.seal(B.device_id, "k", b"next")  # the counters stay in one sequence
    assert follow is not None
    assert b.open("k", follow) == (A.device_id, b"next")
