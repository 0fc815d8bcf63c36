"""The receiver checks labels itself (issue 12's planted bug: a receiver that skips
its own label check on incoming sync went unnoticed, since only the sender's check
was tested). Here the sender is made to break the rule: the SL1 fridge must still
refuse to hold S3 data."""

from __future__ import annotations

import asyncio

from accord.node import Node
from tests.nodes import Mesh, household


async def test_a_low_device_refuses_a_store_above_its_level_that_a_sender_pushes(
    mesh: Mesh,
) -> None:
    phone, fridge = await household(mesh, ("phone", "nokia-x60"), ("fridge", "midea-fridge"))
    vault = phone.data.open("vault", label="S3")
    await vault.put("pin", b"1234")
    replica = phone.data.stores.get("vault")
    fridge_id = fridge.home.device_id
    # What a sender that skipped its own check would send: the push, and a catch-up.
    phone.data._send(fridge_id, replica, replica.summary())
    for push in replica.take_pushes() or []:
        phone.data._send(fridge_id, replica, push)
    await _settle(phone, fridge)
    assert "vault" not in fridge.data.stores.names()
    assert "vault" not in fridge.data.stores.on_disk()


async def _settle(phone: Node, fridge: Node) -> None:
    """Wait until the phone's queue to the fridge is empty and the fridge received
    what was sent (counted on its side), then a little for handling."""
    fridge_id = fridge.home.device_id
    for _ in range(200):
        outbox = phone.data._outboxes.get(fridge_id)
        received = fridge.data.traffic.get(phone.home.device_id)
        if (outbox is None or outbox.queue.empty()) and received and received.messages_received:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the phone's frames never reached the fridge")
