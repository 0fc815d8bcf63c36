"""Pairwise session handshake: authenticated by both identities, fresh every time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.device.identity import Identity
from accord.errors import TrustError
from accord.trust.session import ANSWER_LEN, OFFER_LEN, Initiator, respond

A, B, EVE = Identity.generate(), Identity.generate(), Identity.generate()
MEMBERS = {A.device_id: A.public_bytes, B.device_id: B.public_bytes}


def test_both_sides_derive_the_same_fresh_secret() -> None:
    secrets = set()
    for _ in range(3):
        ini = Initiator(A, B.device_id)
        who, answer, secret_b = respond(B, ini.offer(), MEMBERS)
        assert who == A.device_id
        assert ini.on_answer(answer, B.public_bytes) == secret_b
        secrets.add(secret_b)
    assert len(secrets) == 3  # ephemeral keys: every session differs


def test_offer_from_a_non_member_is_refused() -> None:
    with pytest.raises(TrustError, match="not a member"):
        respond(B, Initiator(EVE, B.device_id).offer(), MEMBERS)


def test_offer_claiming_another_identity_is_refused() -> None:
    offer = bytearray(Initiator(EVE, B.device_id).offer())
    offer[:26] = A.device_id.encode()  # Eve claims to be A but signs with her own key
    with pytest.raises(TrustError, match="does not verify"):
        respond(B, bytes(offer), MEMBERS)


def test_offer_for_someone_else_is_refused() -> None:
    with pytest.raises(TrustError, match="another device"):
        respond(B, Initiator(A, EVE.device_id).offer(), MEMBERS)


def test_answer_from_an_impostor_is_refused() -> None:
    ini = Initiator(A, B.device_id)
    _, answer, _ = respond(EVE, Initiator(A, EVE.device_id).offer(), {A.device_id: A.public_bytes})
    with pytest.raises(TrustError, match="not signed by the expected device"):
        ini.on_answer(answer, B.public_bytes)


def test_replayed_offer_yields_a_secret_the_attacker_cannot_share() -> None:
    ini = Initiator(A, B.device_id)
    offer = ini.offer()
    _, _, first = respond(B, offer, MEMBERS)
    _, _, replayed = respond(B, offer, MEMBERS)
    assert first != replayed


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=OFFER_LEN + 8))
def test_garbage_offers_only_raise_trust_error(data: bytes) -> None:
    with pytest.raises(TrustError):
        respond(B, data, MEMBERS)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.binary(min_size=ANSWER_LEN, max_size=ANSWER_LEN) | st.binary(max_size=200))
def test_garbage_answers_only_raise_trust_error(data: bytes) -> None:
    with pytest.raises(TrustError):
        Initiator(A, B.device_id).on_answer(data, B.public_bytes)
