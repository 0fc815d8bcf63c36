"""The hardware commands between real node processes on 127.0.0.1: a laptop uses the
phone's camera, the refrigerator's cabinets and the TV's display."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from accord.sim.household import Household
from tests.helpers import accord, accord_json, device, running_household, wait_sees_all


@pytest.fixture(scope="module")
def house() -> Iterator[Household]:
    yield from running_household(["laptop", "nokia-x60", "midea-fridge", "tv"], "acc-hw-")


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_threads() -> None:
    return  # the household outlives each test on purpose: it is shared by the module


def test_capture_saves_a_jpeg(house: Household, tmp_path: Path) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    photo = tmp_path / "photo.jpg"
    proc = accord(
        "capture", phone.name, "-o", str(photo), "--resolution", "1600x1200",
        "--home", str(laptop.home), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["width"], summary["height"]) == (1600, 1200)
    assert photo.stat().st_size == summary["bytes"]
    with Image.open(photo) as img:
        assert img.size == (1600, 1200)
    assert not (tmp_path / "photo.jpg.part").exists()
    bad = accord("capture", phone.name, "-o", str(tmp_path / "x.jpg"), "-r", "big",
                 "--home", str(laptop.home))  # fmt: skip
    assert bad.returncode == 1
    assert "WIDTHxHEIGHT" in bad.stderr
    too_big = accord("capture", phone.name, "-o", str(tmp_path / "y.jpg"), "-r", "30000x20000",
                     "--home", str(laptop.home))  # fmt: skip
    assert too_big.returncode == 1
    assert "at most" in too_big.stderr
    assert not (tmp_path / "y.jpg").exists()
    assert not (tmp_path / "y.jpg.part").exists()


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_capture_uses_a_devices_only_camera(house: Household, tmp_path: Path) -> None:
    laptop = device(house, "laptop")  # one camera, at the front
    photo = tmp_path / "me.jpg"
    summary = accord_json("capture", laptop.name, "-o", str(photo), "--home", str(laptop.home))
    assert (summary["width"], summary["height"]) == (1632, 1224)  # its full 2 MP
    assert photo.stat().st_size == summary["bytes"]
    wrong = accord("capture", laptop.name, "-o", str(photo), "--camera", "rear",
                   "--home", str(laptop.home))  # fmt: skip
    assert "no 'rear' camera here; cameras: front" in one_error_line(wrong)


def test_hardware_a_device_lacks_names_the_devices_that_have_it(
    house: Household, tmp_path: Path
) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    fridge, tv = device(house, "midea-fridge"), device(house, "tv")
    where = ("--home", str(laptop.home))
    lacks = {
        ("sensors", laptop.name): f"{laptop.name} has no sensors; "
        f"devices with sensors: {fridge.name}, {phone.name}",
        ("sensors", laptop.name, "--watch"): f"{laptop.name} has no sensors; "
        f"devices with sensors: {fridge.name}, {phone.name}",
        ("show", fridge.name, "hello"): f"{fridge.name} has no display; "
        f"devices with a display: {laptop.name}, {tv.name}, {phone.name}",
        ("capture", tv.name, "-o", str(tmp_path / "x.jpg")): f"{tv.name} has no camera; "
        f"devices with a camera: {laptop.name}, {phone.name}",
        ("setpoint", laptop.name, "fridge", "3"): f"{laptop.name} has no temperature control; "
        f"devices with temperature control: {fridge.name}",
    }
    for args, says in lacks.items():
        assert one_error_line(accord(*args, *where)) == f"error: {says}", args


def test_show_text_on_the_tv(house: Household) -> None:
    laptop, tv = device(house, "laptop"), device(house, "tv")
    shown = accord_json("show", tv.name, "Dinner is ready", "--home", str(laptop.home))
    assert shown["kind"] == "text"
    current = accord_json("call", tv.name, "display.current", "--home", str(laptop.home))
    assert current["text"] == "Dinner is ready"
    assert current["by"] == laptop.device_id
    marked_up = accord("show", tv.name, "[/bold] tea [red]", "--home", str(laptop.home))
    assert marked_up.returncode == 0, marked_up.stderr
    assert marked_up.stdout == f"{tv.name} shows: [/bold] tea [red]\n"  # as typed
    neither = accord("show", tv.name, "--home", str(laptop.home))
    assert neither.returncode == 1
    assert "exactly one" in neither.stderr


def test_show_an_image_at_the_size_limit(house: Household, tmp_path: Path) -> None:
    laptop, tv = device(house, "laptop"), device(house, "tv")
    image = tmp_path / "limit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(640 * 1024 - 8))  # exactly 640 KiB
    shown = accord_json("show", tv.name, "--image", str(image), "--home", str(laptop.home))
    assert (shown["kind"], shown["image_type"]) == ("image", "image/png")


def test_sensors_and_setpoint_on_the_fridge(house: Household) -> None:
    laptop, fridge = device(house, "laptop"), device(house, "midea-fridge")
    where = ("--home", str(laptop.home))
    reading = accord_json("sensors", fridge.name, *where)
    assert {c["name"] for c in reading["cabinets"]} == {"fridge", "freezer"}
    table = accord("sensors", fridge.name, *where)
    assert table.returncode == 0, table.stderr
    assert "freezer" in table.stdout
    assert "°C" in table.stdout
    changed = accord_json("setpoint", fridge.name, "freezer", "-20", *where)
    assert changed["setpoint_c"] == -20
    out_of_range = accord("setpoint", fridge.name, "freezer", "-40", *where)
    assert out_of_range.returncode == 1
    assert "outside its allowed range -24..-15" in out_of_range.stderr
    assert accord_json("call", fridge.name, "thermostat.setpoints", *where)[1]["setpoint_c"] == -20


def test_sensors_watch_streams_door_changes(house: Household) -> None:
    laptop, fridge = device(house, "laptop"), device(house, "midea-fridge")
    with subprocess.Popen(
        [sys.executable, "-m", "accord", "sensors", fridge.name, "--watch", "--json",
         "--interval", "0.1", "--home", str(laptop.home)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as watcher:  # fmt: skip
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())
        assert first["doors"]["fridge"] is False
        opened = accord("call", fridge.name, "sim.door", '{"door": "fridge", "open": true}',
                        "--home", str(laptop.home))  # fmt: skip
        assert opened.returncode == 0, opened.stderr
        # temperature changes may come first; the door's must follow (the test timeout
        # bounds the wait)
        for line in watcher.stdout:
            if json.loads(line)["doors"]["fridge"]:
                break
        watcher.terminate()
    accord("call", fridge.name, "sim.door", '{"door": "fridge", "open": false}',
           "--home", str(laptop.home))  # fmt: skip


def test_permissions_restrict_a_service_and_survive_restart(house: Household) -> None:
    laptop, phone, tv = device(house, "laptop"), device(house, "nokia-x60"), device(house, "tv")
    mine = ("--home", str(phone.home))
    listed = accord_json("permissions", "ls", *mine)
    assert {"service": "camera", "allowed": None, "device_ids": []} in listed["services"]
    after = accord_json("permissions", "allow", "camera", laptop.name, *mine)
    row = next(r for r in after["services"] if r["service"] == "camera")
    assert row["device_ids"] == [laptop.device_id]
    assert accord_json("call", phone.name, "camera.list", "--home", str(laptop.home))
    denied = accord("call", phone.name, "camera.list", "--home", str(tv.home))
    assert denied.returncode == 1
    assert "PermissionDenied" in denied.stderr
    assert "restricted" in denied.stderr
    assert phone.proc is not None
    phone.proc.terminate()
    phone.proc.wait(10)
    house.restart(phone)
    wait_sees_all(tv.home, {d.device_id for d in house.devices}, timeout=10)
    still = accord("call", phone.name, "camera.list", "--home", str(tv.home))
    assert "PermissionDenied" in still.stderr  # kept in the home
    bad = accord("permissions", "allow", "teleporter", laptop.name, *mine)
    assert bad.returncode == 1
    assert "serves no 'teleporter'" in bad.stderr
    accord_json("permissions", "reset", "camera", *mine)
    assert accord_json("call", phone.name, "camera.list", "--home", str(tv.home))
