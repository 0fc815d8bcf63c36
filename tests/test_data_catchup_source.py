"""Which member a returning device catches up from: the writer of what it lacks,
when that writer is online and answers within WRITER_WAIT_MS.

A source's own rows need no proof checked and are kept without their leaves; rows it
relays for another member cost the returning device about a third more. So when a
member that only relays the rows offers them first, the writer is asked and awaited
a moment. The wait must never stop a catch-up: a writer offline, silent or with
nothing more is waited for at most once. Pure: replicas in memory, one manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from accord.data import Replica
from accord.data.limits import WRITER_WAIT_BATCHES
from accord.data.loopback import deliver_all
from accord.data.model import DATA_VERSION, Pull, Summary
from accord.data.provenance import Material
from accord.data.receiving import WRITER_WAIT_MS
from accord.device.identity import Identity
from tests.test_data_provenance import House

PHONE, TABLET, FRIDGE = (Identity.generate() for _ in range(3))
IDS = {i.device_id: i for i in (PHONE, TABLET, FRIDGE)}
P, T, F = PHONE.device_id, TABLET.device_id, FRIDGE.device_id


@pytest.fixture
def house() -> Iterator[House]:
    """The phone wrote WRITER_WAIT_BATCHES batches while the fridge was away; the
    tablet got them pushed. The fridge is back and sees both online."""
    h = House(IDS)
    for n in range(WRITER_WAIT_BATCHES):
        with h.r[P].batch() as b:
            for k in range(4):
                b.put(f"k{n}-{k}", b"phone")
    h.push(P, T)
    for peer in (P, T):
        h.r[F].peer_online(peer)
    yield h
    h.close()


def _offer(house: House, sender: str) -> list[tuple[str, object]]:
    """``sender`` tells the fridge what it has (as on meeting it): what the fridge
    sends back, and to whom."""
    summary = house.r[sender].summary(ask=True)
    out: list[tuple[str, object]] = [(sender, m) for m in house.r[F].receive(sender, summary)]
    return out + list(house.r[F].take_pulls())


def _material_is_lazy(replica: Replica, origin: str, seq: int) -> bool:
    blob = replica._file.material(origin, seq)
    return blob is not None and msgspec.msgpack.decode(blob, type=Material).rows


def test_a_relayer_offering_first_waits_while_the_writer_is_asked(house: House) -> None:
    sent = _offer(house, T)
    assert not any(isinstance(m, Pull) for _to, m in sent)
    asks = [to for to, m in sent if isinstance(m, Summary) and m.ask]
    assert asks == [P]  # the writer is asked what it has
    assert house.r[F].wake_ms() == WRITER_WAIT_MS
    sent = _offer(house, P)  # the writer answers: it is the source
    pulls = [(to, m) for to, m in sent if isinstance(m, Pull)]
    assert [to for to, _m in pulls] == [P]
    deliver_all(house.r, [(F, P, pulls[0][1])])
    assert house.r[F].get(f"k{WRITER_WAIT_BATCHES - 1}-3") == b"phone"
    assert house.r[F].version_vector()[P] == WRITER_WAIT_BATCHES
    assert house.r[F].catching_up() is None
    assert _material_is_lazy(house.r[F], P, 1)  # its own rows: no leaf hashed


def test_a_writer_that_does_not_answer_is_waited_for_once(house: House) -> None:
    _offer(house, T)
    house.clock.advance((WRITER_WAIT_MS - 1) / 1000)
    house.r[F].tick()
    assert house.r[F].take_pulls() == []  # still waiting
    house.clock.advance(1 / 1000)
    house.r[F].tick()
    pulls = house.r[F].take_pulls()
    assert [to for to, m in pulls if isinstance(m, Pull)] == [T]
    assert house.r[F].wake_ms() is None
    deliver_all(house.r, [(F, T, pulls[0][1])])
    assert house.r[F].version_vector()[P] == WRITER_WAIT_BATCHES  # relayed, proven
    for n in range(WRITER_WAIT_BATCHES):  # more of the phone's, relayed: no new wait
        with house.r[P].batch() as b:
            b.put(f"later{n}", b"phone")
    house.push(P, T)
    house.clock.advance(5.0)  # long after the pushes arrived
    assert [to for to, m in _offer(house, T) if isinstance(m, Pull)] == [T]


def test_a_writer_with_nothing_more_ends_the_wait_at_once(house: House) -> None:
    _offer(house, T)
    empty = Summary(DATA_VERSION, "bank", {})  # e.g. it lost its file
    house.r[F].receive(P, empty)
    assert [to for to, m in house.r[F].take_pulls() if isinstance(m, Pull)] == [T]


def test_a_writer_gone_offline_is_not_waited_for(house: House) -> None:
    house.r[F].peer_gone(P)
    assert [to for to, m in _offer(house, T) if isinstance(m, Pull)] == [T]
    assert house.r[F].wake_ms() is None


def test_a_writer_not_yet_seen_online_is_awaited_but_not_asked(house: House) -> None:
    """A node that just started hears offers before it learns who is online: the
    writer may well be, and asks us as it sees us."""
    house.r[F]._online.discard(P)
    sent = _offer(house, T)
    assert sent == []
    assert house.r[F].wake_ms() == WRITER_WAIT_MS
    assert [to for to, m in _offer(house, P) if isinstance(m, Pull)] == [P]


def test_a_few_relayed_batches_are_not_worth_a_wait() -> None:
    """A catch-up lacking fewer than WRITER_WAIT_BATCHES of the writer's batches
    takes the first member that offers them."""
    small = House(IDS)
    try:
        for n in range(WRITER_WAIT_BATCHES - 1):
            small.r[P].put(f"k{n}", b"phone")
        small.push(P, T)
        for peer in (P, T):
            small.r[F].peer_online(peer)
        assert [to for to, m in _offer(small, T) if isinstance(m, Pull)] == [T]
        assert small.r[F].wake_ms() is None
    finally:
        small.close()


def test_the_writer_offering_first_is_pulled_from_at_once(house: House) -> None:
    assert [to for to, m in _offer(house, P) if isinstance(m, Pull)] == [P]
    assert [to for to, m in _offer(house, T) if isinstance(m, Pull)] == []  # waits its turn


def test_a_catch_up_begun_from_anyone_ends_the_wait(house: House) -> None:
    """However a source is chosen (here directly), no writer is awaited beside it: a
    wait left behind a catch-up in flight would keep the node's early tick due."""
    _offer(house, T)
    assert house.r[F].wake_ms() == WRITER_WAIT_MS
    house.r[F].pull_from(T)
    assert house.r[F].wake_ms() is None


def test_a_member_cannot_make_it_wait_for_a_stranger_nor_repeat_itself_into_a_pull(
    house: House,
) -> None:
    """Hostile offers: a vector claiming many batches of a device outside the circle
    starts no wait (and asks no stranger); the relayer offering again while the
    writer is awaited is not pulled from, and the wait is not extended."""
    stranger = Identity.generate().device_id
    forged = Summary(DATA_VERSION, "bank", {stranger: 10**6}, ask=True)
    sent = [(T, m) for m in house.r[F].receive(T, forged)] + house.r[F].take_pulls()
    assert not any(isinstance(m, (Pull, Summary)) and to == stranger for to, m in sent)
    assert house.r[F].wake_ms() is None
    _offer(house, T)
    house.clock.advance(0.1)
    assert [m for _to, m in _offer(house, T) if isinstance(m, Pull)] == []
    assert house.r[F].wake_ms() == WRITER_WAIT_MS - 100
