"""Store identity (issue 13 §5): a store's name, kind, label and merge are the circle's.

The catalog's rules alone, then in-process nodes on real Zenoh: a device that may not
hold the circle's store of a name cannot create its own, and is told so; stores
created apart resolve alike everywhere and are never merged; a member that joins later
takes the circle's store, not the loser's; a hostile member's declarations."""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import Any

import pytest

from accord.data import Replica, SyncMessage
from accord.data import catalog as cat
from accord.data.catalog import CATALOG, Declaration, Settings
from accord.data.control import KvControl
from accord.data.model import DATA_VERSION, Push
from accord.data.opening import HELD_BYTES
from accord.errors import StoreConflict, StoreError, StoreNotHeld, UnknownStore
from accord.node import Node
from tests.nodes import Mesh, household, pair, wait_until

WAIT = 10.0
NOT_HELD = "store 'health' exists in this circle with label S2; this device (SL1) may not hold it"


def _row(by: str, name: str, kind: str = "shared", label: str = "S1", merge: str = "",
         at: int = 1000) -> tuple[str, str, bytes]:  # fmt: skip
    return by, name, cat.encode(Declaration(kind, label, merge, at))  # type: ignore[arg-type]


# -- the rules ------------------------------------------------------------------------


def test_the_winner_is_the_highest_label_then_level_then_the_earliest() -> None:
    levels = {"phone": "SL4", "tablet": "SL3", "fridge": "SL1", "laptop": "SL4"}
    rows = [
        _row("fridge", "health", label="S1", at=1),  # first, but S1
        _row("phone", "health", label="S2", at=500),
        _row("tablet", "health", label="S2", at=400),  # earlier than the phone, lower level
        _row("fridge", "list", kind="shared", at=1),  # same label: the higher level wins
        _row("tablet", "list", kind="per-device", at=900),
        _row("phone", "notes", at=700),  # same label and level: the earliest
        _row("laptop", "notes", kind="per-device", at=600),
        _row("phone", "tie", at=5),  # and then the smaller device id
        _row("laptop", "tie", merge="counter", at=5),
    ]
    for order in (rows, rows[::-1], rows[3:] + rows[:3]):
        found = cat.claims(order, levels)
        winners = {name: (c[0].by, c[0].settings) for name, c in found.items()}
        assert winners == {
            "health": ("phone", Settings("shared", "S2")),
            "list": ("tablet", Settings("per-device", "S1")),
            "notes": ("laptop", Settings("per-device", "S1")),
            "tie": ("laptop", Settings("shared", "S1", "counter")),
        }


def test_declarations_that_do_not_count() -> None:
    levels = {"phone": "SL4", "fridge": "SL1"}
    rows = [
        _row("fridge", "vault", label="S3", at=1),  # above the fridge's level
        _row("gone", "vault", label="S4", at=1),  # not a member (revoked, or a stranger)
        ("fridge", "junk", b"\x93not a declaration"),
        _row("fridge", "Bad Name"),
        _row("fridge", "accord.apps.s2", label="S1"),  # the node's own store
        _row("phone", "vault", label="S3", at=9),
    ]
    found = cat.claims(rows, levels)
    assert list(found) == ["vault"]
    assert [(c.by, c.declaration.label) for c in found["vault"]] == [("phone", "S3")]
    system = cat.resolve("accord.apps.s2", found)
    assert system is not None
    assert (system.by, system.settings) == (cat.SYSTEM_DECLARER, Settings("shared", "S2"))
    assert cat.resolve("nothing", found) is None


# -- nodes ------------------------------------------------------------------------------


def has(node: Node, store: str, key: str, value: bytes | None) -> bool:
    try:
        return node.data.stores.get(store).get(key) == value
    except UnknownStore:
        return False


def knows(node: Node, store: str, by: Node, label: str) -> bool:
    circle = node.data.circle_store(store)
    return circle is not None and (circle.by, circle.declaration.label) == (
        by.home.device_id,
        label,
    )


def others_are(node: Node, store: str, count: int) -> bool:
    """``node`` knows ``count`` members holding another store of that name."""
    return len(node.data.stats(store)["others"]) == count


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh,
        ("phone", "nokia-x60"),  # SL4
        ("tablet", "tablet"),  # SL3
        ("fridge", "midea-fridge"),  # SL1
    )
    return {n.name: n for n in nodes}


async def test_a_device_that_may_not_hold_the_circles_store_cannot_create_one(
    home: dict[str, Node],
) -> None:
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    await phone.data.open("health", label="S2").put("pulse", b"62")
    await wait_until(lambda: has(tablet, "health", "pulse", b"62"), WAIT, "the tablet's copy")
    await wait_until(partial(knows, fridge, "health", phone, "S2"), WAIT, "the fridge's catalog")
    # `kv get`: the store exists, this device may not hold it (not "no store").
    with pytest.raises(StoreNotHeld) as got:
        fridge.data.open_existing("health")
    assert str(got.value).startswith(NOT_HELD)
    assert "declared by phone" in str(got.value)
    kv = KvControl(fridge.data, fridge.trust.resolve_member)
    with pytest.raises(StoreNotHeld, match=re.escape(NOT_HELD)):
        await kv.get({"store": "health", "key": "pulse"})
    # `kv put`, with or without a label: no store of another label, nor of its own.
    for params in ({}, {"label": "S1"}, {"label": "S2"}):
        with pytest.raises(StoreConflict, match=re.escape(NOT_HELD)):
            await kv.put({"store": "health", "key": "pulse", "value": "999", **params})
    with pytest.raises(StoreConflict, match=re.escape(NOT_HELD)):
        fridge.data.open("health")
    assert "health" not in fridge.data.stores.on_disk()
    # It lists the store as one of the circle's it does not hold.
    elsewhere = (await kv.stores({}))["elsewhere"]
    assert [(e["name"], e["label"], e["may_hold"], e["declared_by_name"]) for e in elsewhere] == [
        ("health", "S2", False, "phone")
    ]
    await asyncio.sleep(0.2)
    assert has(phone, "health", "pulse", b"62")
    assert has(tablet, "health", "pulse", b"62")


async def test_a_new_store_takes_the_circles_settings_and_refuses_others(
    home: dict[str, Node],
) -> None:
    phone, tablet = home["phone"], home["tablet"]
    await phone.data.open("tally", kind="per-device", label="S2").put("steps", b"100")
    await wait_until(partial(knows, tablet, "tally", phone, "S2"), WAIT, "the tablet's catalog")
    if "tally" not in tablet.data.stores.on_disk():  # it may have synced there already
        with pytest.raises(StoreConflict, match=r"exists in this circle as per-device, S2"):
            tablet.data.open("tally", label="S2")  # shared, not per-device
    kv = KvControl(tablet.data, tablet.trust.resolve_member)
    await kv.put({"store": "tally", "key": "steps", "value": "7"})  # no settings: the circle's
    store = tablet.data.open_existing("tally")
    assert (store.kind, store.label) == ("per-device", "S2")
    await wait_until(
        lambda: phone.data.stores.get("tally").get("steps", device=tablet.home.device_id) == b"7",
        WAIT,
        "the tablet's write on the phone",
    )


async def test_stores_created_apart_resolve_alike_and_are_never_merged(mesh: Mesh) -> None:
    """Three devices create `health` before they meet (as in a partition, or before the
    catalog synced): the phone S2, the tablet and the fridge S1. Once paired, every
    device names the phone's the circle's store; the others refuse their own writes and
    say why; nothing crosses between stores of one name with different labels."""
    phone = await mesh.start("phone", "nokia-x60")
    tablet = await mesh.start("tablet", "tablet")
    fridge = await mesh.start("fridge", "midea-fridge")
    await fridge.data.open("health").put("pulse", b"999")  # the earliest, but S1
    await tablet.data.open("health").put("pulse", b"70")
    await phone.data.open("health", label="S2").put("pulse", b"62")
    await pair(phone, tablet)
    await pair(phone, fridge)
    everyone = (phone, tablet, fridge)
    for node in everyone:
        await wait_until(partial(knows, node, "health", phone, "S2"), WAIT, f"{node.name}")
    others = {phone: 2, tablet: 1, fridge: 1}  # declarations of another store
    for node, count in others.items():
        await wait_until(
            partial(others_are, node, "health", count), WAIT, f"{node.name}'s declarations"
        )
    # The losers refuse writes and say why; the phone's store is the circle's.
    assert phone.data.conflict("health") is None
    fridge_why, tablet_why = fridge.data.conflict("health"), tablet.data.conflict("health")
    assert fridge_why is not None
    assert "this device (SL1) may not hold it" in fridge_why
    assert tablet_why is not None
    assert "they are different stores" in tablet_why
    for loser in (fridge, tablet):
        with pytest.raises(StoreConflict):
            await loser.data.open_existing("health").put("pulse", b"1")
    await phone.data.open_existing("health").put("pulse", b"63")
    stats = phone.data.stats("health")
    assert sorted(o["device_name"] for o in stats["others"]) == ["fridge", "tablet"]
    assert stats["circle"]["declared_by_name"] == "phone"
    assert fridge.data.stats("health")["conflict"] == fridge_why
    # What each reads: the phone its store; the tablet and the fridge theirs, one
    # store (same settings), where the tablet's later write won. Nothing crossed: had
    # the tablet's S1 store taken the phone's pushes (the SL3 tablet may receive S2),
    # 63 would have reached the SL1 fridge through it.
    await asyncio.sleep(0.5)  # anti-entropy and pushes have had their chance
    assert has(phone, "health", "pulse", b"63")
    assert has(tablet, "health", "pulse", b"70")
    assert has(fridge, "health", "pulse", b"70")
    # The KV API still reads a loser's store, and says why it refuses writes.
    kv = KvControl(fridge.data, fridge.trust.resolve_member)
    got = await kv.get({"store": "health", "key": "pulse"})
    assert (got["text"], got["conflict"]) == ("70", fridge_why)


async def test_a_member_that_joins_later_takes_the_circles_store(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fridge's losing S1 `health` and the phone's S2 one both exist. The TV (SL2),
    which may hold either, joins and hears first from the fridge (the phone's messages
    to it are lost for a while): it opens a store only once its catalog holds the
    sender's declaration, and the catalog, from any member, names the phone's the
    circle's; so it opens the phone's, and fills it when the phone gets through."""
    phone = await mesh.start("phone", "nokia-x60")
    fridge = await mesh.start("fridge", "midea-fridge")
    await fridge.data.open("health").put("pulse", b"999")
    await phone.data.open("health", label="S2").put("pulse", b"62")
    await pair(phone, fridge)
    await wait_until(lambda: fridge.data.conflict("health") is not None, WAIT, "the conflict")
    tv = await mesh.start("tv", "tv")
    lost = True
    send = phone.data._send

    def lossy(peer: str, replica: Replica, message: SyncMessage) -> None:
        if not (lost and peer == tv.home.device_id):
            send(peer, replica, message)

    monkeypatch.setattr(phone.data, "_send", lossy)
    await pair(phone, tv)
    await wait_until(lambda: "health" in tv.data.stores.names(), WAIT, "the TV's store")
    assert tv.data.open_existing("health").label == "S2"
    lost = False
    phone.data.anti_entropy()  # the next round reaches it
    await wait_until(lambda: has(tv, "health", "pulse", b"62"), WAIT, "the TV's copy")
    assert tv.data.conflict("health") is None
    await asyncio.sleep(0.3)
    assert has(tv, "health", "pulse", b"62")


async def test_a_hostile_member_cannot_claim_a_name_above_its_level_or_over_a_higher_one(
    home: dict[str, Node],
) -> None:
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    catalog = fridge.data.stores.get(CATALOG)

    def declare(name: str, kind: str, label: str, at: int) -> None:
        """What a hostile fridge writes straight into its own catalog namespace."""
        catalog.put(name, cat.encode(Declaration(kind, label, "", at)))  # type: ignore[arg-type]
        fridge.data.committed(catalog)

    # Before anyone: it claims `vault` at S3 (above SL1) and `diary` at S1.
    declare("vault", "shared", "S3", 0)
    declare("diary", "per-device", "S1", 0)
    await wait_until(lambda: phone.data.circle_store("diary") is not None, WAIT, "the claims")
    assert phone.data.circle_store("vault") is None  # a claim above its level does not count
    await phone.data.open("vault", label="S3").put("pin", b"1234")
    # The squat at S1 holds: a name is taken (the error says by whom).
    with pytest.raises(StoreConflict, match="declared by fridge"):
        phone.data.open("diary", label="S2")
    # After the phone's S2 store, a claim dated before it, at S1, changes nothing.
    await phone.data.open("health", label="S2").put("pulse", b"62")
    await wait_until(partial(knows, fridge, "health", phone, "S2"), WAIT, "the fridge's catalog")
    declare("health", "shared", "S1", 0)
    # At the phone's own label, by a lower level, backdated: the phone's still wins.
    await phone.data.open("shopping").put("milk", b"1")
    await wait_until(partial(knows, fridge, "shopping", phone, "S1"), WAIT, "shopping")
    declare("shopping", "per-device", "S1", 0)
    await wait_until(
        lambda: any(o["device"] == fridge.home.device_id
                    for o in phone.data.stats("shopping")["others"]),
        WAIT,
        "the phone to see the fridge's claim",
    )  # fmt: skip
    for node in (phone, tablet, fridge):
        assert knows(node, "health", phone, "S2")
        assert knows(node, "shopping", phone, "S1")
    assert phone.data.conflict("health") is None
    assert phone.data.conflict("shopping") is None
    await phone.data.open_existing("shopping").put("eggs", b"2")
    # Nor can it write the catalog through the API.
    with pytest.raises(StoreError, match="written by the node only"):
        await fridge.data.open_existing(CATALOG).put("x", b"y")


async def test_a_push_that_comes_before_its_declaration_is_applied_when_the_store_opens(
    home: dict[str, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new store's first push usually reaches a member just before the catalog push
    that declares it. The member holds that push and applies it once the declaration
    is in: it need not fetch the same rows again (no page comes for the store)."""
    phone, tablet = home["phone"], home["tablet"]
    me = tablet.home.device_id
    declared = False
    real = tablet.data._sender_declared

    def late(store: str, sender: str, asked: Settings) -> bool:
        return (declared or store != "notes") and real(store, sender, asked)

    monkeypatch.setattr(tablet.data, "_sender_declared", late)
    pages: list[str] = []
    on_page = Replica._on_page

    def spy(self: Replica, sender: str, page: Any) -> list[SyncMessage]:
        if self.device_id == me and self.name == "notes":
            pages.append(sender)
        return on_page(self, sender, page)

    monkeypatch.setattr(Replica, "_on_page", spy)
    await phone.data.open("notes").put("milk", b"2 l")
    await wait_until(lambda: ("notes", phone.home.device_id) in tablet.data._held, WAIT, "held")
    assert "notes" not in tablet.data.stores.names()
    declared = True
    tablet.data._recheck()  # what the catalog push does when it lands
    await wait_until(lambda: has(tablet, "notes", "milk", b"2 l"), WAIT, "the tablet's copy")
    await asyncio.sleep(0.3)  # an ask and its answer, had the phone had more
    assert pages == []
    assert tablet.data._held == {}


async def test_pushes_held_for_undeclared_stores_are_bounded_per_sender(
    home: dict[str, Node],
) -> None:
    """A hostile member that pushes stores it never declares gets only its own share
    of memory held (HELD_BYTES), and nothing for a store that does not wait for it."""
    tablet, fridge = home["tablet"], home["fridge"]
    hostile = fridge.home.device_id
    push = Push(DATA_VERSION, "junk", ())  # never applied here: only kept
    assert not tablet.data.hold("junk", hostile, push, 10)  # not waiting for it
    tablet.data._deferred[("junk", hostile)] = Settings("shared", "S1")
    assert tablet.data.hold("junk", hostile, push, HELD_BYTES - 10)
    assert not tablet.data.hold("junk", hostile, push, 11)  # over its share
    assert tablet.data.hold("junk", hostile, push, 10)
    assert sum(size for _, size in tablet.data._held[("junk", hostile)]) == HELD_BYTES
