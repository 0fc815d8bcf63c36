"""Notifications that follow you: ``accord notify``, ``accord notifications``.

A notification belongs to the device it was posted on (its *origin*); its id is
``<origin>:<counter>``. The origin mirrors it once, directly, to every online
member; a member keeps it if it opted in (``notify_mirror``) and does not mute its
app. Nobody forwards what it did not originate, and every step is idempotent by id,
so there are no loops or duplicates whatever the topology. Dismissing on any device
dismisses it on every member (a tombstone keeps a late mirror from bringing it back).
"""
