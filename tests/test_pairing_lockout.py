"""The pairing host against strangers (issue 12 §7): what counts toward the 5-attempt
lockout, who may abort or confirm a handshake, one PIN admits one device, and the owner
can always reopen. Sans-IO on a real Circle in a home, then on real Zenoh."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import zenoh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.bus import keys
from accord.bus.settings import BusSettings, zenoh_config
from accord.clock import ManualClock
from accord.device.home import Home, init_home
from accord.errors import PairingError
from accord.trust import pairing
from accord.trust.circle import PAIRING_MAX_FAILURES, Circle
from accord.trust.pairing import (
    HANDSHAKE_ID_BYTES,
    JoinerInfo,
    Paired,
    PairReply,
    PairRequest,
    decode_reply,
    decode_request,
)
from accord.trust.pairing_host import HELLO_BURST, HostWindow
from accord.trust.pake import Host, Joiner, new_pin
from tests.nodes import Mesh, circle_of, pair, sees, wait_until

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
STRANGER = "mzxw6ytboi2dsnrrgezdgnbvgy"  # a well-formed id nobody owns


class Rig:
    """A pairing host: a home, its circle on a manual clock, and its window."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.clock = ManualClock()
        self.home = init_home(folder / "host", profile_name="laptop", name="host")
        self.circle = Circle(self.home, self.clock)
        self.paired: list[Paired] = []
        self.window = HostWindow(
            self.circle, self.home.identity, self.paired.append, now=self.clock.monotonic
        )
        self._homes = 0

    @property
    def id(self) -> str:
        return self.home.device_id

    @property
    def attempts(self) -> int:
        return self.circle.state.pairing_failures

    def open(self, seconds: float = 60) -> str:
        self.clock.advance(1.0)  # each window its own; the hello budget refills
        pin = new_pin()
        self.circle.open_pairing(pin, seconds)
        return pin

    def send(self, request: PairRequest | bytes) -> PairReply:
        raw = request if isinstance(request, bytes) else msgspec.msgpack.encode(request)
        return decode_reply(self.window.handle(raw))

    def new_home(self) -> Home:
        self._homes += 1
        return init_home(self.folder / f"joiner{self._homes}", profile_name="tablet")

    def hello(self, home: Home, pin: str) -> tuple[Joiner, PairReply]:
        joiner = Joiner(pin, home.device_id, self.id)
        reply = self.send(PairRequest(1, "hello", home.device_id, joiner.hello()))
        return joiner, reply

    def confirm(self, home: Home, joiner: Joiner, answer: PairReply) -> PairReply:
        confirm = joiner.on_challenge(answer.data)
        assert joiner.keys is not None
        info = JoinerInfo(home.identity.public_bytes, home.name, "tablet", "SL3")
        sealed = pairing._seal(joiner.keys.session, pairing._NONCE_JOINER, info)
        return self.send(
            PairRequest(1, "confirm", home.device_id, confirm + sealed, answer.handshake)
        )


@pytest.fixture
def rig(short_tmp: Path) -> Rig:
    return Rig(short_tmp)


def _silent_hello(rig: Rig, joiner_id: str = STRANGER, pin: str = "000000") -> PairReply:
    """A guesser's hello that is answered and then never confirmed nor aborted."""
    return rig.send(PairRequest(1, "hello", joiner_id, Joiner(pin, joiner_id, rig.id).hello()))


# --- what counts ----------------------------------------------------------------------


def test_every_answered_hello_counts_even_if_never_confirmed_or_aborted(rig: Rig) -> None:
    """The planted bug "count on abort instead of hello" fails here: these guessers
    test a PIN each from the challenge and never send anything else."""
    rig.open()
    for n in range(1, PAIRING_MAX_FAILURES + 1):
        reply = _silent_hello(rig)
        assert reply.ok
        assert len(reply.data) == 65
        assert rig.attempts == n  # counted (and saved) before it was sent
    assert not rig.circle.pairing_open()
    refused = _silent_hello(rig)
    assert not refused.ok
    assert "not accepting pairing" in refused.error
    assert rig.attempts == PAIRING_MAX_FAILURES


def test_abort_and_confirm_do_not_count_a_second_time(rig: Rig) -> None:
    pin = rig.open()
    home = rig.new_home()
    _, answer = rig.hello(home, "111111" if pin != "111111" else "222222")
    assert rig.attempts == 1
    abort = rig.send(PairRequest(1, "abort", home.device_id, b"", answer.handshake))
    assert abort.ok
    assert rig.attempts == 1
    _, answer = rig.hello(home, pin)
    assert rig.attempts == 2
    bad = rig.send(PairRequest(1, "confirm", home.device_id, b"\x00" * 40, answer.handshake))
    assert not bad.ok
    assert "wrong PIN" in bad.error
    assert rig.attempts == 2
    assert rig.circle.pairing_open()


GARBAGE_HELLOS = [
    b"",
    b"\xc1",
    b"\x93\x01\x02\x03",
    msgspec.msgpack.encode({"v": 1, "step": "hello"}),
    msgspec.msgpack.encode({"v": 1, "step": "jump", "joiner_id": STRANGER, "data": b""}),
    msgspec.msgpack.encode({"v": 1, "step": "hello", "joiner_id": "NOT-AN-ID", "data": b"x"}),
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"")),
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"A" * 32)),
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"A" * 34)),
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"A" + b"\xff" * 32)),  # no point
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"\x00" * 33)),  # unknown side
    msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, b"\x00" * 4097)),
]


def test_garbage_hellos_neither_count_nor_close_the_window(rig: Rig) -> None:
    pin = rig.open()
    for _ in range(3):
        for garbage in GARBAGE_HELLOS:
            assert not rig.send(garbage).ok
    # a host's own challenge reflected back as a hello tests nothing either
    challenge = Host(pin, rig.id).on_hello(STRANGER, Joiner(pin, STRANGER, rig.id).hello())
    assert not rig.send(PairRequest(1, "hello", STRANGER, challenge[:33])).ok
    assert rig.attempts == 0
    assert rig.circle.pairing_open()
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    assert rig.confirm(home, joiner, answer).ok
    assert [p.device_id for p in rig.paired] == [home.device_id]


def test_a_flood_of_garbage_hellos_costs_the_host_bounded_work(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hellos of the right shape that are not curve points test nothing and are not
    counted; each would cost the host curve arithmetic, so only HELLO_BURST (then
    HELLO_RATE a second) get that far."""
    pin = rig.open()
    worked: list[int] = []
    real_on_hello = Host.on_hello

    def counting(self: Host, joiner_id: str, data: bytes) -> bytes:
        worked.append(1)
        return real_on_hello(self, joiner_id, data)

    monkeypatch.setattr(Host, "on_hello", counting)
    not_a_point = b"A" + b"\xff" * 32
    replies = [rig.send(PairRequest(1, "hello", STRANGER, not_a_point)) for _ in range(200)]
    assert not any(r.ok for r in replies)
    assert len(worked) == HELLO_BURST
    assert rig.attempts == 0
    assert rig.circle.pairing_open()
    rig.clock.advance(1.0)  # a second later the real joiner gets through
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    assert rig.confirm(home, joiner, answer).ok


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_any_request_bytes_change_nothing(rig: Rig, data: bytes) -> None:
    rig.open()
    reply = rig.send(data)  # always a well-formed reply, never an exception
    assert rig.attempts == 0 or reply.ok
    assert rig.circle.pairing_open()


@FUZZ
@given(st.sampled_from([b"A", b"B", b"\x00"]), st.binary(min_size=32, max_size=32))
def test_fuzz_a_hello_counts_exactly_when_it_is_answered(
    rig: Rig, side: bytes, point: bytes
) -> None:
    """About half of all 32-byte strings are curve points: those hellos are answered
    and counted; every other one is refused and not counted."""
    hello = side + point
    pin = rig.open()
    try:
        Host(pin, rig.id).on_hello(STRANGER, hello)
        testable = True
    except PairingError:
        testable = False
    reply = rig.send(PairRequest(1, "hello", STRANGER, hello))
    assert reply.ok == testable
    assert rig.attempts == (1 if testable else 0)


# --- who may end a handshake ------------------------------------------------------------


@pytest.mark.parametrize(
    "handshake", [b"", b"\x00" * HANDSHAKE_ID_BYTES, b"guess"], ids=["none", "zeros", "short"]
)
def test_a_spoofed_abort_does_not_kill_a_real_handshake(rig: Rig, handshake: bytes) -> None:
    pin = rig.open()
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    assert len(answer.handshake) == HANDSHAKE_ID_BYTES
    # a stranger who saw the joiner's public id (its token) tries to end its handshake
    spoof = rig.send(PairRequest(1, "abort", home.device_id, b"", handshake))
    assert not spoof.ok
    stolen = rig.send(PairRequest(1, "confirm", home.device_id, b"\x00" * 32, handshake))
    assert not stolen.ok
    # the real id under another joiner's name does nothing either
    other = rig.send(PairRequest(1, "abort", STRANGER, b"", answer.handshake))
    assert not other.ok
    assert rig.confirm(home, joiner, answer).ok
    assert rig.circle.is_member(home.device_id)


def test_a_second_hello_in_the_joiners_name_does_not_replace_its_handshake(rig: Rig) -> None:
    pin = rig.open()
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    assert _silent_hello(rig, home.device_id).ok  # counted, but a handshake of its own
    assert rig.confirm(home, joiner, answer).ok
    assert rig.circle.is_member(home.device_id)


# --- one PIN, one device ----------------------------------------------------------------


@pytest.mark.parametrize("first", [0, 1])
def test_two_joiners_with_the_right_pin_only_one_is_admitted(rig: Rig, first: int) -> None:
    pin = rig.open()
    homes = [rig.new_home(), rig.new_home()]
    started = [rig.hello(h, pin) for h in homes]
    order = [first, 1 - first]
    results = [rig.confirm(homes[i], *started[i]) for i in order]
    assert [r.ok for r in results] == [True, False]
    assert "window closed" in results[1].error
    assert [p.device_id for p in rig.paired] == [homes[first].device_id]
    assert rig.circle.is_member(homes[first].device_id)
    assert not rig.circle.is_member(homes[1 - first].device_id)
    assert not rig.circle.pairing_open()


@pytest.mark.parametrize("how", ["expired", "closed", "reopened", "locked out"])
def test_a_handshake_cannot_complete_once_its_window_is_gone(rig: Rig, how: str) -> None:
    pin = rig.open(seconds=30)
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    if how == "expired":
        rig.clock.advance(31)
    elif how == "closed":
        rig.circle.close_pairing()
    elif how == "reopened":
        rig.clock.advance(1)
        rig.circle.open_pairing(pin, 30)  # even with the same PIN: a new window
    else:
        for _ in range(PAIRING_MAX_FAILURES - 1):
            _silent_hello(rig)
    reply = rig.confirm(home, joiner, answer)
    assert not reply.ok
    assert not rig.circle.is_member(home.device_id)


# --- the owner reopens ------------------------------------------------------------------


def test_the_owner_can_reopen_a_window_strangers_exhausted(rig: Rig) -> None:
    rig.open()
    for _ in range(PAIRING_MAX_FAILURES):
        assert _silent_hello(rig).ok  # four stay pending, the fifth closes the window
    assert not rig.circle.pairing_open()
    pin = rig.open()  # what `accord pair open` / `pair_window` do
    assert rig.attempts == 0
    assert rig.circle.pairing_open()
    assert rig.window.pending() == 0  # the strangers' handshakes do not block it
    home = rig.new_home()
    joiner, answer = rig.hello(home, pin)
    assert answer.ok
    assert rig.confirm(home, joiner, answer).ok


def test_a_new_window_starts_the_count_again(rig: Rig) -> None:
    rig.open()
    for _ in range(3):
        _silent_hello(rig)
    assert rig.attempts == 3
    rig.open()
    assert rig.attempts == 0
    for _ in range(PAIRING_MAX_FAILURES - 1):
        _silent_hello(rig)
    assert rig.circle.pairing_open()


# --- the joiner's side ------------------------------------------------------------------


def _asker(
    rig: Rig, stranger: Callable[[bytes], list[bytes]]
) -> Callable[[bytes], Awaitable[list[bytes]]]:
    """Replies to each request: the stranger's first, then the host's."""

    async def ask(payload: bytes) -> list[bytes]:
        return [*stranger(payload), rig.window.handle(payload)]

    return ask


async def test_the_joiner_takes_the_answers_that_prove_themselves(rig: Rig) -> None:
    pin = rig.open()
    home = rig.new_home()
    forger = Host("999999" if pin != "999999" else "888888", rig.id)

    def stranger(payload: bytes) -> list[bytes]:
        req = decode_request(payload)
        data = forger.on_hello(req.joiner_id, req.data) if req.step == "hello" else b"\x00" * 99
        answers = [PairReply(False, error="go away"), PairReply(True, data=data)]
        return [b"\xc1", *(msgspec.msgpack.encode(a) for a in answers)]

    joined = Circle(home, ManualClock())
    paired = await pairing.join(
        _asker(rig, stranger), joined, home.identity, rig.id, pin, "tab", "tablet", "SL3"
    )
    assert paired.device_id == rig.id
    assert joined.is_member(rig.id)
    assert rig.circle.is_member(home.device_id)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_pairing_decoders(data: bytes) -> None:
    for decode in (decode_request, decode_reply):
        with contextlib.suppress(PairingError):
            decode(data)


# --- on real Zenoh: a raw-Zenoh stranger ------------------------------------------------


def _raw_session(mesh: Mesh) -> zenoh.Session:
    return zenoh.open(zenoh_config(BusSettings(connect=tuple(mesh.endpoints), multicast=False)))


def _ask_raw(session: zenoh.Session, key: str, payload: bytes) -> list[bytes]:
    return [
        r.ok.payload.to_bytes()
        for r in session.get(key, payload=payload, timeout=2.0)
        if r.ok is not None
    ]


async def test_raw_zenoh_garbage_hellos_neither_count_nor_close_the_window(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
    session = _raw_session(mesh)
    try:
        key = keys.pair_key(host.home.device_id)
        loop = asyncio.get_running_loop()
        for garbage in GARBAGE_HELLOS * 2:
            answers = await loop.run_in_executor(None, _ask_raw, session, key, garbage)
            assert answers
            assert not decode_reply(answers[0]).ok
    finally:
        session.close()  # type: ignore[no-untyped-call]
    assert circle_of(host).state.pairing_failures == 0
    assert circle_of(host).pairing_open()
    await joiner.trust.pair_join({"device": host.name, "pin": pin})
    assert circle_of(host).is_member(joiner.home.device_id)


async def test_strangers_exhaust_a_window_and_pair_open_reopens_it(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    await host.trust.pair_window({"timeout": 60})
    session = _raw_session(mesh)
    try:
        key = keys.pair_key(host.home.device_id)
        loop = asyncio.get_running_loop()
        for _ in range(PAIRING_MAX_FAILURES):  # five guessers who never confirm
            hello = Joiner("000000", STRANGER, host.home.device_id).hello()
            request = msgspec.msgpack.encode(PairRequest(1, "hello", STRANGER, hello))
            answers = await loop.run_in_executor(None, _ask_raw, session, key, request)
            assert decode_reply(answers[0]).ok
    finally:
        session.close()  # type: ignore[no-untyped-call]
    assert circle_of(host).state.pairing_failures == PAIRING_MAX_FAILURES
    assert not circle_of(host).pairing_open()
    stream = host.trust.pair_open({"timeout": 30})  # what `accord pair open` runs
    opened = await anext(stream)
    assert circle_of(host).state.pairing_failures == 0
    joined = await joiner.trust.pair_join({"device": host.name, "pin": opened["pin"]})
    paired = await asyncio.wait_for(anext(stream), 5)
    assert paired["event"] == "paired"
    assert paired["code"] == joined["code"]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_raw_zenoh_spoofed_abort_does_not_kill_a_real_handshake(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    joiner = await mesh.start("joiner", "tablet")
    await wait_until(lambda: sees(joiner, host), 5, "presence")
    pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
    session = _raw_session(mesh)
    loop = asyncio.get_running_loop()
    key = keys.pair_key(host.home.device_id)
    me = joiner.home.device_id
    real_ask = joiner.trust._ask_all
    spoofed: list[PairReply] = []

    async def ask(payload: bytes) -> list[bytes]:
        replies = await real_ask(key, payload)
        if decode_request(payload).step == "hello":
            # The moment the host answered, a stranger aborts "for" the joiner.
            for handshake in (b"", b"\x01" * HANDSHAKE_ID_BYTES):
                spoof = msgspec.msgpack.encode(PairRequest(1, "abort", me, b"", handshake))
                answers = await loop.run_in_executor(None, _ask_raw, session, key, spoof)
                spoofed.extend(decode_reply(a) for a in answers)
        return replies

    try:
        paired = await pairing.join(
            ask,
            circle_of(joiner),
            joiner.home.identity,
            host.home.device_id,
            pin,
            joiner.name,
            "tablet",
            "SL3",
        )
    finally:
        session.close()  # type: ignore[no-untyped-call]
    assert spoofed
    assert not any(r.ok for r in spoofed)
    assert paired.device_id == host.home.device_id
    assert circle_of(host).is_member(me)


async def test_two_real_joiners_racing_with_one_pin_only_one_is_admitted(mesh: Mesh) -> None:
    host = await mesh.start("host", "laptop")
    a = await mesh.start("a", "tablet")
    b = await mesh.start("b", "tv")
    await wait_until(lambda: sees(a, host) and sees(b, host), 5, "presence")
    pin = (await host.trust.pair_window({"timeout": 60}))["pin"]
    results = await asyncio.gather(
        a.trust.pair_join({"device": host.name, "pin": pin}),
        b.trust.pair_join({"device": host.name, "pin": pin}),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert all(isinstance(r, PairingError) for r in results if isinstance(r, BaseException))
    admitted = [n for n in (a, b) if circle_of(host).is_member(n.home.device_id)]
    assert len(admitted) == 1
    # the owner opens a new window for the other one
    other = b if admitted == [a] else a
    await pair(host, other)
    assert circle_of(host).is_member(other.home.device_id)


def test_a_request_of_another_protocol_version_is_refused_saying_so_and_counts_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    pin = rig.open()
    joiner = Joiner(pin, STRANGER, rig.id)
    reply = rig.send(PairRequest(2, "hello", STRANGER, joiner.hello()))
    assert not reply.ok
    assert "version 2" in reply.error
    assert reply.error_type == "Unsupported"
    assert rig.attempts == 0
    assert rig.circle.pairing_open()
    assert any("refused a pairing request" in r.getMessage() for r in caplog.records)


def test_every_refusal_says_its_kind_for_programs(rig: Rig) -> None:
    """``error_type`` tells a joiner (or a conformance client) why, without parsing the
    English of ``error``; a success carries none."""
    assert rig.send(b"\x00not msgpack").error_type == "Malformed"
    closed = rig.send(PairRequest(1, "hello", STRANGER, Joiner("123456", STRANGER, rig.id).hello()))
    assert (closed.ok, closed.error_type) == (False, "WindowClosed")
    pin = rig.open()
    assert rig.send(PairRequest(1, "hello", STRANGER, b"short")).error_type == "Malformed"
    me = rig.send(PairRequest(1, "hello", rig.id, Joiner(pin, rig.id, rig.id).hello()))
    assert me.error_type == "AlreadyMember"
    spoof = rig.send(PairRequest(1, "abort", STRANGER, b"", b"\x00" * HANDSHAKE_ID_BYTES))
    assert spoof.error_type == "NoHandshake"
    home = rig.new_home()
    _joiner, answer = rig.hello(home, pin)
    assert answer.ok
    assert not answer.error_type
    forged = PairRequest(1, "confirm", home.device_id, b"\x00" * 64, answer.handshake)
    assert rig.send(forged).error_type == "WrongPin"  # a confirmation made without the PIN
    assert set(pairing.REFUSALS) >= {"Unsupported", "Busy", "RevokedForGood", "Refused"}
