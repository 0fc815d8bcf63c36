"""Per-device continuity settings, kept in the home (``HOME/data/continuity.json``)
and changed with ``accord settings NAME=VALUE`` while the node runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from accord.continuity.errors import SettingsError
from accord.device.fileio import write_atomically
from accord.errors import HomeError

FILE = "continuity.json"


class ContinuitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    inbox: str = ""  # where received files land; "" means HOME/inbox
    clip_expiry_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 120.0
    clip_send: bool = True  # announce this device's copies to the circle
    clip_receive: bool = True  # take other devices' copies
    notify_mirror: bool = True  # show other members' notifications here
    notify_dnd: bool = False  # do not disturb: keep them, show none on the display
    notify_muted_apps: tuple[str, ...] = ()  # apps whose notifications are not shown

    def with_changes(self, pairs: list[str]) -> ContinuitySettings:
        fields = msgspec.to_builtins(self)
        for pair in pairs:
            name, sep, value = pair.partition("=")
            name = name.strip()
            if not sep or name not in fields:
                known = ", ".join(sorted(fields))
                raise SettingsError(f"unknown setting {pair!r}; known: {known} (NAME=VALUE)")
            if name == "notify_muted_apps":
                fields[name] = [a.strip() for a in value.split(",") if a.strip()]
            else:
                fields[name] = value.strip()
        try:
            return msgspec.convert(fields, ContinuitySettings, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid setting: {exc}") from exc


class SettingsStore:
    """The settings file; ``current`` is what the services read (changes take effect
    at once)."""

    def __init__(self, home: Path, data_dir: Path) -> None:
        self._home = home
        self.path = data_dir / FILE
        self.current = self._load()

    def _load(self) -> ContinuitySettings:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ContinuitySettings()
        except OSError as exc:
            raise HomeError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return msgspec.json.decode(raw, type=ContinuitySettings)
        except msgspec.DecodeError as exc:
            raise HomeError(f"{self.path} is damaged ({exc}); fix or delete it") from exc

    def change(self, pairs: list[str]) -> ContinuitySettings:
        new = self.current.with_changes(pairs)
        write_atomically(self.path, msgspec.json.format(msgspec.json.encode(new)) + b"\n")
        self.current = new
        return new

    def inbox(self) -> Path:
        """Where received files land: the ``inbox`` setting, else ``HOME/inbox``."""
        raw = self.current.inbox
        return Path(raw).expanduser() if raw else self._home / "inbox"
