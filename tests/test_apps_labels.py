"""An app's state keeps the label its manifest declares (issue 12 §4).

Checkpoints of an app with ``state_label = "Sn"`` live in a store of that label
(``accord.apps`` for S1, ``accord.apps.sn`` above), so they reach only members whose
level may hold it; failover picks only such members; a move refuses a target that
may not hold the state, before the state leaves; ``ps`` and ``send`` do not show a
member an app's state above its level.

The attack it answers: app checkpoints always travelled as S1, so an app's state
reached every member, the SL1 fridge included.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, LevelDenied, RemoteError
from accord.node import Node
from tests.nodes import Mesh, household, wait_until

SECRET = "state only SL3 and above may hold"

APP = """
from typing import Any

from accord.apps import Ability


class Diary(Ability):
    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        self.text = restored.decode() if restored else str(params.get("text", ""))

    async def on_save(self) -> bytes:
        return self.text.encode()

    async def on_message(self, message: Any) -> Any:
        return {"text": self.text, "device": self.device_name}

    def describe(self) -> dict[str, Any]:
        return {"text": self.text}
"""


def _app(tmp_path: Path, label: str) -> Path:
    folder = tmp_path / "diary"
    folder.mkdir()
    (folder / "accord-app.toml").write_text(
        'id = "diary"\nversion = "1"\nentry = "diary"\nkeep_alive = true\n'
        f'checkpoint_s = 0.5\nstate_label = "{label}"\n'
    )
    (folder / "diary.py").write_text(APP)
    return folder


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("fridge", "midea-fridge")
    )
    return {n.name: n for n in nodes}


def ctl(node: Node) -> AsyncControlClient:
    return AsyncControlClient(node.home.socket_path)


def _scan(node: Node, store: str, prefix: str) -> list[Any]:
    try:
        return node.data.stores.get(store).scan(prefix)
    except AccordError:
        return []


async def _running(node: Node) -> list[dict[str, Any]]:
    return [r for r in (await ctl(node).call("ps"))["running"] if r["app_id"] == "diary"]


async def test_checkpoints_keep_the_state_label_and_failover_respects_it(
    home: dict[str, Node], tmp_path: Path
) -> None:
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    await ctl(phone).call("app_install", path=str(_app(tmp_path, "S3")))
    await ctl(phone).call("app_run", app="diary", on="self", params={"text": SECRET})
    await wait_until(
        lambda: bool(_scan(tablet, "accord.apps.s3", "ckpt/diary")), 10, "the S3 checkpoint"
    )
    await asyncio.sleep(1.0)  # more checkpoints and anti-entropy: nothing may leak
    # The fridge (SL1) holds no part of it, in any store.
    assert "accord.apps.s3" not in fridge.data.stores.on_disk()
    assert _scan(fridge, "accord.apps", "ckpt/diary") == []
    assert _scan(fridge, "accord.apps", "blob/diary/") == []
    for name in fridge.data.stores.on_disk():
        assert all(SECRET.encode() not in e.value for e in _scan(fridge, name, ""))
    # ps shows the fridge that it runs, not its state; the tablet (SL3) sees both.
    fridge_view: list[dict[str, Any]] = await fridge.rpc.call(
        phone.home.device_id, "apps", "ps", None, timeout=5
    )
    assert [("status" in r, r["state_label"]) for r in fridge_view] == [(False, "S3")]
    tablet_view: list[dict[str, Any]] = await tablet.rpc.call(
        phone.home.device_id, "apps", "ps", None, timeout=5
    )
    assert tablet_view[0]["status"] == {"text": SECRET}

    # The phone goes: the fridge is on mains power and would rank first, but may not
    # hold S3; the tablet takes the app over, with its state.
    await phone.stop()
    end = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while time.monotonic() < end and not rows:
        rows = await _running(tablet)
        await asyncio.sleep(0.05)
    assert [r["device"] for r in rows] == ["tablet"]
    assert rows[0]["status"] == {"text": SECRET}
    assert "diary" not in fridge.apps.installed()


async def test_an_s1_app_still_checkpoints_to_every_member(
    home: dict[str, Node], tmp_path: Path
) -> None:
    phone, fridge = home["phone"], home["fridge"]
    await ctl(phone).call("app_install", path=str(_app(tmp_path, "S1")))
    await ctl(phone).call("app_run", app="diary", on="self", params={"text": "shopping"})
    await wait_until(lambda: bool(_scan(fridge, "accord.apps", "ckpt/diary")), 10, "S1 ckpt")


async def test_a_move_refuses_a_target_that_may_not_hold_the_state(
    home: dict[str, Node], tmp_path: Path
) -> None:
    phone, fridge = home["phone"], home["fridge"]
    await ctl(phone).call("app_install", path=str(_app(tmp_path, "S2")))
    await ctl(phone).call("app_run", app="diary", on="self", params={"text": SECRET})
    with pytest.raises(RemoteError, match=r"fridge is SL1; data labelled S2 needs SL2"):
        await ctl(phone).call("app_move", app="diary", to="fridge")
    with pytest.raises(LevelDenied):
        await phone.apps.move("diary", fridge.home.device_id)
    [row] = await _running(phone)
    assert (row["device"], row["paused"], row["status"]) == ("phone", False, {"text": SECRET})
    assert "diary" not in fridge.apps.installed()  # not even the code went


async def test_an_allow_list_does_not_lift_the_label_of_an_apps_state(
    home: dict[str, Node], tmp_path: Path
) -> None:
    """The tablet's owner lets the fridge manage apps there; the fridge still gets no
    S3 state back from ``send``, and no S3 app placed on it."""
    tablet, fridge = home["tablet"], home["fridge"]
    await ctl(tablet).call("restrict", service="apps", devices=["fridge"])
    await ctl(fridge).call("app_install", path=str(_app(tmp_path, "S3")), on="tablet")
    await ctl(fridge).call("app_run", app="diary", on="tablet", params={"text": SECRET})
    with pytest.raises(RemoteError, match="LevelDenied: fridge is SL1; data labelled S3"):
        await fridge.rpc.call(tablet.home.device_id, "apps", "send", {"app_id": "diary"}, timeout=5)
    view: list[dict[str, Any]] = await fridge.rpc.call(
        tablet.home.device_id, "apps", "ps", None, timeout=5
    )
    assert "status" not in view[0]
    with pytest.raises(RemoteError, match="fridge is SL1; data labelled S3 needs SL3"):
        await ctl(tablet).call("app_move", app="diary", to="fridge")
