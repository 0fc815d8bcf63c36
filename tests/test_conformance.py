"""The conformance suite (issue 19): ``python -m conformance``, a client written from
docs/protocol.md alone (it imports nothing from ``accord``), run as a separate process
against a real ``accord up`` node, must pass every step; and its ``--self-test`` must
check every vector in docs/vectors and fail on a wrong one.

One node (a phone, SL4), driven through its control socket. A first client run only
pairs, so the circle holds another member whose name the full run's forgery step can
forge; the full run then revokes itself through the node's control socket (a small
``python -c`` that speaks the socket's JSON lines, so the client stays node-agnostic).
Another client leaves by publishing a member list it wrote from the page.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from accord.sim.household import Household, SimDevice
from tests.helpers import device, running_household

if TYPE_CHECKING:
    from tests.conftest import SharedProcesses

ROOT = Path(__file__).resolve().parent.parent
STEPS = [
    "discover",
    "stranger",
    "wrong pin",
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
# `{id}` is filled in by the client; argv[1] is the control socket
REVOKE = (
    "import json, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(30)\n"
    "s.connect(sys.argv[1])\n"
    "req = dict(id=1, method='trust_revoke', params=dict(device=sys.argv[2]))\n"
    "s.sendall(json.dumps(req).encode() + b'\\n')\n"
    "reply = json.loads(s.makefile().readline())\n"
    "sys.exit('revoke failed: %s' % reply['error'] if 'error' in reply else 0)\n"
)


def conformance(*args: str, timeout: float = 90.0) -> tuple[int, dict[str, Any], str]:
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


def joined_id(report: dict[str, Any]) -> str:
    """The client's device id, from its pair step ("joined as ID, ...")."""
    return str(by_step(report)["pair"]["reason"].split()[2].rstrip(","))


@pytest.fixture(scope="module")
def house(shared_processes: SharedProcesses) -> Iterator[Household]:
    """One node for the module: each test pairs clients of its own into it (a test's
    clients never depend on another test's)."""
    yield from running_household(["nokia-x60"], "acc-conf-", shared=shared_processes)


def pin(phone: SimDevice) -> str:
    return str(phone.client.call("pair_window", timeout=60)["pin"])


def test_conformance_client_passes_against_a_real_node(house: Household) -> None:
    phone = device(house, "nokia-x60")
    ctl = phone.client
    ctl.call("kv_put", store="conformance", key="greeting", value="hello from the node")
    code, first, err = conformance(
        "--connect", phone.endpoint, "--pin", pin(phone), "--only", "pair"
    )
    assert code == 0, f"{first}\n{err}"
    other = joined_id(first)
    socket_path = str(phone.home / "run" / "control.sock")
    revoke = shlex.join([sys.executable, "-c", REVOKE, socket_path])

    code, report, err = conformance(
        "--connect",
        phone.endpoint,
        "--pin",
        pin(phone),
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
    assert "under another member's name" in steps["forgery"]["reason"]
    me = joined_id(report)
    assert me != other

    # what the client claims, seen from the node's side
    got = ctl.call("kv_get", store="conformance", key="conformance/hello")
    assert got["found"], got
    assert got["text"] == f"written by {me}"
    assert not ctl.call("kv_get", store="conformance", key="conformance/forged")["found"]
    trust = ctl.call("trust_list")
    assert me in trust["revoked"]
    assert other in {m["device_id"] for m in trust["members"]}
    assert phone.running, "the node died under the hostile steps"
    assert ctl.call("status")["device_id"] == phone.device_id


def test_a_member_list_written_from_the_page_is_taken(house: Household) -> None:
    """The client leaves by publishing a member list it wrote itself (canonical body
    with circle_id, a proof revoking itself, signed, sealed under the circle key): the
    node takes it and counts the client as revoked."""
    phone = device(house, "nokia-x60")
    endpoint = phone.endpoint
    code, report, err = conformance(
        "--connect", endpoint, "--pin", pin(phone), "--only", "pair,leave"
    )

    assert code == 0, f"{report}\n{err}"
    assert [s["step"] for s in report["steps"]] == ["discover", "pair", "leave"]
    gone = joined_id(report)
    trust = phone.client.call("trust_list")
    assert gone in trust["revoked"]
    assert gone not in {m["device_id"] for m in trust["members"]}


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
