"""The conformance suite (issue 19): ``python -m conformance``, a client written from
docs/protocol.md alone (it imports nothing from ``accord``), run as a separate process
against a real ``accord up`` node, must pass every step; and its ``--self-test`` must
check every vector in docs/vectors and fail on a wrong one.

The household: a phone (the node under test, SL4) and a tablet already paired with it,
so the client's forgery step has another member's name to forge.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.sim.household import Household
from tests.helpers import accord, accord_json, device, running_household

ROOT = Path(__file__).resolve().parent.parent
STEPS = [
    "discover",
    "pair",
    "details",
    "call",
    "stream",
    "typed errors",
    "kv read",
    "kv write",
    "replay",
    "forgery",
    "forged batch",
    "malformed",
    "revocation",
]


def conformance(*args: str, timeout: float = 60.0) -> tuple[int, dict[str, Any], str]:
    """Run the client as its own process: (exit code, its JSON report, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def by_step(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in report["steps"]}


@pytest.fixture
def house() -> Iterator[Household]:
    yield from running_household(["nokia-x60", "tablet"], "acc-conf-")


def test_conformance_client_passes_against_a_real_node(house: Household) -> None:
    phone = device(house, "nokia-x60")
    home = str(phone.home)
    put = accord("kv", "put", "conformance", "greeting", "hello from the node", "--home", home)
    assert put.returncode == 0, put.stderr
    pin = phone.client.call("pair_window", timeout=60)["pin"]
    revoke = shlex.join([sys.executable, "-m", "accord", "trust", "revoke", "--home", home])

    code, report, err = conformance(
        "--connect",
        phone.endpoint,
        "--pin",
        pin,
        "--expect-kv",
        "conformance/greeting=hello from the node",
        "--revoke-cmd",
        f"{revoke} {{id}}",
    )

    steps = by_step(report)
    failed = {k: v["reason"] for k, v in steps.items() if v["status"] != "pass"}
    assert not failed, f"{failed}\n{err}"
    assert list(steps) == STEPS
    assert code == 0
    assert report["passed"] is True
    assert report["node"].startswith(phone.device_id)
    client_id = steps["pair"]["reason"].split()[2].rstrip(",")

    # what the client claims, seen from the node's side
    got = accord("kv", "get", "conformance", "conformance/hello", "--home", home)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"written by {client_id}"
    forged = accord("kv", "get", "conformance", "conformance/forged", "--home", home)
    assert forged.returncode != 0 or not forged.stdout.strip()
    trust = accord_json("trust", "list", "--home", home)
    assert client_id in json.dumps(trust.get("revoked", trust))
    assert phone.running, "the node died under the hostile steps"
    assert accord_json("status", "--home", home)["device_id"] == phone.device_id


def test_self_test_checks_every_vector() -> None:
    code, report, err = conformance("--self-test")
    assert code == 0, err
    files = sorted(p.name for p in (ROOT / "docs" / "vectors").glob("*.json"))
    assert files, "no vectors in docs/vectors"
    assert [s["step"] for s in report["steps"]] == [f"vectors/{f}" for f in files]
    assert all(s["status"] == "pass" for s in report["steps"]), report


def test_self_test_fails_on_a_wrong_vector(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors"
    shutil.copytree(ROOT / "docs" / "vectors", vectors)
    spake = json.loads((vectors / "spake2.json").read_text())
    spake["vectors"][0]["confirm"] = "00" * 32  # a confirmation the PIN cannot make
    (vectors / "spake2.json").write_text(json.dumps(spake))
    seal = json.loads((vectors / "seal.json").read_text())
    frame = seal["vectors"][0]["frame"]
    seal["vectors"][0]["frame"] = frame[:-2] + ("00" if frame[-2:] != "00" else "01")
    (vectors / "seal.json").write_text(json.dumps(seal))

    code, report, _ = conformance("--self-test", "--vectors", str(vectors))

    steps = by_step(report)
    assert code == 1
    assert steps["vectors/spake2.json"]["status"] == "fail"
    assert "confirm_A" in steps["vectors/spake2.json"]["reason"]
    assert steps["vectors/seal.json"]["status"] == "fail"
    assert steps["vectors/identity.json"]["status"] == "pass"
