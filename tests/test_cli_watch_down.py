"""``accord devices --watch`` streams joins and leaves; ``accord down`` stops a node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from accord.sim.household import Household
from tests.helpers import accord, online_ids, wait_for


def test_watch_streams_joins_and_leaves_then_down_stops(short_tmp: Path) -> None:
    house = Household(["tv"], short_tmp / "house")
    house.start()
    watcher = None
    try:
        tv = house.devices[0]
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accord",
                "devices",
                "--watch",
                "--json",
                "--home",
                str(tv.home),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert watcher.stdout is not None
        present = json.loads(watcher.stdout.readline())  # subscribed from here on
        assert (present["kind"], present["device"]["is_self"]) == ("present", True)
        laptop = short_tmp / "laptop"
        assert accord("init", "--home", str(laptop), "--profile", "laptop").returncode == 0
        with open(laptop / "node.log", "wb") as log:
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "accord",
                    "up",
                    "--home",
                    str(laptop),
                    "--no-multicast",
                    "--listen",
                    "tcp/127.0.0.1:0",
                    "--connect",
                    tv.endpoint,
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: len(online_ids(tv.home)) == 2, 10.0, "laptop to join")
        assert accord("down", "--home", str(laptop)).returncode == 0
        assert node.wait(10) == 0
        joined = json.loads(watcher.stdout.readline())
        left = json.loads(watcher.stdout.readline())
        assert (joined["kind"], joined["device"]["type"]) == ("joined", "laptop")
        assert (left["kind"], left["device"]["type"]) == ("left", "laptop")
        assert left["device"]["online"] is False
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()
            if watcher.stdout is not None:
                watcher.stdout.close()
        house.stop()
