"""Placement: the documented order (mains, display, load bucket, name, id), refusals
that say why, and a failover choice every device computes the same way."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.apps import (
    AppManifest,
    Candidate,
    NoPlacement,
    choose,
    failover_successor,
    missing,
    rank,
    score,
)
from accord.apps.placement import load_bucket

CAPS = ["display", "speaker", "camera", "door-sensor", "battery", "sensors"]


def app(*requires: str, prefer_display: bool = False) -> AppManifest:
    return AppManifest(
        id="com.example.app",
        version="1",
        entry="app",
        requires=list(requires),
        prefer_display=prefer_display,
    )


def dev(
    name: str,
    *caps: str,
    mains: bool = True,
    load: float = 0.0,
    inches: float = 0.0,
    online: bool = True,
    device_id: str | None = None,
) -> Candidate:
    return Candidate(
        device_id=device_id or f"id-{name}",
        name=name,
        capabilities=list(caps),
        mains=mains,
        load=load,
        display_inches=inches,
        online=online,
    )


def names(candidates: list[Candidate]) -> list[str]:
    return [c.name for c in candidates]


def test_missing_lists_requirements_in_manifest_order() -> None:
    m = app("camera", "display", "speaker")
    assert missing(m, dev("tv", "speaker", "display")) == ["camera"]
    assert missing(m, dev("box")) == ["camera", "display", "speaker"]
    assert missing(m, dev("phone", *CAPS)) == []


def test_only_online_capable_candidates_rank() -> None:
    m = app("camera")
    ranked = rank(
        m, [dev("tv", "display"), dev("phone", "camera", online=False), dev("cam", "camera")]
    )
    assert names(ranked) == ["cam"]


def test_mains_beats_battery() -> None:
    m = app("display")
    laptop = dev("laptop", "display", mains=False, load=0.0, inches=16)
    tv = dev("tv", "display", mains=True, load=0.9, inches=10)
    assert names(rank(m, [laptop, tv])) == ["tv", "laptop"]


def test_display_size_matters_when_display_is_wanted() -> None:
    small = dev("small", "display", load=0.0, inches=6)
    big = dev("big", "display", load=0.5, inches=55)
    assert names(rank(app("display"), [small, big])) == ["big", "small"]
    assert names(rank(app(prefer_display=True), [small, big])) == ["big", "small"]
    # Not wanted: load decides.
    assert names(rank(app(), [small, big])) == ["small", "big"]


def test_load_is_compared_in_buckets() -> None:
    m = app()
    b = dev("b", load=0.21)
    a = dev("a", load=0.24)  # same 0.20-0.25 bucket: the name decides
    assert names(rank(m, [b, a])) == ["a", "b"]
    a_busier = dev("a", load=0.26)
    assert names(rank(m, [a_busier, b])) == ["b", "a"]


def test_load_bucket_edges() -> None:
    assert load_bucket(0.0) == 0
    assert load_bucket(0.049) == 0
    assert load_bucket(0.05) == 1
    assert load_bucket(0.15) == 3
    assert load_bucket(1.0) == 20
    assert load_bucket(7.5) == 20
    assert load_bucket(-1.0) == 0
    assert load_bucket(math.nan) == 20


def test_name_then_device_id_break_ties() -> None:
    m = app()
    x2 = dev("x", device_id="2")
    x1 = dev("x", device_id="1")
    w = dev("w", device_id="9")
    assert [c.device_id for c in rank(m, [x2, x1, w])] == ["9", "1", "2"]


def test_score_is_the_documented_tuple() -> None:
    c = dev("tv", "display", mains=False, load=0.33, inches=55)
    assert score(app("display"), c) == (1, -55.0, 6, "tv", "id-tv")
    assert score(app(), c) == (1, 0.0, 6, "tv", "id-tv")


def test_choose_picks_the_best() -> None:
    m = app("speaker")
    speaker = dev("speaker", "speaker", load=0.5)
    tv = dev("tv", "speaker", "display", load=0.1)
    assert choose(m, [speaker, tv]).name == "tv"
    assert choose(m, [speaker, tv], exclude={"id-tv"}).name == "speaker"


def test_no_placement_says_why_for_each_device() -> None:
    m = app("camera")
    candidates = [
        dev("tv", "display"),
        dev("phone", "camera", online=False),
        dev("laptop", "camera"),
    ]
    with pytest.raises(NoPlacement) as info:
        choose(m, candidates, exclude=["id-laptop"])
    message = str(info.value)
    assert "no device can run com.example.app" in message
    assert "tv: lacks camera" in message
    assert "phone: offline" in message
    assert "laptop: excluded" in message
    assert "bring online a device with camera" in message
    assert dict(info.value.reasons) == {
        "id-tv": "lacks camera",
        "id-phone": "offline",
        "id-laptop": "excluded",
    }


def test_no_placement_lists_every_missing_capability() -> None:
    with pytest.raises(NoPlacement, match="fridge: lacks camera, speaker"):
        choose(app("camera", "speaker"), [dev("fridge", "door-sensor")])


def test_no_candidates_at_all() -> None:
    with pytest.raises(NoPlacement, match="no devices are known"):
        choose(app(), [])


def test_failover_successor_skips_previous() -> None:
    m = app("display")
    tv = dev("tv", "display", inches=55)
    tablet = dev("tablet", "display", inches=11)
    assert failover_successor(m, [tv, tablet], previous="id-tv") == tablet
    assert failover_successor(m, [tv, tablet], previous="id-tablet") == tv
    assert failover_successor(m, [tv], previous="id-tv") is None
    assert failover_successor(m, [tv, dev("radio", "speaker")], previous="id-tv") is None


def test_only_members_that_may_hold_the_state_label_are_eligible() -> None:
    """An S3 app never goes to the SL1 fridge or the SL2 TV, though both rank first
    on power and display; the default level of a candidate is the lowest."""
    m = msgspec.structs.replace(app(), state_label="S3")
    fridge = msgspec.structs.replace(dev("fridge"), level="SL1")
    tv = msgspec.structs.replace(dev("tv", inches=55), level="SL2")
    tablet = msgspec.structs.replace(dev("tablet", mains=False), level="SL3")
    phone = msgspec.structs.replace(dev("phone", mains=False), level="SL4")
    assert names(rank(m, [fridge, tv, tablet, phone])) == ["phone", "tablet"]
    assert failover_successor(m, [fridge, tv, tablet, phone], previous="id-phone") == tablet
    assert rank(m, [dev("unknown")]) == []
    with pytest.raises(NoPlacement, match="fridge: SL1 may not hold S3 state"):
        choose(m, [fridge])
    assert names(rank(app(), [fridge, tv])) == ["fridge", "tv"]  # S1: anyone


def test_max_level_keeps_an_app_at_or_below_its_authority() -> None:
    """A checkpoint granted by an SL3 member fails over to SL3 and below only."""
    m = app()
    fridge = msgspec.structs.replace(dev("fridge", mains=False), level="SL1")
    tablet = msgspec.structs.replace(dev("tablet", mains=False), level="SL3")
    laptop = msgspec.structs.replace(dev("laptop"), level="SL4")
    view = [fridge, tablet, laptop]
    assert failover_successor(m, view, previous="x") == laptop
    assert failover_successor(m, view, previous="x", max_level="SL3") == fridge
    assert failover_successor(m, view, previous="x", max_level="SL1") == fridge
    assert failover_successor(m, view, previous="id-fridge", max_level="SL1") is None
    with pytest.raises(NoPlacement, match="laptop: SL4 is above SL3"):
        choose(m, [laptop], max_level="SL3")


# --- determinism under any input order ---------------------------------------------------

candidate_st = st.builds(
    Candidate,
    device_id=st.just(""),
    name=st.sampled_from(["tv", "phone", "laptop", "fridge", "tablet"]),
    capabilities=st.lists(st.sampled_from(CAPS), unique=True),
    mains=st.booleans(),
    load=st.one_of(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([math.nan, -0.5, 3.0])),
    display_inches=st.sampled_from([0.0, 6.1, 11.0, 55.0]),
    online=st.booleans(),
)


@st.composite
def views(draw: st.DrawFn) -> tuple[list[Candidate], list[Candidate]]:
    """A list of candidates with unique ids, and a shuffled copy of it."""
    drawn = draw(st.lists(candidate_st, max_size=8))
    candidates = [msgspec.structs.replace(c, device_id=f"dev{i:02d}") for i, c in enumerate(drawn)]
    return candidates, draw(st.permutations(candidates))


manifests = st.builds(
    lambda requires, prefer: app(*requires, prefer_display=prefer),
    st.lists(st.sampled_from(CAPS), unique=True, max_size=2),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(manifest=manifests, view=views())
def test_rank_and_failover_ignore_input_order(
    manifest: AppManifest, view: tuple[list[Candidate], list[Candidate]]
) -> None:
    candidates, shuffled = view
    ranked = rank(manifest, candidates)
    assert rank(manifest, shuffled) == ranked
    for c in candidates:
        successor = failover_successor(manifest, candidates, previous=c.device_id)
        assert failover_successor(manifest, shuffled, previous=c.device_id) == successor
        assert successor is None or successor.device_id != c.device_id
        expected = [r for r in ranked if r.device_id != c.device_id]
        assert successor == (expected[0] if expected else None)


@settings(max_examples=200, deadline=None)
@given(manifest=manifests, view=views())
def test_rank_keeps_exactly_the_eligible_in_score_order(
    manifest: AppManifest, view: tuple[list[Candidate], list[Candidate]]
) -> None:
    candidates, _ = view
    ranked = rank(manifest, candidates)
    assert {c.device_id for c in ranked} == {
        c.device_id for c in candidates if c.online and not missing(manifest, c)
    }
    scores = [score(manifest, c) for c in ranked]
    assert scores == sorted(scores)
    if ranked:
        assert choose(manifest, candidates) == ranked[0]
    else:
        with pytest.raises(NoPlacement):
            choose(manifest, candidates)


def test_duplicate_device_ids_stay_deterministic() -> None:
    m = app()
    a = dev("x", load=0.101, device_id="same")
    b = dev("x", load=0.102, device_id="same")
    assert rank(m, [a, b]) == rank(m, [b, a])
