"""Data stores between in-process nodes on real Zenoh: push, watch, atomic batches,
merge, labels, per-device namespaces, revocation and hostile frames."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
import zenoh

from accord.bus import keys
from accord.data import COUNTER, ChangeSet
from accord.errors import ReadOnlyNamespace, StoreError, UnknownStore, ValueTooLarge
from accord.node import Node
from tests.nodes import Mesh, household, wait_until
from tests.test_data_durability import durability_of

WAIT = 10.0


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh,
        ("phone", "nokia-x60"),  # SL4
        ("tablet", "tablet"),  # SL3
        ("fridge", "midea-fridge"),  # SL1
        ("laptop", "laptop"),  # SL4
    )
    return {n.name: n for n in nodes}


def has(node: Node, store: str, key: str, value: bytes | None) -> bool:
    try:
        replica = node.data.stores.get(store)
    except UnknownStore:
        return False
    return replica.get(key) == value


async def test_a_put_reaches_every_member_and_their_watchers(home: dict[str, Node]) -> None:
    phone, tablet = home["phone"], home["tablet"]
    notes = phone.data.open("notes")
    await notes.put("todo", b"milk")  # creates the store everywhere it syncs
    for node in home.values():
        await wait_until(partial(has, node, "notes", "todo", b"milk"), WAIT, node.name)
    seen: list[ChangeSet] = []
    async with tablet.data.open_existing("notes").watch("to") as changes:
        await notes.put("todo", b"eggs")
        await notes.put("other", b"ignored by the prefix")
        async for change_set in changes:
            seen.append(change_set)
            break
    assert seen[0].source in ("push", "catch-up")  # a pull may have fetched it first
    assert [(c.key, c.value, c.origin) for c in seen[0].changes] == [
        ("todo", b"eggs", phone.home.device_id)
    ]
    assert await tablet.data.open_existing("notes").get("todo") == b"eggs"


async def test_a_batch_arrives_whole_in_one_change_set(home: dict[str, Node]) -> None:
    phone, laptop = home["phone"], home["laptop"]
    index = phone.data.open("index")
    await index.put("seed", b"0")
    await wait_until(lambda: has(laptop, "index", "seed", b"0"), WAIT, "the store on the laptop")
    got: list[ChangeSet] = []
    async with laptop.data.open_existing("index").watch() as changes:
        async with index.batch() as b:
            for i in range(50):
                b.put(f"entry/{i:02d}", b"x" * 100)
            b.put("index", b"50 entries")
            b.delete("seed")
        async for change_set in changes:
            got.append(change_set)
            break
    assert len(got[0].changes) == 52  # never an index without its entries
    assert {c.key for c in got[0].changes} >= {"index", "seed", "entry/49"}


async def test_concurrent_counter_increments_converge(home: dict[str, Node]) -> None:
    nodes = [home["phone"], home["tablet"], home["laptop"]]
    stores = [n.data.open("votes", merge=COUNTER) for n in nodes]
    await wait_until(
        lambda: all("votes" in n.data.stores.names() for n in home.values()),
        WAIT,
        "the counter store on every node",
    )
    for _ in range(5):
        await asyncio.gather(
            *(
                s.update("yes", partial(COUNTER.add, device=n.home.device_id, amount=1))
                for s, n in zip(stores, nodes, strict=True)
            )
        )

    def counted(node: Node) -> bool:
        return COUNTER.value(node.data.stores.get("votes").get("yes")) == 15

    for node in home.values():
        await wait_until(partial(counted, node), WAIT, f"{node.name} to count 15")


async def test_labelled_data_never_reaches_a_lower_level(home: dict[str, Node]) -> None:
    phone, tablet, fridge = home["phone"], home["tablet"], home["fridge"]
    secret = phone.data.open("health", label="S2")
    await secret.put("pulse", b"62")
    await wait_until(lambda: has(tablet, "health", "pulse", b"62"), WAIT, "the SL3 tablet")
    # A positive control: an S1 write after it does reach the fridge...
    await phone.data.open("public").put("k", b"v")
    await wait_until(lambda: has(fridge, "public", "k", b"v"), WAIT, "the fridge")
    await asyncio.sleep(0.2)  # (a late S2 frame would have had the same path)
    # ...but the S2 store never did: no store, no file.
    assert "health" not in fridge.data.stores.names()
    assert "health" not in fridge.data.stores.on_disk()
    assert phone.data.stats("health")["shared_with"] == sorted(
        n.home.device_id for n in (tablet, home["laptop"])
    )


async def test_per_device_namespaces_are_read_only_to_others(home: dict[str, Node]) -> None:
    phone, tablet = home["phone"], home["tablet"]
    mine = phone.data.open("status", kind="per-device")
    await mine.put("battery", b"80")
    await wait_until(
        lambda: (
            "status" in tablet.data.stores.names()
            and tablet.data.stores.get("status").get("battery", device=phone.home.device_id)
            == b"80"
        ),
        WAIT,
        "the tablet to read the phone's namespace",
    )
    theirs = tablet.data.open_existing("status")
    assert theirs.kind == "per-device"
    with pytest.raises(ReadOnlyNamespace):
        theirs.replica.put("battery", b"0", device=phone.home.device_id)
    await theirs.put("battery", b"55")  # its own namespace
    await wait_until(
        lambda: (
            phone.data.stores.get("status").get("battery", device=tablet.home.device_id) == b"55"
        ),
        WAIT,
        "the phone to read the tablet's namespace",
    )
    assert await mine.get("battery") == b"80"


async def test_typed_values_and_limits(home: dict[str, Node]) -> None:
    store = home["laptop"].data.open("typed")
    await store.put("point", {"x": 1, "y": [2, 3]})
    assert await store.get_as("point", dict[str, object]) == {"x": 1, "y": [2, 3]}
    with pytest.raises(StoreError, match="is not a int"):
        await store.get_as("point", int)
    with pytest.raises(ValueTooLarge):
        await store.put("big", b"x" * (4 * 1024 * 1024 + 1))
    with pytest.raises(StoreError, match="cannot store a object"):
        await store.put("bad", object())


async def test_a_revoked_device_cannot_write_to_the_circle(home: dict[str, Node]) -> None:
    phone, fridge, laptop, tablet = home["phone"], home["fridge"], home["laptop"], home["tablet"]
    shared = phone.data.open("shared")
    await shared.put("k", b"1")
    await wait_until(lambda: has(fridge, "shared", "k", b"1"), WAIT, "the fridge")
    await phone.trust.trust_revoke({"device": "fridge"})
    await wait_until(
        lambda: all(
            not n.circle.is_member(fridge.home.device_id)  # type: ignore[union-attr]
            for n in (laptop, tablet)
        ),
        WAIT,
        "every member to hear of the revocation",
    )
    await fridge.data.open_existing("shared").put("evil", b"from the fridge")
    await laptop.data.open_existing("shared").put("after", b"from the laptop")
    for node in (phone, tablet):
        await wait_until(partial(has, node, "shared", "after", b"from the laptop"), WAIT, "ok")
    await asyncio.sleep(0.2)
    for node in (phone, tablet, laptop):
        assert node.data.stores.get("shared").get("evil") is None


async def test_garbage_on_the_data_key_changes_nothing(home: dict[str, Node], mesh: Mesh) -> None:
    phone, tablet = home["phone"], home["tablet"]
    store = phone.data.open("robust")
    await store.put("k", b"1")
    await wait_until(lambda: has(tablet, "robust", "k", b"1"), WAIT, "the tablet")
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("connect/endpoints", f'["{mesh.endpoints[0]}"]')
    conf.insert_json5("scouting/multicast/enabled", "false")
    stranger = zenoh.open(conf)
    try:
        target = keys.data_key(tablet.home.device_id)
        for junk in (b"", b"\x01" * 10, b"\x01\x01" + b"\x00" * 200, bytes(range(256)) * 100):
            stranger.put(target, junk)
        # A real frame header naming the phone as sender, on a session nobody holds.
        header = bytes([1, 1]) + bytes(16) + bytes(16)
        stranger.put(target, header + b"\x00" * 64)
    finally:
        stranger.close()  # type: ignore[no-untyped-call]
    await store.put("k", b"2")
    await wait_until(lambda: has(tablet, "robust", "k", b"2"), WAIT, "sync still working")
    assert tablet.data.stores.get("robust").count() == 1


async def test_a_nodes_stores_sync_every_commit_to_disk(mesh: Mesh) -> None:
    """The stores a running node opens (its own ``accord.apps`` and the user's) ask
    SQLite for an fsync on every commit; see test_data_durability for what this can
    and cannot prove."""
    node = await mesh.start("solo", "laptop")
    await node.data.open("notes").put("k", b"v")
    for name in ("notes", "accord.apps"):
        assert durability_of(node.data.stores.get(name)._file) == ("wal", "FULL"), name


async def test_a_member_that_does_not_hold_a_store_answers_a_pull_at_once(
    home: dict[str, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull to a member that does not hold the store (here: its catalog lags, so it
    waits for the declaration) gets an empty summary at once, so the puller's
    one-at-a-time catch-up passes its turn on instead of waiting out a silence."""
    phone, tablet = home["phone"], home["tablet"]
    monkeypatch.setattr(tablet.data, "_sender_declared", lambda *_args: False)
    await phone.data.open("diary").put("k", b"v")
    replica = phone.data.stores.get("diary")
    replica._stall_ms = 600_000  # a silent member would hold the turn for ten minutes
    phone.data._send(tablet.home.device_id, replica, replica.pull_from(tablet.home.device_id))
    assert replica.catching_up() == tablet.home.device_id
    await wait_until(lambda: replica.catching_up() is None, WAIT, "the turn to pass on")
