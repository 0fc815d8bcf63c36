"""Which devices may use which of this device's services, kept in the home.

Services are members-only by default; restricting one names the only members
that may call it. The callee enforces it (docs/protocol.md: PermissionDenied).

The ``apps`` service has a default of its own: members may list apps, but only those
at this device's security level or higher may install, run, stop, move or message
them (:mod:`accord.apps.authority`). Restricting ``apps`` replaces that rule: the
members named may, whatever their level, and no one else may.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from accord.device.fileio import write_atomically
from accord.errors import HomeError

FILE = "permissions.json"


class Permissions(msgspec.Struct, forbid_unknown_fields=True):
    restricted: dict[str, list[str]] = {}  # service -> device ids allowed


class PermissionStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE

    def load(self) -> Permissions:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Permissions()
        except OSError as exc:
            raise HomeError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return msgspec.json.decode(raw, type=Permissions)
        except msgspec.DecodeError as exc:
            raise HomeError(
                f"{self.path} is damaged ({exc}); fix or delete it (every service then "
                "becomes open to all members again)"
            ) from exc

    def save(self, perms: Permissions) -> None:
        write_atomically(self.path, msgspec.json.format(msgspec.json.encode(perms)) + b"\n")
