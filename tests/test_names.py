"""The one device-name matcher (``accord.bus.names``): the rules in order, ambiguity,
and short queries that must never select a device by its id."""

from __future__ import annotations

import string
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.bus.names import MIN_ID_PREFIX, AmbiguousDevice, match_device
from accord.errors import AccordError


@dataclass(frozen=True)
class Dev:
    device_id: str
    name: str
    type: str


PHONE = Dev("lqx3ab7tmd2vnewk5r6hyzcpfa", "Nokia X60", "phone")
TV = Dev("w7kq2mzt4bcdx5ryhvn3ela6pg", "Living-room TV", "tv")
FRIDGE = Dev("b4rt6mzqk2nd7xvhwcy3ep5lja", "Midea Refrigerator", "refrigerator")
LAPTOP = Dev("ltm4q7xz2kbvn6rcd3hwye5pfa", "Laptop", "laptop")
HOUSE = [PHONE, TV, FRIDGE, LAPTOP]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Living-room TV", TV),  # exact name
        ("living-room tv", TV),  # ... ignoring case
        ("  Nokia X60 ", PHONE),  # ... and surrounding blanks
        (TV.device_id, TV),  # exact id
        (TV.device_id.upper(), TV),
        ("living", TV),  # unique name prefix
        ("NOKIA", PHONE),
        ("tv", TV),  # the profile's type: `accord call tv ...`
        ("TV", TV),
        ("refrigerator", FRIDGE),
        ("fridge", FRIDGE),  # an everyday word for the type
        ("television", TV),
        ("phone", PHONE),
        (TV.device_id[:MIN_ID_PREFIX], TV),  # id prefix of 4+ characters
        (FRIDGE.device_id[:8], FRIDGE),
    ],
)
def test_each_rule_names_the_expected_device(query: str, expected: Dev) -> None:
    assert match_device(query, HOUSE) == expected


@pytest.mark.parametrize("query", ["", "   ", "watch", "Kitchen", "xyz1", "Nokia X60 Pro"])
def test_a_name_that_matches_nothing_is_none(query: str) -> None:
    assert match_device(query, HOUSE) is None


@pytest.mark.parametrize("query", ["l", "lq", "lqx", "w", "w7k", "b4r"])
def test_one_to_three_characters_of_an_id_never_select_a_device(query: str) -> None:
    # "l" would revoke the phone (id "lqx3...") with a plain id-prefix rule; here it
    # matches the Laptop by name only when no other name starts with it.
    found = None
    try:
        found = match_device(query, [PHONE, TV, FRIDGE])
    except AmbiguousDevice:
        pytest.fail(f"{query!r} was taken as an id prefix")
    assert found is None or found.name.casefold().startswith(query)


def test_a_one_letter_name_prefix_shared_by_two_names_is_ambiguous() -> None:
    with pytest.raises(AmbiguousDevice) as caught:
        match_device("l", HOUSE)  # Laptop and Living-room TV
    assert {name for name, _ in caught.value.candidates} == {"Laptop", "Living-room TV"}


def test_ambiguity_lists_every_candidate_with_a_short_id() -> None:
    tablets = [Dev("aaaa" + c * 22, f"Tablet {c}", "tablet") for c in "xyz"]
    with pytest.raises(AmbiguousDevice) as caught:
        match_device("tablet", [*tablets, PHONE])
    err = caught.value
    assert isinstance(err, AccordError)  # the CLI prints it as one clear line
    assert sorted(err.candidates) == sorted((t.name, t.device_id) for t in tablets)
    for t in tablets:
        assert f"{t.name} ({t.device_id[:10]})" in str(err)
    with pytest.raises(AmbiguousDevice):
        match_device("aaaa", tablets)  # an id prefix shared by all three


def test_an_exact_name_wins_over_a_longer_name_it_prefixes() -> None:
    tv, tv2 = Dev("c" * 26, "TV", "tv"), Dev("d" * 26, "TV 2", "tv")
    assert match_device("tv", [tv, tv2]) == tv
    assert match_device("TV 2", [tv, tv2]) == tv2


def test_a_name_wins_over_a_type_and_an_id() -> None:
    kitchen = Dev("e" * 26, "Kitchen", "tv")
    named_tv = Dev("tvzz" + "f" * 22, "tv", "laptop")  # a laptop its owner calls "tv"
    assert match_device("tv", [kitchen, named_tv]) == named_tv
    assert match_device("tvzz", [kitchen, named_tv]) == named_tv


# -- properties ---------------------------------------------------------------

ID_ALPHABET = string.ascii_lowercase + "234567"
ids = st.text(ID_ALPHABET, min_size=26, max_size=26)
names = st.text(string.ascii_letters + string.digits + " -", min_size=1, max_size=20).filter(
    lambda n: n.strip() != ""
)
types = st.sampled_from(["phone", "tablet", "laptop", "tv", "refrigerator", "x-acme-lamp"])
devices = st.lists(
    st.builds(Dev, ids, names, types), min_size=1, max_size=8, unique_by=lambda d: d.device_id
)


def _names_it(query: str, d: Dev) -> bool:
    """Whether ``query`` names ``d`` by anything but an id prefix."""
    q = query.strip().casefold()
    return (
        d.name.strip().casefold().startswith(q)
        or d.device_id == q
        or d.type == {"fridge": "refrigerator", "television": "tv"}.get(q, q)
    )


def _outcome(query: str, pool: list[Dev]) -> list[Dev]:
    """The devices ``query`` selects: one, none, or every candidate of an ambiguity."""
    ambiguous: AmbiguousDevice | None = None
    try:
        found = match_device(query, pool)
    except AmbiguousDevice as exc:
        ambiguous, found = exc, None
    if ambiguous is None:
        return [] if found is None else [found]
    candidates = ambiguous.candidates
    assert len(candidates) >= 2
    assert len(set(candidates)) == len(candidates)
    for name, device_id in candidates:
        assert f"{name} ({device_id[:10]})" in str(ambiguous)
    return [d for d in pool if (d.name, d.device_id) in candidates]


@settings(deadline=None)
@given(devices, st.text(ID_ALPHABET, min_size=1, max_size=MIN_ID_PREFIX - 1))
def test_a_short_query_never_matches_by_id_prefix(pool: list[Dev], query: str) -> None:
    assert all(_names_it(query, d) for d in _outcome(query, pool))


@settings(deadline=None)
@given(devices, st.data())
def test_an_exact_name_wins_unless_two_devices_share_it(
    pool: list[Dev], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(pool))
    query = data.draw(st.sampled_from([target.name, target.name.upper(), target.name.lower()]))
    same = [d for d in pool if d.name.strip().casefold() == target.name.strip().casefold()]
    if len(same) == 1:
        assert match_device(query, pool) == target
    else:
        with pytest.raises(AmbiguousDevice) as caught:
            match_device(query, pool)
        assert set(caught.value.candidates) == {(d.name, d.device_id) for d in same}


@settings(deadline=None)
@given(devices, st.data())
def test_an_ambiguous_match_lists_every_device_its_rule_matched(
    pool: list[Dev], data: st.DataObject
) -> None:
    query = data.draw(st.text(string.ascii_letters + string.digits + " -", max_size=8))
    selected = _outcome(query, pool)  # checks the candidates of an ambiguity
    assert all(d in pool for d in selected)


@settings(deadline=None)
@given(devices, st.data())
def test_every_device_is_named_by_its_full_id_unless_a_name_says_otherwise(
    pool: list[Dev], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(pool))
    if any(d.name.strip().casefold() == target.device_id for d in pool):
        return  # a name equal to an id is taken as the name first
    assert match_device(target.device_id, pool) == target
