"""The refrigerator model: starts at setpoint, warms with the door open, recovers when it
shuts, follows setpoint changes, and depends only on the times it is given."""

from __future__ import annotations

import pytest

from accord.hardware.thermal import (
    CabinetReading,
    FridgeModel,
    SetpointOutOfRange,
    UnknownCabinet,
)
from accord.profile import Cabinet, load_builtin

CABINETS = load_builtin("midea-fridge").hardware.cabinets


def by_name(model: FridgeModel) -> dict[str, CabinetReading]:
    return {r.name: r for r in model.readings()}


def settled(now: float = 0.0) -> FridgeModel:
    """A model that has run ten quiet minutes, so it sits in its normal cycle."""
    model = FridgeModel(CABINETS, now=now)
    model.advance(now + 600)
    return model


def test_starts_at_setpoint_with_doors_shut() -> None:
    model = FridgeModel(CABINETS, now=100.0)
    assert model.readings() == [
        CabinetReading("fridge", 4.0, 4.0, door_open=False, compressor_on=False),
        CabinetReading("freezer", -18.0, -18.0, door_open=False, compressor_on=False),
    ]


def test_holds_setpoint_with_doors_shut() -> None:
    model = FridgeModel(CABINETS)
    for minute in range(1, 121):
        model.advance(minute * 60)
        for reading in model.readings():
            assert abs(reading.temperature_c - reading.setpoint_c) <= 0.6


def test_open_door_warms_that_cabinet_and_closing_recovers() -> None:
    model = settled()
    before = by_name(model)
    model.set_door("fridge", True)
    model.advance(660)
    opened = by_name(model)
    assert opened["fridge"].door_open
    assert opened["fridge"].temperature_c >= before["fridge"].temperature_c + 2.0
    assert opened["fridge"].compressor_on
    assert abs(opened["freezer"].temperature_c - before["freezer"].temperature_c) <= 1.0

    model.set_door("fridge", False)
    model.advance(660 + 180)
    assert abs(by_name(model)["fridge"].temperature_c - 4.0) <= 1.0


def test_setpoint_change_drives_temperature() -> None:
    model = settled()
    model.set_setpoint("fridge", 1.0)
    model.advance(600 + 300)
    assert by_name(model)["fridge"].setpoint_c == 1.0
    assert by_name(model)["fridge"].temperature_c <= 1.6
    model.set_setpoint("fridge", 8.0)
    model.advance(600 + 300 + 3600)
    assert abs(by_name(model)["fridge"].temperature_c - 8.0) <= 0.6


@pytest.mark.parametrize(
    ("cabinet", "value"),
    [("fridge", 0.9), ("fridge", 8.5), ("freezer", -30.0), ("freezer", float("nan"))],
)
def test_out_of_range_setpoint_is_refused(cabinet: str, value: float) -> None:
    model = FridgeModel(CABINETS)
    with pytest.raises(SetpointOutOfRange, match=rf"{cabinet}.*allowed range") as info:
        model.set_setpoint(cabinet, value)
    assert isinstance(info.value, ValueError)
    assert info.value.cabinet == cabinet
    assert by_name(model)[cabinet].setpoint_c in (4.0, -18.0)


def test_unknown_cabinet_is_refused() -> None:
    model = FridgeModel(CABINETS)
    with pytest.raises(UnknownCabinet) as info:
        model.set_setpoint("crisper", 3.0)
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no cabinet 'crisper'; this refrigerator has: fridge, freezer"
    with pytest.raises(UnknownCabinet):
        model.set_door("crisper", True)


def test_one_long_advance_equals_many_short_ones() -> None:
    def script(model: FridgeModel, times: list[float]) -> list[CabinetReading]:
        events = {300: ("fridge", True), 360: ("fridge", False), 900: ("freezer", True)}
        last = 0.0
        for now in times:
            for at, (cabinet, is_open) in events.items():
                if last < at <= now:
                    model.advance(at)
                    model.set_door(cabinet, is_open)
            model.advance(now)
            last = now
        return model.readings()

    coarse = script(FridgeModel(CABINETS, now=0.25), [300, 360, 900, 1800.25])
    fine = script(FridgeModel(CABINETS, now=0.25), [*(t * 0.7 for t in range(1, 2572)), 1800.25])
    assert fine == coarse


def test_time_going_backwards_is_ignored() -> None:
    model = settled()
    model.set_door("fridge", True)
    model.advance(660)
    after = model.readings()
    model.advance(100)
    assert model.readings() == after
    model.advance(660)
    assert model.readings() == after


def test_construction_refuses_duplicates_and_bad_time() -> None:
    fridge = Cabinet(name="fridge", setpoint_min_c=1, setpoint_max_c=8, setpoint_c=4)
    with pytest.raises(ValueError, match="unique"):
        FridgeModel([fridge, fridge])
    with pytest.raises(ValueError, match="finite"):
        FridgeModel([fridge], now=float("inf"))
    with pytest.raises(ValueError, match="finite"):
        FridgeModel([fridge]).advance(float("nan"))
