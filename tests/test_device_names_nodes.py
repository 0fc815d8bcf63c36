"""Device names on real in-process nodes: `accord call tv ...` reaches a TV named
"Living-room TV", `pair join phone` finds the phone by its type, and a 1-3
character id prefix selects no device (`accord trust revoke l`)."""

from __future__ import annotations

import json

import pytest

from accord.control.aio import AsyncControlClient
from accord.device.home import init_home
from accord.errors import AccordError, TrustError
from accord.node import Node
from tests.nodes import Mesh, accord_async, detailed, sees, wait_until


async def _phone_and_tv(mesh: Mesh, host: str = "Nokia X60") -> tuple[Node, Node]:
    """A Nokia X60 and a TV under their profiles' names; the TV joins the phone's
    circle naming it ``host``."""
    phone = await mesh.start(
        "phone", "nokia-x60", init_home(mesh.folder / "phone", profile_name="nokia-x60")
    )
    tv = await mesh.start("tv", "tv", init_home(mesh.folder / "tv", profile_name="tv"))
    assert (phone.name, tv.name) == ("Nokia X60", "Living-room TV")
    await wait_until(lambda: sees(tv, phone), 5, "the TV to see the phone")
    pin = (await phone.trust.pair_window({"timeout": 30}))["pin"]
    await tv.trust.pair_join({"device": host, "pin": pin})
    await wait_until(detailed(phone, tv), 10, "the phone to hold the TV's details")
    return phone, tv


async def test_call_tv_reaches_the_living_room_tv(mesh: Mesh) -> None:
    phone, tv = await _phone_and_tv(mesh)
    home = str(phone.home.path)
    code, out, err = await accord_async("call", "tv", "device.info", "--json", "--home", home)
    assert code == 0, err
    assert json.loads(out)["name"] == "Living-room TV"
    ctl = AsyncControlClient(phone.home.socket_path)
    for query in ("living", "LIVING-ROOM TV", "television", tv.home.device_id[:4]):
        info = await ctl.call("call", device=query, target="device.info")
        assert info["device_id"] == tv.home.device_id, query
    restricted = await ctl.call("restrict", service="device", devices=["tv"])
    row = next(r for r in restricted["services"] if r["service"] == "device")
    assert row["allowed"] == ["Living-room TV"]


async def test_a_short_id_prefix_revokes_no_one(mesh: Mesh) -> None:
    phone, tv = await _phone_and_tv(mesh)
    ctl = AsyncControlClient(phone.home.socket_path)
    assert phone.circle is not None
    words = [w.lower() for m in phone.circle.members.active() for w in (m.name, m.type)]
    for n in (1, 2, 3):
        prefix = tv.home.device_id[:n]
        if any(w.startswith(prefix) for w in words):
            continue  # ids are random: "l..." names the Living-room TV by its name
        with pytest.raises(AccordError):
            await ctl.call("trust_revoke", device=tv.home.device_id[:n])
        with pytest.raises(TrustError, match="no member"):
            phone.trust.resolve_member(tv.home.device_id[:n])
    assert phone.circle is not None
    assert phone.circle.member(tv.home.device_id) is not None  # still a member


async def test_pair_join_finds_the_host_by_its_type(mesh: Mesh) -> None:
    phone, tv = await _phone_and_tv(mesh, host="phone")
    assert phone.circle is not None
    assert phone.circle.member(tv.home.device_id) is not None
