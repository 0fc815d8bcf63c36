"""Running code on another device needs authority (issue 12 §4).

By default only a member at the target's security level or higher may install,
remove, run, stop, move or message apps there; the target's owner can name exactly
who may instead (``accord permissions allow apps ...``). Moves and failovers that
hand an app to a device above the one handing it over need a grant from a member
that may run code there. Transfers go only to the device they were offered to.

The attack it answers: the SL1 fridge installed and ran an app on the SL4 phone
with the ordinary CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from accord.apps import authority
from accord.apps.bundle import encode_bundle
from accord.apps.messages import (
    AppRef,
    Checkpoint,
    FetchParams,
    Grant,
    InstallParams,
    MoveParams,
    RestoreParams,
    RunParams,
    SendParams,
)
from accord.apps.transfers import Transfers
from accord.clock import SystemClock
from accord.control.aio import AsyncControlClient
from accord.device.identity import Identity, device_id_for
from accord.errors import AccordError, PermissionDenied, RemoteError
from accord.node import Node
from accord.rpc import RpcStream
from tests.nodes import Mesh, household, wait_until

APP = """
from typing import Any

from accord.apps import Ability


class Hello(Ability):
    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        self.count = int(restored or b"0")

    async def on_save(self) -> bytes:
        return str(self.count).encode()

    async def on_message(self, message: Any) -> Any:
        self.count += 1
        return {"count": self.count, "device": self.device_name}

    def describe(self) -> dict[str, Any]:
        return {"count": self.count}
"""


def _app(tmp_path: Path, app_id: str = "hello", *extra: str) -> Path:
    folder = tmp_path / app_id
    folder.mkdir()
    manifest = [f'id = "{app_id}"', 'version = "1"', 'entry = "hello"', *extra]
    (folder / "accord-app.toml").write_text("\n".join(manifest) + "\n")
    (folder / "hello.py").write_text(APP)
    return folder


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("fridge", "midea-fridge")
    )
    return {n.name: n for n in nodes}


async def _cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "accord", *args, env={**os.environ, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    return out.decode()


def ctl(node: Node) -> AsyncControlClient:
    return AsyncControlClient(node.home.socket_path)


def _id(node: Node) -> str:
    return node.home.device_id


async def _running_on(node: Node, app_id: str) -> list[str]:
    ps = await ctl(node).call("ps")
    return [r["device"] for r in ps["running"] if r["app_id"] == app_id]


async def test_the_fridge_cannot_install_or_run_an_app_on_the_phone(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """The attack, with the ordinary control API and CLI: refused, saying what to do."""
    phone, fridge = home["phone"], home["fridge"]
    app = _app(tmp_path)
    installed = await ctl(fridge).call("app_install", path=str(app), on="phone")
    assert installed["ok"] is False
    assert installed["devices"]["phone"]["error_type"] == "PermissionDenied"
    error = installed["devices"]["phone"]["error"]
    assert "fridge (SL1) may not install apps on phone (SL4)" in error
    assert "Run it from a member at SL4 or higher" in error
    assert "accord permissions allow apps fridge" in error
    assert "hello" not in phone.apps.installed()

    # Even with the app on the phone already, the fridge may not start it there.
    await ctl(phone).call("app_install", path=str(app))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "accord", "app", "run", "hello", "--on", "phone",
        "--home", str(fridge.home.path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0, out
    assert "may not run apps on phone" in err.decode()
    assert "accord permissions allow apps fridge" in err.decode()
    assert await _running_on(phone, "hello") == []


async def test_every_app_method_checks_the_callers_level(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """Straight RPC from the fridge (a real member, authenticated on its channel): each
    managing method of the phone's apps service is refused; list and ps answer."""
    phone, fridge = home["phone"], home["fridge"]
    await ctl(phone).call("app_install", path=str(_app(tmp_path)))
    await ctl(phone).call("app_run", app="hello", on="self")
    h = phone.apps.bundle("hello").content_hash
    calls: list[tuple[str, Any]] = [
        ("install", InstallParams("hello", h, "0" * 16)),
        ("remove", AppRef("hello")),
        ("run", RunParams("hello")),
        ("stop", AppRef("hello")),
        ("move", MoveParams("hello", _id(fridge))),
        ("send", SendParams("hello", {})),
        ("restore", RestoreParams("hello", h, "0" * 16, 0)),
    ]
    for method, params in calls:
        with pytest.raises(PermissionDenied, match="only members at SL4 or higher"):
            await fridge.rpc.call(_id(phone), "apps", method, params, timeout=10)
    listed: list[dict[str, Any]] = await fridge.rpc.call(
        _id(phone), "apps", "list", None, timeout=10
    )
    assert [a["app_id"] for a in listed] == ["hello"]
    assert await _running_on(phone, "hello") == ["phone"]  # untouched

    # Downwards it works: the phone (SL4) stops its app and runs it on the tablet (SL3).
    await ctl(phone).call("app_stop", app="hello")
    started = await ctl(phone).call("app_run", app="hello", on="tablet")
    assert started["device"] == "tablet"
    reply = await ctl(phone).call("app_send", app="hello", message={})
    assert reply == {"count": 1, "device": "tablet"}


async def test_an_allow_list_overrides_the_level_default(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """``accord permissions allow apps fridge`` on the tablet: the fridge may now manage
    apps there, and the phone (SL4) may not; a reset restores the level rule. Pulling
    what the tablet offers to others (appdata.fetch) is not affected."""
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    app = _app(tmp_path)
    await ctl(tablet).call("restrict", service="apps", devices=["fridge"])
    try:
        done = await ctl(fridge).call("app_install", path=str(app), on="tablet")
        assert done["ok"] is True, done
        await ctl(fridge).call("app_run", app="hello", on="tablet")
        assert await _running_on(tablet, "hello") == ["tablet"]
        refused = await ctl(phone).call("app_install", path=str(app), on="tablet")
        assert refused["ok"] is False
        assert "apps is restricted" in refused["devices"]["tablet"]["error"]
        with pytest.raises(PermissionDenied):
            await phone.rpc.call(_id(tablet), "apps", "stop", AppRef("hello"), timeout=10)
        # The tablet itself still hands apps out: the fridge pulls them from it.
        await ctl(tablet).call("app_install", path=str(app), on="fridge")
        assert "hello" in fridge.apps.installed()
        listing = await ctl(tablet).call("permissions")
        row = next(r for r in listing["services"] if r["service"] == "apps")
        assert row["allowed"] == ["fridge"]
    finally:
        await ctl(tablet).call("restrict", service="apps", devices=None)
    shown = json.loads(await _cli("permissions", "ls", "--json", "--home", str(tablet.home.path)))
    row = next(r for r in shown["services"] if r["service"] == "apps")
    assert row["allowed"] is None
    assert "members at SL3 or higher may install" in row["default"]
    with pytest.raises(PermissionDenied, match="only members at SL3 or higher"):
        await fridge.rpc.call(_id(tablet), "apps", "stop", AppRef("hello"), timeout=10)
    stopped: dict[str, Any] = await phone.rpc.call(
        _id(tablet), "apps", "stop", AppRef("hello"), timeout=10
    )
    assert stopped["stopped"] is True


async def test_a_move_up_needs_a_grant_from_a_member_at_the_targets_level(
    home: dict[str, Node], tmp_path: Path
) -> None:
    phone, tablet = home["phone"], home["tablet"]
    app = _app(tmp_path)
    await ctl(phone).call("app_install", path=str(app), on=["phone", "tablet"])
    # Launched by the phone on the tablet: the phone's grant lets it come back.
    await ctl(phone).call("app_run", app="hello", on="tablet")
    await ctl(phone).call("app_send", app="hello", message={})
    moved = await ctl(tablet).call("app_move", app="hello", to="phone")
    assert moved["to"] == "phone"
    reply = await ctl(phone).call("app_send", app="hello", message={})
    assert reply == {"count": 2, "device": "phone"}  # with its state
    await ctl(phone).call("app_stop", app="hello")

    # Launched by the tablet itself: its grant is SL3, so the phone refuses the move
    # from the tablet and the app goes on where it was...
    await ctl(tablet).call("app_run", app="hello", on="self")
    with pytest.raises(RemoteError, match="may not move apps onto phone"):
        await ctl(tablet).call("app_move", app="hello", to="phone")
    assert await _running_on(phone, "hello") == ["tablet"]
    assert (await ctl(tablet).call("app_send", app="hello", message={}))["count"] == 1
    # ...unless the phone asks for it: it holds the same code, so it vouches for it.
    moved = await ctl(phone).call("app_move", app="hello", to="phone")
    assert (moved["from"], moved["to"]) == ("tablet", "phone")
    assert await _running_on(phone, "hello") == ["phone"]


async def test_a_forged_or_foreign_grant_does_not_count(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """A compromised fridge hands the phone its own code with a grant: signed by itself
    (SL1), claiming to be the phone's, or the phone's own grant for other code."""
    phone, fridge = home["phone"], home["fridge"]
    app = _app(tmp_path)
    await ctl(fridge).call("app_install", path=str(app))
    bundle = fridge.apps.bundle("hello")
    own = fridge.apps.grant("hello", bundle.content_hash)
    forged = msgspec.structs.replace(own, by=_id(phone))
    other = phone.apps.grant("hello", "0" * 64)
    for grant in (own, forged, other):
        tid = fridge.apps.transfers.offer(_id(phone), b"", b"")
        restore = RestoreParams("hello", bundle.content_hash, tid, 0, {}, grant)
        with pytest.raises(PermissionDenied):
            await fridge.rpc.call(_id(phone), "apps", "restore", restore, timeout=10)
    assert "hello" not in phone.apps.installed()


async def test_a_fridges_app_does_not_fail_over_to_higher_members(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """Its checkpoint's authority is the fridge's (SL1): when the fridge goes, no
    member above SL1 restarts its code (the others are all above it here)."""
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    app = _app(tmp_path, "hello", "keep_alive = true", "checkpoint_s = 0.5")
    await ctl(fridge).call("app_install", path=str(app))
    await ctl(fridge).call("app_run", app="hello", on="self")
    await wait_until(lambda: _has_ckpt(phone, "hello"), 10, "the fridge's checkpoint")
    await fridge.stop()
    await wait_until(lambda: _id(fridge) not in phone.directory.online_ids(), 10, "fridge gone")  # type: ignore[union-attr]
    await asyncio.sleep(2.0)
    assert await _running_on(phone, "hello") == []
    assert "hello" not in phone.apps.installed()
    assert "hello" not in tablet.apps.installed()


def _has_ckpt(node: Node, app_id: str) -> bool:
    try:
        replica = node.data.stores.get("accord.apps")
    except AccordError:
        return False
    return bool(replica.scan(f"ckpt/{app_id}"))


async def test_a_checkpoint_in_another_members_name_is_ignored(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """The fridge writes a checkpoint claiming the tablet hosts an app (with a grant it
    copied from a real checkpoint); when the tablet goes, nobody runs it."""
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    app = _app(tmp_path, "hello", "keep_alive = true", "checkpoint_s = 0.5")
    await ctl(phone).call("app_install", path=str(app))
    bundle = phone.apps.bundle("hello")
    grant = phone.apps.grant("hello", bundle.content_hash)  # as if copied
    ckpts = fridge.apps.checkpoints
    b_blob, b_n = await ckpts.write_blob("hello", encode_bundle(bundle))
    s_blob, s_n = await ckpts.write_blob("hello", b"41")
    fake = Checkpoint("hello", _id(tablet), time.time(), bundle.content_hash, b_blob, b_n,
                      s_blob, s_n, [], "S1", grant)  # fmt: skip
    signed = authority.sign_checkpoint(fake, fridge.home.identity)  # the fridge's key
    await ckpts.save(signed)
    await wait_until(lambda: _has_ckpt(phone, "hello"), 10, "the fake checkpoint")
    await tablet.stop()
    await wait_until(lambda: _id(tablet) not in phone.directory.online_ids(), 10, "tablet gone")  # type: ignore[union-attr]
    await asyncio.sleep(2.0)
    assert await _running_on(phone, "hello") == []


async def test_another_member_cannot_fetch_a_transfer_meant_for_someone_else(
    home: dict[str, Node],
) -> None:
    """The planted bug 'transfer.to != caller' skipped: the fridge would get the bundle
    and state the phone offered the tablet."""
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    tid = phone.apps.transfers.offer(_id(tablet), b"the bundle", b"the state")

    async def fetch(part: str) -> None:
        stream: RpcStream[bytes] = fridge.rpc.stream(
            _id(phone), "appdata", "fetch", FetchParams(tid, part)
        )
        async with stream:
            async for _ in stream:
                pass

    for part in ("bundle", "state"):
        with pytest.raises(RemoteError, match="no such transfer for this device"):
            await fetch(part)
    assert await tablet.apps.transfers.fetch(_id(phone), tid, "state") == b"the state"


async def test_transfers_serve_only_the_device_they_were_offered_to() -> None:
    transfers = Transfers(None, SystemClock())  # type: ignore[arg-type]
    tid = transfers.offer("tablet", b"b" * 10, b"s" * 10)
    with pytest.raises(AccordError, match="offered to another"):
        async for _ in transfers.serve(FetchParams(tid, "state"), "fridge"):
            pass
    got = [c async for c in transfers.serve(FetchParams(tid, "state"), "tablet")]
    assert got == [b"s" * 10]


def test_grants_and_checkpoints_are_bound_to_their_signer() -> None:
    me, other = Identity.generate(), Identity.generate()
    keys = {device_id_for(i.public_bytes): i.public_bytes for i in (me, other)}
    grant = authority.sign_grant(me, "app", "a" * 64, 1.0)
    assert authority.grant_valid(grant, keys.get, "app", "a" * 64)
    assert not authority.grant_valid(grant, keys.get, "app", "b" * 64)  # other code
    assert not authority.grant_valid(grant, keys.get, "other", "a" * 64)
    nobody: dict[str, bytes] = {}
    assert not authority.grant_valid(grant, nobody.get, "app", "a" * 64)  # not a member
    moved = msgspec.structs.replace(grant, by=device_id_for(other.public_bytes))
    assert not authority.grant_valid(moved, keys.get, "app", "a" * 64)
    assert not authority.grant_valid(None, keys.get, "app", "a" * 64)
    assert isinstance(grant, Grant)
    ckpt = Checkpoint("app", grant.by, 1.0, "a" * 64, "x", 1, "y", 1)
    signed = authority.sign_checkpoint(ckpt, me)
    assert authority.checkpoint_valid(signed, keys.get)
    assert not authority.checkpoint_valid(msgspec.structs.replace(signed, state_blob="z"),
                                          keys.get)  # fmt: skip
    as_other = authority.sign_checkpoint(ckpt, other)  # claims me as its host
    assert not authority.checkpoint_valid(as_other, keys.get)


@pytest.mark.parametrize(
    ("caller", "target", "ok"),
    [("SL4", "SL4", True), ("SL5", "SL4", True), ("SL3", "SL4", False),
     ("SL1", "SL1", True), ("", "SL1", False), ("SL9", "SL1", False)],
)  # fmt: skip
def test_the_level_rule(caller: str, target: str, ok: bool) -> None:
    assert authority.outranks(caller, target) is ok
