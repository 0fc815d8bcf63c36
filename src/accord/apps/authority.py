"""Who may run code on a device: the level rule, grants, and signed checkpoints (pure).

Installing, removing, running, stopping, moving or messaging an app on a device is
running code there, so the device decides who may (issue 12 §4):

1. The device itself may always.
2. If its owner restricted the ``apps`` service (``accord permissions allow apps
   DEVICE...``), exactly the devices named may, whatever their level; the RPC
   server refuses everyone else before any handler runs. The allow-list overrides
   the level default both ways.
3. Otherwise a member may if its security level is at least the device's
   (:func:`outranks`): the SL1 fridge cannot run code on the SL4 phone.

A move or a failover hands an app to a device from another device that may be
below it (the tablet's app moving back to the phone). That works only with a
:class:`~accord.apps.messages.Grant`: a member's signature over the app id and the
exact content hash, saying "this code may run on members up to my level". A grant
counts on a device when its signer would pass rules 1 to 3 there (:func:`grant_counts`
is the caller's job), so a grant never lifts code above its signer's level, and a
compromised device below cannot forge one or attach one to other code.

Keep-alive checkpoints carry their grant and are signed by the host that wrote them
(:func:`sign_checkpoint`), so a member cannot write a checkpoint in another's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from accord.apps.messages import Checkpoint, Grant
from accord.device.identity import Identity, device_id_for, verify
from accord.errors import PermissionDenied
from accord.trust.members import level_rank

GRANT_CONTEXT: Final = b"accord/v1/app-grant"
CHECKPOINT_CONTEXT: Final = b"accord/v1/app-checkpoint"
SERVICE: Final = "apps"
"""The RPC service whose allow-list (``accord permissions``) decides rule 2."""

KeyOf = Callable[[str], bytes | None]
"""A device id's public key if it is an active member (or this device), else None."""


def outranks(caller_level: str, target_level: str) -> bool:
    """Rule 3: a member may run code on a device of its own level or below. Unknown
    levels fail closed."""
    caller = level_rank(caller_level)
    return caller > 0 and caller >= level_rank(target_level)


def denied(
    action: str, caller: str, caller_level: str, target: str, target_level: str
) -> PermissionDenied:
    """The refusal of rule 3, saying what to do instead."""
    shown = caller_level or "no known level"
    return PermissionDenied(
        f"{caller} ({shown}) may not {action} {target} ({target_level}): only members at "
        f"{target_level} or higher may. Run it from a member at {target_level} or higher, "
        f"or on {target}: accord permissions allow apps {caller} (then only the devices "
        f"named there may use {target}'s apps: name them all)"
    )


def _signed(context: bytes, fields: list[object]) -> bytes:
    return context + msgspec.msgpack.encode(fields)


def grant_bytes(grant: Grant) -> bytes:
    """What a grant's signer signs: the context, then ``[app_id, content_hash, by, at]``
    as a MessagePack array."""
    return _signed(GRANT_CONTEXT, [grant.app_id, grant.content_hash, grant.by, grant.at])


def sign_grant(identity: Identity, app_id: str, content_hash: str, at: float) -> Grant:
    grant = Grant(app_id, content_hash, device_id_for(identity.public_bytes), at)
    return msgspec.structs.replace(grant, signature=identity.sign(grant_bytes(grant)))


def grant_valid(grant: Grant | None, key_of: KeyOf, app_id: str, content_hash: str) -> bool:
    """The grant is for exactly this app and code, and its signer (an active member)
    signed it. Whether it counts on a device is the level or allow-list check."""
    if grant is None or grant.app_id != app_id or grant.content_hash != content_hash:
        return False
    key = key_of(grant.by)
    return key is not None and verify(key, grant.signature, grant_bytes(grant))


def checkpoint_bytes(ckpt: Checkpoint) -> bytes:
    """What the host signs: the context, then the checkpoint without its signature."""
    return CHECKPOINT_CONTEXT + msgspec.msgpack.encode(msgspec.structs.replace(ckpt, signature=b""))


def sign_checkpoint(ckpt: Checkpoint, identity: Identity) -> Checkpoint:
    return msgspec.structs.replace(ckpt, signature=identity.sign(checkpoint_bytes(ckpt)))


def checkpoint_valid(ckpt: Checkpoint, key_of: KeyOf) -> bool:
    """Written by the host it names (an active member), unchanged since."""
    key = key_of(ckpt.host)
    return key is not None and verify(key, ckpt.signature, checkpoint_bytes(ckpt))


def authority_level(ckpt: Checkpoint, key_of: KeyOf, level_of: Callable[[str], str]) -> str:
    """The highest level a checkpoint's app may fail over to: its grant signer's level
    if the grant is valid, else the level of the host that wrote it."""
    if grant_valid(ckpt.grant, key_of, ckpt.app_id, ckpt.content_hash):
        assert ckpt.grant is not None
        return level_of(ckpt.grant.by)
    return level_of(ckpt.host)
