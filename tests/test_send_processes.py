"""File send between real node processes on 127.0.0.1: files and folders land in the
inbox, names never clash, a SIGKILL of either side mid-transfer costs only the
blocks that had not arrived, and who may send is `accord permissions`."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from accord.continuity.transfer.partial import PartialState
from accord.sim.household import Household, SimDevice
from tests.helpers import accord, accord_json, device, running_household, wait_for, wait_sees_all

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

MIB = 1024 * 1024
BIG = 128 * MIB  # about a second on loopback: long enough to kill a side mid-way


@pytest.fixture(scope="module")
def _household(shared_processes: SharedProcesses) -> Iterator[Household]:
    yield from running_household(["laptop", "nokia-x60"], "acc-send-", shared=shared_processes)


@pytest.fixture
def house(_household: Household) -> Household:
    """The module's household, whole: a device an earlier test killed runs again."""
    for dev in _household.devices:
        if not dev.running:
            _household.restart(dev)
    everyone = {d.device_id for d in _household.devices}
    for dev in _household.devices:
        wait_sees_all(dev.home, everyone, timeout=15)
    return _household


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def _send(src: SimDevice, *args: str) -> dict[str, Any]:
    return accord_json("send", *args, "--home", str(src.home))  # type: ignore[no-any-return]


def test_files_and_folders_land_in_the_inbox(house: Household, tmp_path: Path) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    (tmp_path / "notes.txt").write_text("buy milk")
    album = tmp_path / "album" / "2026"
    album.mkdir(parents=True)
    pics = {f"p{i}.jpg": os.urandom(1000 * i) for i in range(4)}  # p0 is empty
    for name, data in pics.items():
        (album / name).write_bytes(data)
    first = _send(laptop, str(tmp_path / "notes.txt"), str(tmp_path / "album"), "--to", "Nokia X60")
    assert first["bytes_total"] == first["bytes_sent"] == 8 + sum(map(len, pics.values()))
    assert sorted(f["name"] for f in first["files"]) == [
        "album/2026/p0.jpg", "album/2026/p1.jpg", "album/2026/p2.jpg", "album/2026/p3.jpg",
        "notes.txt",
    ]  # fmt: skip
    inbox = Path(accord_json("status", "--home", str(phone.home))["inbox"])
    assert inbox == phone.home / "inbox"
    assert (inbox / "notes.txt").read_text() == "buy milk"
    for name, data in pics.items():
        assert (inbox / "album" / "2026" / name).read_bytes() == data
    again = _send(laptop, str(tmp_path / "notes.txt"), "--to", "Nokia X60")
    assert again["files"][0]["saved_as"] == "notes (1).txt"
    assert (inbox / "notes (1).txt").read_text() == "buy milk"
    listed = accord_json("transfers", "--home", str(phone.home))
    assert listed["recent"][0]["saved"] == ["notes (1).txt"]
    assert listed["recent"][0]["from"] == "Laptop"
    assert listed["recent"][0]["state"] == "done"


def test_bad_input_gets_one_clear_line(house: Household, tmp_path: Path) -> None:
    laptop = device(house, "laptop")
    proc = accord(
        "send", str(tmp_path / "nope.txt"), "--to", "Nokia X60", "--home", str(laptop.home)
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: no such file or folder: {tmp_path / 'nope.txt'}"
    (tmp_path / "empty").mkdir()
    proc = accord("send", str(tmp_path / "empty"), "--to", "Nokia X60", "--home", str(laptop.home))
    assert proc.returncode == 1
    assert "no files to send" in proc.stderr


def test_who_may_send_is_a_permission(house: Household, tmp_path: Path) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    (tmp_path / "a.txt").write_text("a")
    accord_json("permissions", "allow", "files", "Nokia X60", "--home", str(phone.home))
    try:
        proc = accord(
            "send", str(tmp_path / "a.txt"), "--to", "Nokia X60", "--home", str(laptop.home)
        )
        assert proc.returncode == 1
        assert "files is restricted" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    finally:
        accord_json("permissions", "reset", "files", "--home", str(phone.home))
    assert _send(laptop, str(tmp_path / "a.txt"), "--to", "Nokia X60")["bytes_sent"] == 1


def _have_fraction(phone: SimDevice) -> float:
    """How much of the big file the phone's partial state says it holds."""
    best = 0.0
    for path in (phone.home / "inbox" / ".accord-partial").glob("*.state"):
        try:
            state = msgspec.msgpack.decode(path.read_bytes(), type=PartialState)
        except (OSError, msgspec.DecodeError):
            continue  # being replaced right now
        blocks = sum(bin(b).count("1") for b in state.have)
        best = max(best, blocks * state.block_size / state.size)
    return best


def _start_send(src: SimDevice, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "accord", "send", str(path), "--to", "Nokia X60", "--json",
         "--home", str(src.home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("victim", ["nokia-x60", "laptop"])
def test_a_killed_side_resumes_moving_only_what_was_missing(
    house: Household, tmp_path: Path, victim: str
) -> None:
    laptop, phone = device(house, "laptop"), device(house, "nokia-x60")
    big = tmp_path / "movie.bin"
    with big.open("wb") as f:
        for _ in range(BIG // MIB):
            f.write(os.urandom(MIB))
    inbox = phone.home / "inbox"
    before = set(inbox.glob("movie*"))  # from an earlier test of this module
    sending = _start_send(laptop, big)
    try:
        wait_for(lambda: _have_fraction(phone) >= 0.2, 60, "a fifth of the file on the phone")
        killed = device(house, victim)
        assert killed.proc is not None
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait()
        _, stderr = sending.communicate(timeout=60)
    finally:
        if sending.poll() is None:
            sending.kill()
            sending.communicate()
    assert sending.returncode != 0
    if victim == "nokia-x60":  # the sender's node saw the link go
        assert "interrupted" in stderr, stderr
        assert "send again to resume" in stderr, stderr
    held = _have_fraction(phone)
    assert 0.2 <= held < 1.0
    assert set(inbox.glob("movie*")) == before  # half a file never shows
    house.restart(killed)
    wait_sees_all(laptop.home, {laptop.device_id, phone.device_id}, timeout=15)
    wait_sees_all(phone.home, {laptop.device_id, phone.device_id}, timeout=15)
    done = _send(laptop, str(big), "--to", "Nokia X60")
    assert done["bytes_total"] == BIG
    assert done["bytes_skipped"] >= held * BIG - 16 * MIB
    assert done["bytes_sent"] + done["bytes_skipped"] == BIG
    assert done["bytes_sent"] <= (1 - 0.2) * BIG
    assert _sha(inbox / done["files"][0]["saved_as"]) == _sha(big)
    assert not list((inbox / ".accord-partial").glob("*"))
