"""The circle's state in the device home (``data/circle.msgpack``, mode 0600).

Written atomically (temp file, fsync, rename), so a crash mid-write leaves the
previous state. Holds what must survive a restart: the member list, the circle key
of each live epoch, failed pairing attempts, and the boot counter that numbers this
device's sealed streams.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Final

import msgspec

from accord.device.fileio import write_atomically
from accord.device.identity import Identity
from accord.errors import HomeError, TrustError
from accord.trust.members import Member, MemberList, new_circle

FILE_NAME = "circle.msgpack"
# The epoch travels as a u32 in every sealed frame's header. The last value is never
# reached by rotation, so a state on disk can always be sealed with and rotated once.
MAX_EPOCH: Final = 2**32 - 2
Epoch = Annotated[int, msgspec.Meta(ge=1, le=MAX_EPOCH)]


class CircleState(msgspec.Struct, forbid_unknown_fields=True):
    members: MemberList
    epoch: Epoch
    keys: dict[Epoch, bytes]  # epoch -> 32-byte circle key; old epochs dropped after rotation
    boot: int = 0
    pairing_failures: int = 0
    pairing_pin: str = ""
    pairing_expires: float = 0.0
    key_issuer: str = ""  # who made the current epoch's key (ties break to the smallest)

    @property
    def circle_key(self) -> bytes:
        return self.keys[self.epoch]

    def rotated(self, issuer: str) -> CircleState:
        """A copy with a new key epoch (after a revocation); self is left unchanged, so
        a caller can build everything that depends on it before anything is saved."""
        if self.epoch >= MAX_EPOCH:
            raise TrustError(
                f"the circle key epoch is at its limit ({MAX_EPOCH}); found a new circle "
                "(accord trust leave on every device, then pair again)"
            )
        epoch = self.epoch + 1
        return msgspec.structs.replace(
            self, epoch=epoch, keys={epoch: secrets.token_bytes(32)}, key_issuer=issuer
        )


def founding_state(
    identity: Identity, name: str, type_: str, level: str, now: float
) -> CircleState:
    """A circle of one, as every device starts before it pairs."""
    me = Member(
        device_id=identity.device_id,
        public_key=identity.public_bytes,
        name=name,
        type=type_,
        security_level=level,
        added_by=identity.device_id,
        added_at=now,
    )
    circle_id = secrets.token_hex(8)
    return CircleState(new_circle(me, circle_id), 1, {1: secrets.token_bytes(32)})


class CircleStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._decoder = msgspec.msgpack.Decoder(CircleState)

    def load(self) -> CircleState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HomeError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return self._decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise HomeError(
                f"{self.path} is damaged ({exc}); restore it from a backup, or leave the "
                "circle and pair again"
            ) from exc

    def save(self, state: CircleState) -> None:
        write_atomically(self.path, msgspec.msgpack.encode(state))

    def next_boot(self, state: CircleState) -> int:
        """Count this start and persist it before any frame is sealed with it."""
        state.boot += 1
        self.save(state)
        return state.boot
