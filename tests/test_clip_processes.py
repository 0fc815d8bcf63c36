"""The universal clipboard between real node processes on 127.0.0.1: text copied on
the phone pastes on the laptop, files and images travel only when pasted, sensitive
copies never reach a device that may not hold S3, and devices may opt out."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import accord, accord_json, device, running_household, wait_for

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)


@pytest.fixture(scope="module")
def house(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(
        ["nokia-x60", "laptop", "midea-fridge"], "acc-clip-", shared=shared_processes
    )


def _paste(dev: SimDevice, *args: str) -> bytes:
    proc = accord("clip", "paste", *args, "--home", str(dev.home))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.encode()


def _items(dev: SimDevice) -> list[dict[str, object]]:
    return dev.client.call("clip_list")["items"]  # type: ignore[no-any-return]


def test_text_copied_on_the_phone_pastes_on_the_laptop(house: Household) -> None:
    phone, laptop, fridge = (device(house, p) for p in ("nokia-x60", "laptop", "midea-fridge"))
    result = accord_json("clip", "copy", "dinner at 8", "--home", str(phone.home))
    assert result["announced_to"] == ["Laptop", "Midea Refrigerator"]
    assert _paste(laptop) == b"dinner at 8"
    assert _paste(fridge) == b"dinner at 8"
    # The laptop's own copy is newer: every device pastes it, the phone included.
    accord_json("clip", "copy", "no, at 9", "--home", str(laptop.home))
    assert _paste(phone) == b"no, at 9"
    assert _paste(phone, "--from", "Nokia X60") == b"dinner at 8"


def test_images_and_files_move_only_on_paste(house: Household, tmp_path: Path) -> None:
    phone, laptop = device(house, "nokia-x60"), device(house, "laptop")
    (tmp_path / "shot.png").write_bytes(PNG)
    copied = accord_json(
        "clip", "copy", "--file", str(tmp_path / "shot.png"), "--home", str(phone.home)
    )
    assert copied["item"]["kind"] == "png"
    assert copied["item"]["size"] == len(PNG)
    accord("clip", "paste", "-o", str(tmp_path / "got.png"), "--home", str(laptop.home))
    assert (tmp_path / "got.png").read_bytes() == PNG
    big = os.urandom(5 * 1024 * 1024)
    (tmp_path / "report.pdf").write_bytes(big)
    copied = accord_json(
        "clip", "copy", "--file", str(tmp_path / "report.pdf"), "--home", str(laptop.home)
    )
    assert copied["item"]["kind"] == "file"
    assert copied["item"]["name"] == "report.pdf"
    proc = accord("clip", "paste", "-o", str(tmp_path / "r.pdf"), "--home", str(phone.home))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.pdf").read_bytes() == big


def test_sensitive_copies_never_reach_the_fridge(house: Household) -> None:
    phone, laptop, fridge = (device(house, p) for p in ("nokia-x60", "laptop", "midea-fridge"))
    accord_json("clip", "copy", "ordinary", "--home", str(phone.home))
    result = accord_json("clip", "copy", "pin 4711", "--sensitive", "--home", str(phone.home))
    assert result["item"]["label"] == "S3"
    assert result["announced_to"] == ["Laptop"]  # the fridge is SL1
    assert _paste(laptop) == b"pin 4711"
    assert _paste(fridge) == b"ordinary"  # it never heard of the sensitive one
    assert all(i["label"] == "S1" for i in _items(fridge))


def test_devices_opt_out_of_sending_and_receiving(house: Household) -> None:
    phone, laptop = device(house, "nokia-x60"), device(house, "laptop")
    accord_json("settings", "clip_receive=false", "--home", str(laptop.home))
    try:
        result = accord_json("clip", "copy", "private to the phone?", "--home", str(phone.home))
        assert "Laptop" not in result["announced_to"]
        assert result["item"]["id"] not in [i["id"] for i in _items(laptop)]
    finally:
        accord_json("settings", "clip_receive=true", "--home", str(laptop.home))
    accord_json("settings", "clip_send=false", "--home", str(phone.home))
    try:
        result = accord_json("clip", "copy", "kept here", "--home", str(phone.home))
        assert result["announced_to"] == []
        assert _paste(phone) == b"kept here"  # its own clipboard still works
    finally:
        accord_json("settings", "clip_send=true", "--home", str(phone.home))


def test_watch_shows_announcements(house: Household) -> None:
    phone, laptop = device(house, "nokia-x60"), device(house, "laptop")
    seen: list[dict[str, object]] = []
    events = laptop.client.stream("clip_watch")
    assert isinstance(events, Generator)
    next(events)  # subscribed: what it holds comes first
    accord_json("clip", "copy", "watch me", "--home", str(phone.home))

    def announced() -> bool:
        seen.append(next(events))
        return seen[-1]["kind"] == "announced"

    wait_for(announced, 10, "the laptop to hear of the copy")
    events.close()
    item = seen[-1]["item"]
    assert isinstance(item, dict)
    assert item["origin"] == "Nokia X60"
