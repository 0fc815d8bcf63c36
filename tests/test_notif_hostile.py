"""Notifications against a hostile member and a bad network (pure book, then
in-process nodes): repeats and floods are bounded, a dismissal that overtakes its
notification still wins, and no member mirrors another's notifications."""

from __future__ import annotations

import pytest

from accord.continuity.notify.book import MAX_HELD, NotificationBook
from accord.continuity.notify.messages import DismissParams, Notification
from accord.errors import RemoteError
from accord.node import Node
from tests.nodes import Mesh, household


def _note(origin: str, n: int) -> Notification:
    return Notification(f"{origin}:{n}", origin, origin, f"title {n}", created=float(n))


def test_repeats_change_nothing_and_a_flood_is_bounded() -> None:
    book = NotificationBook()
    assert book.add(_note("a", 1))
    assert not book.add(_note("a", 1))
    for n in range(2, 3 * MAX_HELD):
        book.add(_note("mallory", n))
    assert len(book.all()) == MAX_HELD


def test_a_dismissal_that_overtakes_its_notification_wins() -> None:
    book = NotificationBook()
    assert not book.dismiss("a:1")  # nothing held yet: a tombstone
    assert not book.add(_note("a", 1))
    held = book.get("a:1")
    assert held is not None
    assert held.dismissed
    assert book.newest(()) is None
    assert not book.dismiss("a:1")  # repeats are no-ops


@pytest.fixture
async def three(mesh: Mesh) -> list[Node]:
    return await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"), ("tv", "tv"))


async def test_no_member_mirrors_another_members_notifications(three: list[Node]) -> None:
    laptop, phone, tv = three
    forged = _note(phone.home.device_id, 1)  # the TV claims the phone posted this
    with pytest.raises(RemoteError, match="mirrors only its own"):
        await tv.rpc.call(laptop.home.device_id, "notify", "mirror", forged)
    assert laptop.continuity.notify.listing() == []
    # Its own, mirrored twice, is held once; a dismissal of an unknown id is harmless.
    own = _note(tv.home.device_id, 2)
    for _ in range(2):
        await tv.rpc.call(laptop.home.device_id, "notify", "mirror", own)
    assert [n["id"] for n in laptop.continuity.notify.listing()] == [own.id]
    assert not await tv.rpc.call(laptop.home.device_id, "notify", "dismiss", DismissParams("x:9"))
