"""Sealed frames: round trips, binding of header and key expression, tamper and replay
rejection, sender restarts, revocation, key separation, malformed input, bounded state.

Every failure to open must be a :class:`SealError` subclass, never another exception and
never a silent success."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import (
    MalformedFrame,
    ReplayedFrame,
    SealError,
    TamperedFrame,
    UnknownSender,
)
from accord.wire.seal import (
    HEADER,
    HEADER_SIZE,
    MAX_COUNTER,
    MAX_FRAME,
    OVERHEAD,
    REPLAY_WINDOW,
    TAG_SIZE,
    VERSION,
    Kind,
    Opener,
    ReplayWindow,
    Sealer,
    StreamId,
    derive_key,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ROOT = bytes(range(32))
OTHER_ROOT = bytes(range(100, 132))
ALICE = b"A" * 16
BOB = b"B" * 16
KEY = "accord/v1/test/topic"


def _sid(
    sender: bytes = ALICE, kind: Kind = Kind.BROADCAST, epoch: int = 1, stream: int = 1
) -> StreamId:
    return StreamId(kind, sender, epoch, stream)


def _any_sender(sid: StreamId) -> bytes:
    """A lookup that knows every sender (so header changes reach the tag check)."""
    return ROOT


def _opener(max_streams: int | None = None) -> Opener:
    if max_streams is None:
        return Opener(_any_sender)
    return Opener(_any_sender, max_streams=max_streams)


def _craft(root: bytes, sid: StreamId, counter: int, key_expr: str, payload: bytes) -> bytes:
    """An authentic frame with any counter (a Sealer only counts up from 1)."""
    header = HEADER.pack(VERSION, sid.kind, sid.sender, sid.epoch, sid.stream, counter)
    aead = ChaCha20Poly1305(derive_key(root, sid))
    nonce = b"\0\0\0\0" + header[26:34]
    return header + aead.encrypt(nonce, payload, header + key_expr.encode())


def _with_byte(frame: bytes, index: int, value: int) -> bytes:
    out = bytearray(frame)
    out[index] = value
    return bytes(out)


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, 1024 * 1024])
def test_round_trip(size: int) -> None:
    payload = os.urandom(size)
    sealer = Sealer(ROOT, _sid())
    frame = sealer.seal(KEY, payload)
    assert len(frame) == OVERHEAD + size
    sid, plaintext = _opener().open(KEY, frame)
    assert plaintext == payload
    assert sid == _sid()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_big_frames_keep_the_wire_format(wrap: type) -> None:
    """A 4 MiB item sealed from any buffer is byte for byte the frame of the format
    (built here independently), and opening it (the ciphertext read through a view)
    gives the payload back as bytes."""
    payload = os.urandom(4 * 1024 * 1024)
    sealer = Sealer(ROOT, _sid(kind=Kind.PAIRWISE))
    frame = sealer.seal(KEY, wrap(payload))
    assert frame == _craft(ROOT, _sid(kind=Kind.PAIRWISE), 1, KEY, payload)
    in_place = sealer.seal_buffer(KEY, wrap(payload))  # the same format, counter 2
    assert in_place == _craft(ROOT, _sid(kind=Kind.PAIRWISE), 2, KEY, payload)
    _, plaintext = _opener().open(KEY, frame)
    assert type(plaintext) is bytes
    assert plaintext == payload
    with pytest.raises(TamperedFrame):
        _opener().open(KEY, _with_byte(frame, len(frame) // 2, frame[len(frame) // 2] ^ 1))


@pytest.mark.parametrize("size", [0, 1, 100, 70_000])
def test_seal_buffer_and_seal_share_one_counter_and_format(size: int) -> None:
    payload = os.urandom(size)
    sealer = Sealer(ROOT, _sid())
    frames = [sealer.seal(KEY, payload), bytes(sealer.seal_buffer(KEY, payload))]
    frames.append(sealer.seal(KEY, payload))
    assert frames == [_craft(ROOT, _sid(), n, KEY, payload) for n in (1, 2, 3)]
    opener = _opener()
    assert [opener.open(KEY, f)[1] for f in frames] == [payload] * 3


def test_round_trip_pairwise_and_broadcast() -> None:
    opener = _opener()
    for kind in Kind:
        frame = Sealer(ROOT, _sid(kind=kind)).seal(KEY, b"x")
        sid, plaintext = opener.open(KEY, frame)
        assert (sid.kind, plaintext) == (kind, b"x")


def test_sealer_rejects_short_sender() -> None:
    with pytest.raises(ValueError, match="16 raw bytes"):
        Sealer(ROOT, _sid(sender=b"short"))


def test_ciphertext_hides_payload_and_counters_increase() -> None:
    sealer = Sealer(ROOT, _sid())
    first, second = sealer.seal(KEY, b"secret payload"), sealer.seal(KEY, b"secret payload")
    assert b"secret payload" not in first
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]
    assert HEADER.unpack_from(first)[5] == 1
    assert HEADER.unpack_from(second)[5] == 2


def test_key_expression_is_bound() -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"payload")
    opener = _opener()
    for other in [KEY + "/x", "accord/v1/test/other", "", KEY.upper()]:
        with pytest.raises(TamperedFrame):
            opener.open(other, frame)
    # The failures changed nothing: the frame still opens on its own key expression.
    assert opener.open(KEY, frame)[1] == b"payload"


# Which errors flipping a header byte may give, by field (fresh opener, every sender known).
HEADER_FIELDS: list[tuple[str, range, tuple[type[SealError], ...]]] = [
    ("version", range(1), (MalformedFrame,)),
    ("kind", range(1, 2), (MalformedFrame, TamperedFrame)),
    ("sender", range(2, 18), (TamperedFrame,)),
    ("epoch", range(18, 22), (TamperedFrame,)),
    ("stream", range(22, 26), (TamperedFrame,)),
    # A counter flipped to 0 is refused before the tag check.
    ("counter", range(26, 34), (TamperedFrame, ReplayedFrame)),
]


@pytest.mark.parametrize(
    ("index", "allowed"),
    [(i, allowed) for _, indexes, allowed in HEADER_FIELDS for i in indexes],
)
def test_header_is_bound(index: int, allowed: tuple[type[SealError], ...]) -> None:
    frame = Sealer(ROOT, _sid(kind=Kind.PAIRWISE)).seal(KEY, b"payload")
    for mask in (0x01, 0x02, 0x80, 0xFF):
        opener = _opener()
        bad = _with_byte(frame, index, frame[index] ^ mask)
        with pytest.raises(SealError) as info:
            opener.open(KEY, bad)
        assert isinstance(info.value, allowed), (index, mask, info.value)
        assert opener.open(KEY, frame)[1] == b"payload"


def test_header_flip_of_lower_stream_is_replay_after_newer_stream() -> None:
    opener = _opener()
    opener.open(KEY, Sealer(ROOT, _sid(stream=5)).seal(KEY, b"a"))
    frame = Sealer(ROOT, _sid(stream=5)).seal(KEY, b"b")
    with pytest.raises(ReplayedFrame):
        opener.open(KEY, _with_byte(frame, 25, 4))


def test_any_ciphertext_or_tag_byte_mutation_is_tampering() -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"a payload of some bytes")
    opener = _opener()
    for index in range(HEADER_SIZE, len(frame)):
        for mask in (0x01, 0x80, 0xFF):
            with pytest.raises(TamperedFrame):
                opener.open(KEY, _with_byte(frame, index, frame[index] ^ mask))
    assert opener.open(KEY, frame)[1] == b"a payload of some bytes"


def test_truncated_tag_or_appended_bytes_are_tampering() -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"payload")
    opener = _opener()
    for bad in [frame[:-1], frame[:-TAG_SIZE] + frame[-TAG_SIZE + 1 :], frame + b"\0"]:
        with pytest.raises(TamperedFrame):
            opener.open(KEY, bad)


# --- properties --------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096), st.text(max_size=200))
def test_property_round_trip(payload: bytes, key_expr: str) -> None:
    frame = Sealer(ROOT, _sid()).seal(key_expr, payload)
    sid, plaintext = _opener().open(key_expr, frame)
    assert plaintext == payload
    assert sid == _sid()


@st.composite
def mutations(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(original sealed frame, the frame after one or more flips/inserts/deletes/truncations)."""
    payload = draw(st.binary(max_size=64))
    frame = Sealer(ROOT, _sid()).seal(KEY, payload)
    data = bytearray(frame)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[draw(st.integers(0, len(data))) :]
    return frame, bytes(data)


@FUZZ
@given(mutations())
def test_property_mutated_frame_never_opens(case: tuple[bytes, bytes]) -> None:
    frame, mutated = case
    opener = _opener()
    if mutated == frame:  # the mutations cancelled out
        assert opener.open(KEY, mutated)[1] is not None
        return
    with pytest.raises(SealError):
        opener.open(KEY, mutated)
    # Whatever was rejected left the replay state alone.
    opener.open(KEY, frame)


# --- replay ------------------------------------------------------------------------------


def test_same_frame_twice_is_replay() -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"once")
    opener = _opener()
    assert opener.open(KEY, frame)[1] == b"once"
    for _ in range(3):
        with pytest.raises(ReplayedFrame):
            opener.open(KEY, frame)


def test_reordering_within_window_is_accepted_exactly_once() -> None:
    sealer = Sealer(ROOT, _sid())
    frames = [sealer.seal(KEY, i.to_bytes(2, "big")) for i in range(1, 51)]
    order = list(range(50))
    random.Random(20260101).shuffle(order)
    opener = _opener()
    opened = [int.from_bytes(opener.open(KEY, frames[i])[1], "big") for i in order]
    assert sorted(opened) == list(range(1, 51))
    random.Random(7).shuffle(order)
    for i in order:
        with pytest.raises(ReplayedFrame):
            opener.open(KEY, frames[i])


def test_counter_older_than_window_is_replay() -> None:
    sealer = Sealer(ROOT, _sid())
    frames = [sealer.seal(KEY, b"") for _ in range(REPLAY_WINDOW + 2)]  # counters 1..1026
    opener = _opener()
    highest = REPLAY_WINDOW + 2
    opener.open(KEY, frames[highest - 1])
    # The oldest counter still inside the window opens...
    opener.open(KEY, frames[highest - (REPLAY_WINDOW - 1) - 1])
    # ...one well past it does not, even though it was never seen.
    with pytest.raises(ReplayedFrame, match="too old"):
        opener.open(KEY, frames[highest - (REPLAY_WINDOW + 1) - 1])


def test_counter_zero_is_rejected() -> None:
    zero = _craft(ROOT, _sid(), 0, KEY, b"zero")
    with pytest.raises(ReplayedFrame):
        _opener().open(KEY, zero)  # no state yet for this stream
    opener = _opener()
    opener.open(KEY, _craft(ROOT, _sid(), 1, KEY, b"one"))
    with pytest.raises(ReplayedFrame):
        opener.open(KEY, zero)  # with a replay window


def test_large_but_safe_counter_jump_is_accepted() -> None:
    opener = _opener()
    opener.open(KEY, _craft(ROOT, _sid(), 1, KEY, b""))
    opener.open(KEY, _craft(ROOT, _sid(), 10_000, KEY, b""))
    with pytest.raises(ReplayedFrame):
        opener.open(KEY, _craft(ROOT, _sid(), 1, KEY, b""))
    opener.open(KEY, _craft(ROOT, _sid(), 9_999, KEY, b""))


def test_huge_counter_jump_of_authentic_frame_is_handled() -> None:
    opener = _opener()
    opener.open(KEY, _craft(ROOT, _sid(), 1, KEY, b""))
    opener.open(KEY, _craft(ROOT, _sid(), 2**62, KEY, b"far ahead"))
    with pytest.raises(ReplayedFrame):
        opener.open(KEY, _craft(ROOT, _sid(), 2**62, KEY, b"far ahead"))


# --- streams (sender restarts) -----------------------------------------------------------


def test_restart_with_new_stream_is_accepted_and_old_stream_refused() -> None:
    opener = _opener()
    boot1 = Sealer(ROOT, _sid(stream=1))
    seen = [boot1.seal(KEY, b"1-%d" % i) for i in range(3)]
    unseen = [boot1.seal(KEY, b"1-late-%d" % i) for i in range(3)]
    for frame in seen:
        opener.open(KEY, frame)

    boot2 = Sealer(ROOT, _sid(stream=2))  # counter starts again at 1
    first = boot2.seal(KEY, b"2-0")
    assert HEADER.unpack_from(first)[5] == 1
    assert opener.open(KEY, first) == (_sid(stream=2), b"2-0")
    assert opener.open(KEY, boot2.seal(KEY, b"2-1"))[1] == b"2-1"

    for frame in seen + unseen:
        with pytest.raises(ReplayedFrame, match="older"):
            opener.open(KEY, frame)


def test_streams_are_separate_per_sender_kind_and_epoch() -> None:
    opener = _opener()
    opener.open(KEY, Sealer(ROOT, _sid(stream=9)).seal(KEY, b""))
    # A newer stream of Alice's broadcast lane does not affect her other lanes or Bob.
    for sid in [
        _sid(stream=1, kind=Kind.PAIRWISE),
        _sid(stream=1, epoch=2),
        _sid(sender=BOB, stream=1),
    ]:
        assert opener.open(KEY, Sealer(ROOT, sid).seal(KEY, b"ok"))[1] == b"ok"


# --- unknown senders and revocation ------------------------------------------------------


def test_unknown_sender() -> None:
    opener = Opener(lambda sid: None)
    with pytest.raises(UnknownSender):
        opener.open(KEY, Sealer(ROOT, _sid()).seal(KEY, b"hi"))


def test_revocation_takes_effect_on_the_next_frame() -> None:
    members = {ALICE: ROOT, BOB: ROOT}
    opener = Opener(lambda sid: members.get(sid.sender))
    alice, bob = Sealer(ROOT, _sid()), Sealer(ROOT, _sid(sender=BOB))
    opener.open(KEY, alice.seal(KEY, b"a1"))
    opener.open(KEY, bob.seal(KEY, b"b1"))
    pending = alice.seal(KEY, b"a2")  # sealed before the revocation

    del members[ALICE]
    with pytest.raises(UnknownSender):
        opener.open(KEY, pending)
    with pytest.raises(UnknownSender):
        opener.open(KEY, alice.seal(KEY, b"a3"))
    assert opener.open(KEY, bob.seal(KEY, b"b2"))[1] == b"b2"


def test_forget_drops_a_senders_state() -> None:
    members = {ALICE: ROOT, BOB: ROOT}
    opener = Opener(lambda sid: members.get(sid.sender))
    for sid in [_sid(), _sid(kind=Kind.PAIRWISE), _sid(epoch=3, stream=2), _sid(sender=BOB)]:
        opener.open(KEY, Sealer(ROOT, sid).seal(KEY, b""))

    del members[ALICE]
    opener.forget(ALICE)
    assert all(sid.sender == BOB for sid in opener._aeads)
    assert all(sid.sender == BOB for sid in opener._windows)
    assert all(lane[1] == BOB for lane in opener._newest)
    assert len(opener._windows) == 1
    with pytest.raises(UnknownSender):
        opener.open(KEY, Sealer(ROOT, _sid()).seal(KEY, b""))
    opener.forget(b"N" * 16)  # forgetting a stranger is harmless


# --- keys --------------------------------------------------------------------------------


def test_senders_sharing_a_root_have_different_keys() -> None:
    keys = {
        derive_key(ROOT, sid)
        for sid in [
            _sid(),
            _sid(sender=BOB),
            _sid(kind=Kind.PAIRWISE),
            _sid(epoch=2),
            _sid(stream=2),
        ]
    }
    assert len(keys) == 5
    assert all(len(k) == 32 for k in keys)
    assert derive_key(OTHER_ROOT, _sid()) not in keys


def test_frame_relabelled_with_another_sender_fails() -> None:
    frame = Sealer(ROOT, _sid(sender=ALICE)).seal(KEY, b"from alice")
    relabelled = frame[:2] + BOB + frame[18:]
    opener = Opener(lambda sid: {ALICE: ROOT, BOB: ROOT}.get(sid.sender))
    with pytest.raises(TamperedFrame):
        opener.open(KEY, relabelled)
    assert opener.open(KEY, frame)[1] == b"from alice"


def test_key_rotation_to_a_new_epoch() -> None:
    roots: dict[int, bytes] = {1: ROOT}
    opener = Opener(lambda sid: roots.get(sid.epoch))
    old = Sealer(ROOT, _sid(epoch=1))
    opener.open(KEY, old.seal(KEY, b"epoch 1"))

    # Revocation: a new circle key under epoch 2; epoch 1 is no longer accepted.
    roots = {2: OTHER_ROOT}
    with pytest.raises(UnknownSender):
        opener.open(KEY, old.seal(KEY, b"still epoch 1"))
    # The revoked device knows only the old root: claiming the new epoch does not help.
    with pytest.raises(TamperedFrame):
        opener.open(KEY, Sealer(ROOT, _sid(epoch=2)).seal(KEY, b"forged"))
    assert opener.open(KEY, Sealer(OTHER_ROOT, _sid(epoch=2)).seal(KEY, b"new"))[1] == b"new"


def test_new_root_for_the_same_stream_is_used_at_once() -> None:
    roots = {1: ROOT}
    opener = Opener(lambda sid: roots.get(sid.epoch))
    old = Sealer(ROOT, _sid(epoch=1))
    opener.open(KEY, old.seal(KEY, b"cached key"))  # the opener now caches ROOT's key
    roots[1] = OTHER_ROOT
    with pytest.raises(TamperedFrame):
        opener.open(KEY, old.seal(KEY, b"old root"))
    new = Sealer(OTHER_ROOT, _sid(epoch=1, stream=2))
    assert opener.open(KEY, new.seal(KEY, b"new root"))[1] == b"new root"


# --- malformed and forged frames ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, HEADER_SIZE, OVERHEAD - 1])
def test_too_short_is_malformed(size: int) -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"")[:size]
    with pytest.raises(MalformedFrame, match="shorter"):
        _opener().open(KEY, frame)


def test_too_long_is_malformed() -> None:
    frame = Sealer(ROOT, _sid()).seal(KEY, b"") + bytes(MAX_FRAME + 1 - OVERHEAD)
    assert len(frame) == MAX_FRAME + 1
    with pytest.raises(MalformedFrame, match="exceeds"):
        _opener().open(KEY, frame)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_malformed(version: int) -> None:
    frame = _with_byte(Sealer(ROOT, _sid()).seal(KEY, b"x"), 0, version)
    with pytest.raises(MalformedFrame, match="version"):
        _opener().open(KEY, frame)


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_kind_is_malformed(kind: int) -> None:
    frame = _with_byte(Sealer(ROOT, _sid()).seal(KEY, b"x"), 1, kind)
    with pytest.raises(MalformedFrame, match="kind"):
        _opener().open(KEY, frame)


def test_forgeries_never_change_replay_state() -> None:
    rng = random.Random(1234)
    genuine = Sealer(ROOT, _sid(stream=3))
    first = genuine.seal(KEY, b"genuine 1")
    opener = Opener(lambda sid: ROOT if sid.sender == ALICE else None)
    for n in range(300):
        counter = rng.choice([1, 2, 1000, 2**63, 2**64 - 1, rng.randrange(1, 2**64)])
        stream = rng.choice([3, 4, 2**32 - 1, rng.randrange(0, 2**32)])
        header = HEADER.pack(VERSION, Kind.BROADCAST, ALICE, 1, stream, counter)
        forged = header + rng.randbytes(rng.randrange(TAG_SIZE, 200))
        with pytest.raises(SealError):
            opener.open(KEY, forged)
        assert not opener._windows, n
        assert not opener._newest, n
    assert opener.open(KEY, first)[1] == b"genuine 1"
    assert opener.open(KEY, genuine.seal(KEY, b"genuine 2"))[1] == b"genuine 2"


# --- bounded state -----------------------------------------------------------------------


def test_state_is_bounded_by_max_streams() -> None:
    """Past max_streams lanes, new lanes are refused (fail closed) rather than evicting
    replay state; forget() makes room again."""
    opener = _opener(max_streams=8)
    for i in range(8):
        sealer = Sealer(ROOT, _sid(sender=i.to_bytes(16, "big"), stream=i % 3))
        for _ in range(2):
            opener.open(KEY, sealer.seal(KEY, b""))
    newcomer = Sealer(ROOT, _sid(sender=b"N" * 16))
    with pytest.raises(UnknownSender, match="too many"):
        opener.open(KEY, newcomer.seal(KEY, b""))
    assert len(opener._aeads) <= 8
    assert len(opener._newest) <= 8
    assert len(opener._windows) <= 8
    opener.forget((0).to_bytes(16, "big"))
    opener.open(KEY, newcomer.seal(KEY, b""))


def test_a_full_opener_never_forgets_replay_state() -> None:
    opener = _opener(max_streams=8)
    victim = Sealer(ROOT, _sid(sender=b"V" * 16))
    frame = victim.seal(KEY, b"pay 10 euros")
    opener.open(KEY, frame)
    for i in range(8):  # the eighth lane finds the opener full and is refused
        with contextlib.suppress(UnknownSender):
            opener.open(KEY, Sealer(ROOT, _sid(sender=i.to_bytes(16, "big"))).seal(KEY, b""))
    with pytest.raises(ReplayedFrame):
        opener.open(KEY, frame)


# --- ReplayWindow ------------------------------------------------------------------------


def test_replay_window_basics() -> None:
    window = ReplayWindow()
    assert not window.check(0)
    assert not window.check(-1)
    assert window.check(1)
    assert window.check(1)  # check does not record
    window.record(1)
    assert not window.check(1)
    assert window.check(2)
    window.record(5)
    assert [window.check(c) for c in range(1, 7)] == [False, True, True, True, False, True]


def test_replay_window_edge() -> None:
    window = ReplayWindow(size=4)
    window.record(10)
    assert [window.check(c) for c in range(5, 12)] == [
        False,  # 10 - 5 = 5: outside
        False,  # 10 - 6 = 4: outside (offset must be < size)
        True,
        True,
        True,
        False,  # seen
        True,
    ]
    window.record(7)
    window.record(12)  # slides the window to 9..12: 10 stays seen, 7 falls out
    assert [window.check(c) for c in range(7, 14)] == [False, False, True, False, True, False, True]
    window.record(10_000)  # a jump past the whole window clears it
    assert [window.check(c) for c in (9_996, 9_997, 10_000, 10_001)] == [False, True, False, True]


def _check_against_model(counters: list[int], size: int) -> None:
    window = ReplayWindow(size) if size != REPLAY_WINDOW else ReplayWindow()
    accepted: set[int] = set()
    highest = 0
    for c in counters:
        expected = c >= 1 and c not in accepted and (c > highest or highest - c < size)
        got = window.check(c)
        assert got == expected, (c, highest)
        if got:
            window.record(c)
            accepted.add(c)
            highest = max(highest, c)


@FUZZ
@given(st.lists(st.integers(1, 3000), max_size=300))
def test_property_replay_window_matches_model(counters: list[int]) -> None:
    _check_against_model(counters, REPLAY_WINDOW)


@FUZZ
@given(st.lists(st.integers(0, 60), max_size=200))
def test_property_small_replay_window_matches_model(counters: list[int]) -> None:
    _check_against_model(counters, 8)


def test_a_changed_key_for_the_same_epoch_restarts_the_window() -> None:
    """Two members rotated at once and the tie replaced our key for that epoch: the
    sender's counters restart under the new key and must not look replayed."""
    sid = StreamId(Kind.BROADCAST, b"s" * 16, 2, 1)
    roots = {"now": b"\x01" * 32}
    opener = Opener(lambda _sid: roots["now"])
    first = Sealer(roots["now"], sid)
    for _ in range(5):
        opener.open("k", first.seal("k", b"x"))
    roots["now"] = b"\x02" * 32
    second = Sealer(roots["now"], sid)
    assert opener.open("k", second.seal("k", b"y"))[1] == b"y"


def test_an_opener_without_replay_state_cannot_be_silenced_by_a_forger() -> None:
    """Under a key every member holds, a forger can seal a valid frame in another's
    name with the highest stream and counter. An opener that keeps replay state would
    then refuse the real sender's frames; one built with replay=False keeps none."""
    root = b"\x07" * 32
    victim = StreamId(Kind.BROADCAST, b"v" * 16, 1, 3)
    forged = StreamId(Kind.BROADCAST, b"v" * 16, 1, 2**32 - 1)
    tracking, stateless = Opener(lambda _: root), Opener(lambda _: root, replay=False)
    forger = Sealer(root, forged)
    forger._counter = MAX_COUNTER - 1
    frame = forger.seal("k", b"forged")
    for opener in (tracking, stateless):
        opener.open("k", frame)
    real = Sealer(root, victim).seal("k", b"real")
    with pytest.raises(ReplayedFrame):
        tracking.open("k", real)
    assert stateless.open("k", real)[1] == b"real"
