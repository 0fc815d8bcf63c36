"""A device that leaves its circle hands its apps back first; a revoked device's
apps come back on another member at once (issue 13 §3). In-process nodes on real
Zenoh, driving the probe app: the TV (SL2) runs it for the phone (SL4), which
started it there and vouches for it."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import msgspec
import pytest

from accord.apps import AppError
from accord.apps.messages import RunParams
from accord.errors import PermissionDenied
from accord.node import Node
from tests.nodes import Mesh, circle_of, household, sees, wait_until
from tests.test_apps_nodes import PROBE, ctl, eventually, journal_of, running


@pytest.fixture(autouse=True)
def _probe_journals_to_tmp_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe journals into tmp_path, which the app sandbox forbids (see
    test_apps_nodes.py); the sandbox has its own tests."""
    monkeypatch.setenv("ACCORD_APP_SANDBOX", "off")


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("tv", "tv"))
    return {n.name: n for n in nodes}


def variant(tmp_path: Path, app_id: str, **fields: object) -> Path:
    """The probe under another id, with manifest fields changed."""
    folder = tmp_path / app_id
    shutil.copytree(PROBE, folder)
    lines = [f'id = "{app_id}"', 'version = "1"', 'entry = "probe"']
    merged: dict[str, object] = {"continuable": True, "keep_alive": True, "checkpoint_s": 0.5}
    merged.update(fields)
    for key, value in merged.items():
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        lines.append(f"{key} = {shown}")
    (folder / "accord-app.toml").write_text("\n".join(lines) + "\n")
    return folder


async def run_on_tv(home: dict[str, Node], folder: Path, tmp_path: Path) -> tuple[str, Path]:
    """Install the app everywhere from the phone and run it on the TV, counter at 1."""
    app_id = folder.name
    journal = tmp_path / f"{app_id}.journal"
    phone = ctl(home["phone"])
    installed = await phone.call("app_install", path=str(folder), on="all")
    assert installed["failed"] == [], installed
    started = await phone.call("app_run", app=app_id, on="tv",
                               params={"journal": str(journal)})  # fmt: skip
    assert started["device"] == "tv"
    reply = await phone.call("app_send", app=app_id, message={"op": "inc"})
    assert reply["counter"] == 1
    return app_id, journal


async def where(node: Node, app_id: str) -> list[tuple[str, int]]:
    """(device, counter) of each copy of ``app_id`` that ``node``'s ps shows."""
    return [(r["device"], r["status"]["counter"]) for r in await running(node, app_id)]


async def saved_counter(node: Node, app_id: str, host: Node, counter: int) -> bool:
    """True once ``node`` holds ``host``'s checkpoint of ``app_id`` with ``counter``."""
    ckpt = await node.apps.checkpoints.get(app_id)
    if ckpt is None or ckpt.host != host.home.device_id:
        return False
    try:
        state = await node.apps.checkpoints.read_blob(app_id, ckpt.state_blob, ckpt.state_chunks)
    except AppError:
        return False
    return bool(state) and msgspec.msgpack.decode(state)["counter"] == counter


def members_without(node: Node, gone: Node) -> bool:
    return not circle_of(node).is_member(gone.home.device_id)


async def test_the_plan_says_where_each_app_goes_and_changes_nothing(
    home: dict[str, Node], tmp_path: Path
) -> None:
    await run_on_tv(home, PROBE, tmp_path)
    await run_on_tv(home, variant(tmp_path, "stay", continuable=False), tmp_path)
    tv = home["tv"]
    plan = await tv.trust.trust_leave({"plan": True})
    assert plan["members"] == ["phone", "tablet"]
    rows = {a["app_id"]: a for a in plan["apps"]}
    # Both members take the probe from the TV; mains, display and load tie: by name.
    assert (rows["probe"]["action"], rows["probe"]["to"]) == ("move", "phone")
    # Not continuable, but keep-alive under the phone's grant: it fails over.
    assert (rows["stay"]["action"], rows["stay"]["to"]) == ("failover", "phone")
    assert "not continuable" in rows["stay"]["reason"]
    assert circle_of(home["phone"]).is_member(tv.home.device_id)
    assert sorted(r["app_id"] for r in await tv.apps.ps()) == ["probe", "stay"]


async def test_leaving_moves_the_apps_to_members_first(
    home: dict[str, Node], tmp_path: Path
) -> None:
    app_id, journal = await run_on_tv(home, PROBE, tmp_path)
    phone, tv = home["phone"], home["tv"]
    result = await tv.trust.trust_leave({})
    assert [(a["app_id"], a["action"], a["to"]) for a in result["apps"]] == [
        (app_id, "move", "phone")
    ]
    assert await tv.apps.ps() == []
    # Moved while the TV was a member: the phone lists it at once, with its state.
    assert await where(phone, app_id) == [("phone", 1)]
    core = [e for e in journal_of(journal) if not e.endswith("save")]
    assert core == ["tv start", "tv continue", "phone start restored", "tv stop"]
    await wait_until(partial(members_without, phone, tv), 5, "the phone to see the TV leave")
    await wait_until(partial(members_without, home["tablet"], tv), 5, "the tablet to see it")
    # Seeing the TV revoked, nobody starts a second copy from its old checkpoint.
    await _stays(lambda: where(phone, app_id), [("phone", 1)], 3.0)
    assert await where(home["tablet"], app_id) == [("phone", 1)]


Copies = list[tuple[str, int]]


async def _stays(probe: Callable[[], Awaitable[Copies]], expected: Copies, seconds: float) -> None:
    """``await probe()`` equals ``expected`` all along for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await probe() == expected
        await asyncio.sleep(0.2)


async def test_a_keep_alive_app_that_cannot_move_restarts_elsewhere_from_its_final_save(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """Not continuable, checkpointed only every minute: the counter the phone restarts
    it with can only come from the final checkpoint the TV made as it left."""
    folder = variant(tmp_path, "stay", continuable=False, checkpoint_s=60.0)
    app_id, journal = await run_on_tv(home, folder, tmp_path)
    phone, tv = home["phone"], home["tv"]
    result = await tv.trust.trust_leave({})
    [row] = result["apps"]
    assert (row["app_id"], row["action"], row["to"], row["synced"]) == (
        app_id, "failover", "phone", True
    )  # fmt: skip
    assert await tv.apps.ps() == []
    rows = await eventually(partial(where, phone, app_id), 10, "the phone to restart it")
    assert rows == [("phone", 1)]
    assert sees(phone, tv)  # restarted on the revocation, not on the TV going offline
    assert [e for e in journal_of(journal) if not e.endswith("save")][-1] == "phone start restored"


async def test_an_app_that_refuses_to_move_falls_back_to_failover(
    home: dict[str, Node], tmp_path: Path
) -> None:
    app_id, _ = await run_on_tv(home, PROBE, tmp_path)
    await ctl(home["phone"]).call("app_send", app=app_id, message={"op": "set", "refuse": True})
    result = await home["tv"].trust.trust_leave({})
    [row] = result["apps"]
    assert (row["action"], row["to"]) == ("failover", "phone")
    assert "refused" in row["reason"]
    rows = await eventually(partial(where, home["phone"], app_id), 10, "the failover")
    assert rows == [("phone", 1)]


async def test_an_app_nothing_can_restart_blocks_the_leave_unless_forced(
    home: dict[str, Node], tmp_path: Path
) -> None:
    folder = variant(tmp_path, "fixed", continuable=False, keep_alive=False)
    app_id, _ = await run_on_tv(home, folder, tmp_path)
    phone, tv = home["phone"], home["tv"]
    plan = await tv.trust.trust_leave({"plan": True})
    [row] = plan["apps"]
    assert row["action"] == "blocked"
    assert "not continuable" in row["reason"]
    assert "not keep-alive" in row["reason"]
    with pytest.raises(AppError, match=r"tv did not leave: .*fixed: it is not continuable"):
        await tv.trust.trust_leave({})
    assert circle_of(phone).is_member(tv.home.device_id)  # nothing changed
    assert circle_of(tv).is_member(phone.home.device_id)
    assert await where(phone, app_id) == [("tv", 1)]
    forced = await tv.trust.trust_leave({"force": True})
    assert [(a["app_id"], a["action"]) for a in forced["apps"]] == [(app_id, "stop")]
    assert await tv.apps.ps() == []
    await wait_until(partial(members_without, phone, tv), 5, "the phone to see the TV leave")
    await _stays(lambda: where(phone, app_id), [], 2.0)


async def test_an_app_only_the_leaver_vouched_for_cannot_fail_over(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """Started by the TV itself: its grant ends with its membership, so no member would
    restart it from the checkpoint; the move is what remains, and without it the
    leave is refused."""
    folder = variant(tmp_path, "own", continuable=False)
    tv = home["tv"]
    await ctl(home["phone"]).call("app_install", path=str(folder), on="all")
    await ctl(tv).call("app_run", app="own", on="self",
                       params={"journal": str(tmp_path / "own.journal")})  # fmt: skip
    [row] = (await tv.trust.trust_leave({"plan": True}))["apps"]
    assert row["action"] == "blocked"
    assert "only tv vouched for its code" in row["reason"]


async def test_a_revoked_devices_apps_restart_elsewhere_at_once(
    home: dict[str, Node], tmp_path: Path
) -> None:
    app_id, _ = await run_on_tv(home, PROBE, tmp_path)
    phone, tablet, tv = home["phone"], home["tablet"], home["tv"]
    for node in (phone, tablet):
        await eventually(partial(saved_counter, node, app_id, tv, 1), 10,
                         f"the TV's checkpoint with counter 1 on the {node.name}")  # fmt: skip
    revoked = time.monotonic()
    await phone.trust.trust_revoke({"device": "tv"})
    rows = await eventually(partial(where, phone, app_id), 10, "the failover")
    assert rows == [("phone", 1)]  # from its last checkpoint, one copy
    assert time.monotonic() - revoked < 5
    assert sees(phone, tv)  # the TV is still online: the revocation did it
    await wait_until(partial(members_without, tablet, tv), 5, "the tablet to learn")
    assert await where(tablet, app_id) == [("phone", 1)]

    # The TV stops the circle's apps once it learns it was revoked (by itself once
    # revoked devices learn it; here told directly if it has not learnt yet).
    if circle_of(tv).is_member(phone.home.device_id):
        circle_of(tv).accept_list(circle_of(phone).signed_list())
    await eventually(lambda: _none(tv), 10, "the TV to stop its copy")
    assert tv.apps.revoked_here()
    assert await where(phone, app_id) == [("phone", 1)]
    # and it takes no more: nothing fails over to it, nobody can run code on it
    with pytest.raises(PermissionDenied, match="removed from its circle"):
        await tv.apps._rpc_run(RunParams(app_id), phone.home.device_id)


async def _none(node: Node) -> bool:
    return await node.apps.ps() == []
