"""``accord sim``: starts a household of real processes and stops it with no orphans."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil

from accord.sim.household import Household
from tests.helpers import accord, online_ids, wait_for


def _procs_under(folder: Path) -> list[psutil.Process]:
    """Processes whose command line mentions ``folder`` (our nodes)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(folder) in part for part in p.info["cmdline"] or []):
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


def test_sim_json_snapshot_then_stops(short_tmp: Path) -> None:
    folder = short_tmp / "house"
    proc = accord(
        "sim", "--devices", "nokia-x60,tv,midea-fridge", "--dir", str(folder), "--json", timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["profile"] for r in rows] == ["nokia-x60", "tv", "midea-fridge"]
    assert all(r["seen_by"] == 2 and r["sees_online"] == 3 for r in rows), rows
    assert all(r["circle_members"] == 3 for r in rows), rows  # the sim pairs them all
    assert all(r["summary"] for r in rows), rows  # members see each other's details
    assert _procs_under(folder) == []


def test_sim_unknown_profile_starts_nothing(short_tmp: Path) -> None:
    folder = short_tmp / "house"
    proc = accord("sim", "--devices", "nokia-x60,toaster", "--dir", str(folder))
    assert proc.returncode == 1
    assert "unknown profile 'toaster'" in proc.stderr
    assert not folder.exists()


def test_ctrl_c_stops_every_child(short_tmp: Path) -> None:
    folder = short_tmp / "house"
    sim = subprocess.Popen(
        [sys.executable, "-m", "accord", "sim", "--devices", "tablet,laptop", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        homes = [folder / "tablet", folder / "laptop"]
        wait_for(lambda: all(len(online_ids(h)) == 2 for h in homes), 30.0, "household up")
        assert len(_procs_under(folder)) == 3  # the sim and two nodes
        sim.send_signal(signal.SIGINT)
        assert sim.wait(20) == 0
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert _procs_under(folder) == []


def test_sim_killed_takes_its_children_along(short_tmp: Path) -> None:
    """Even a SIGKILLed sim leaves no orphan: children die with their parent."""
    folder = short_tmp / "house"
    sim = subprocess.Popen(
        [sys.executable, "-m", "accord", "sim", "--devices", "tv", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: online_ids(folder / "tv"), 30.0, "household up")
    finally:
        sim.kill()
        sim.wait()
    wait_for(lambda: _procs_under(folder) == [], 10.0, "orphans to be gone")


def test_hung_child_is_killed_on_stop(short_tmp: Path) -> None:
    """A child that ignores SIGTERM is SIGKILLed after the stop timeout."""
    wrapper = short_tmp / "stubborn-python"
    wrapper.write_text(f"#!/bin/sh\ntrap '' TERM\n{sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    house = Household(["tv"], short_tmp / "house", python=str(wrapper))
    house.start()
    try:
        dev = house.devices[0]
        assert dev.proc is not None
        pgid = os.getpgid(dev.proc.pid)
    finally:
        house.stop(timeout=0.5)
    assert dev.proc.returncode == -signal.SIGKILL
    wait_for(lambda: _procs_under(short_tmp / "house") == [], 10.0, "group to be gone")
    assert not [p for p in psutil.process_iter() if _live_member(p, pgid)]


def _live_member(p: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def test_event_log_reports_exits_and_visibility_changes() -> None:
    from accord.cli.sim_cmd import _changes

    row = {"name": "TV", "running": True, "seen_by": 2, "viewers": 2}
    assert _changes([row], [row]) == []
    gone = {**row, "running": False, "seen_by": 0, "viewers": 2}
    assert [ln.split("  ", 1)[1] for ln in _changes([row], [gone])] == ["TV: process exited"]
    half = {**row, "seen_by": 1}
    assert [ln.split("  ", 1)[1] for ln in _changes([row], [half])] == ["TV: seen online by 1/2"]


def test_call_device_info_across_the_household(short_tmp: Path) -> None:
    house = Household(["laptop", "nokia-x60"], short_tmp / "house")
    house.start()
    try:
        laptop = house.devices[0]
        wait_for(
            lambda: bool(
                json.loads(accord("devices", "--json", "--home", str(laptop.home)).stdout)[-1][
                    "summary"
                ]
            ),
            10,
            "details",
        )
        proc = accord("call", "Nokia X60", "device.info", "--home", str(laptop.home))
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["profile"]["hardware"]["battery"]["capacity_mah"] == 6000
        bad = accord("call", "Nokia X60", "camera.fly", "--home", str(laptop.home))
        assert bad.returncode == 1
        assert "UnknownMethod" in bad.stderr
        junk = accord("call", "Nokia X60", "device.info", "{not json", "--home", str(laptop.home))
        assert junk.returncode == 1
        assert "not valid JSON" in junk.stderr
    finally:
        house.stop()


def _rows() -> list[dict[str, object]]:
    """A household snapshot as ``Household.snapshot`` gives it: five devices, the TV's
    process stopped."""
    from accord.profile import load_builtin
    from accord.sim import DEFAULT_DEVICES

    rows: list[dict[str, object]] = []
    for i, profile in enumerate(DEFAULT_DEVICES):
        p = load_builtin(profile)
        running = profile != "tv"
        rows.append(
            {
                "profile": profile,
                "name": p.name,
                "device_id": f"{i}" * 26,
                "pid": 400000 + i,
                "running": running,
                "endpoint": "tcp/127.0.0.1:45678",
                "sees_online": 4 if running else None,
                "seen_by": 3 if running else 0,
                "viewers": 3 if running else 4,
                "circle_members": 5 if running else None,
                "summary": p.summary(),
            }
        )
    return rows


def _render(renderable: object, width: int = 80) -> list[str]:
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text(styles=False).rstrip("\n").split("\n")


def test_household_table_fits_80_columns_one_line_per_device() -> None:
    from accord.cli.sim_cmd import _table

    rows = _rows()
    lines = _render(_table(rows, 5))
    assert max(len(ln) for ln in lines) <= 80
    header_at = next(i for i, ln in enumerate(lines) if ln.startswith("Device"))
    header = lines[header_at]
    body = [ln for ln in lines[header_at + 2 :] if ln.strip()]
    assert len(body) == len(rows)  # no cell wrapped onto a second line
    columns = ("Device", "PID", "Sees", "Seen by", "Circle", "Has")
    at = {c: header.index(c) for c in columns}
    assert sorted(at.values()) == [at[c] for c in columns]
    for line, r in zip(body, rows, strict=True):
        running = r["running"]
        expect = {
            "Device": str(r["name"]),
            "PID": str(r["pid"]) if running else "stopped",
            "Sees": "4/5" if running else "-",
            "Seen by": f"{r['seen_by']}/{r['viewers']}",
            "Circle": "5/5" if running else "-",
            "Has": str(r["summary"])[:12],  # the start; the rest may end in an ellipsis
        }
        for column, value in expect.items():
            assert line[at[column] :].startswith(value), (column, line)
    # Wider terminals show the hardware whole.
    wide = _render(_table(rows, 5), width=140)
    assert any(str(rows[0]["summary"]) in ln for ln in wide)


def test_live_view_fits_an_80x24_terminal() -> None:
    from collections import deque

    from accord.cli.sim_cmd import EVENT_LINES, _view

    events = deque(
        [f"12:00:0{i}  Midea Refrigerator: seen online by 3/4" for i in range(EVENT_LINES)]
    )
    lines = _render(_view(_rows(), 5, events))
    assert max(len(ln) for ln in lines) <= 80
    assert len(lines) <= 24
