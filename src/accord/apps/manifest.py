"""The app manifest, ``accord-app.toml``: what an app is and what it needs.

The keys sit at the top level of the TOML file::

    id = "com.example.notes"
    version = "1.0.0"
    entry = "notes.app:Notes"    # module, optionally ":Class"
    requires = ["display"]
    state_label = "S2"           # the label of the app's state (default S1)
    stores = ["notes"]           # the only stores the app may open (default none)

Parsing is strict, like device profiles: an unknown key, a wrong type or an
out-of-range value is a :class:`ManifestError` that names the file and the key,
because a typo silently ignored would only show up later as a misplaced app.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import msgspec

from accord.apps.errors import ManifestError
from accord.trust.levels import DataLabel

MANIFEST_NAME = "accord-app.toml"
"""The manifest's file name, at the root of an app folder and of its bundle."""

ID_PATTERN = r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRY_PATTERN = rf"^{_IDENT}(\.{_IDENT})*(:{_IDENT})?$"
CAPABILITY_PATTERN = r"^[a-z][a-z0-9-]*$"
STORE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # as accord.data.limits.STORE_NAME

AppId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, min_length=1, max_length=64)]
Version = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Entry = Annotated[str, msgspec.Meta(pattern=ENTRY_PATTERN, max_length=200)]
Capability = Annotated[str, msgspec.Meta(pattern=CAPABILITY_PATTERN, max_length=64)]
Seconds = Annotated[float, msgspec.Meta(ge=0.5, le=3600.0)]
StoreName = Annotated[str, msgspec.Meta(pattern=STORE_PATTERN)]


class AppManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An app's identity, entry point, needs and lifecycle options."""

    id: AppId
    version: Version
    entry: Entry
    requires: Annotated[list[Capability], msgspec.Meta(max_length=32)] = []
    continuable: bool = True
    """The app may move to another device (its state is saved and restored there)."""
    keep_alive: bool = False
    """Restart the app elsewhere, from its last checkpoint, if its device goes away."""
    checkpoint_s: Seconds = 5.0
    """Seconds between keep-alive checkpoints of the app's state."""
    prefer_display: bool = False
    """Placement prefers a larger display even when ``display`` is not required."""
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    state_label: DataLabel = "S1"
    """The data label of the app's state: its checkpoints live in a store of this label
    (only members whose level may hold it receive them, or run the app), and it is
    the app's own level when it opens stores (see ``stores``)."""
    stores: Annotated[list[StoreName], msgspec.Meta(max_length=32)] = []
    """The replicated stores the app may open, by name; it can reach no other. It may
    read a store labelled at most ``state_label`` and write one labelled at least
    ``state_label`` (no reading up, no writing down); a store it creates gets
    ``state_label``."""

    @property
    def entry_module(self) -> str:
        """The module part of ``entry`` (``"notes.app"`` for ``"notes.app:Notes"``)."""
        return self.entry.partition(":")[0]

    @property
    def entry_class(self) -> str | None:
        """The class part of ``entry``, or None to let the loader find the Ability."""
        return self.entry.partition(":")[2] or None


_FIELDS: tuple[str, ...] = AppManifest.__struct_fields__

_HINTS = {
    "id": "an app id is lower-case letters, digits and '-', in dot-separated parts "
    "starting with a letter, at most 64 characters, e.g. 'com.example.notes'",
    "version": "version is a non-empty string of at most 32 characters, e.g. '1.0.0'",
    "entry": "entry names the module to load, e.g. 'notes' or 'notes.app', optionally "
    "with the class: 'notes.app:Notes'",
    "requires": "requires lists capability names such as 'display', 'camera', 'speaker'",
    "checkpoint_s": "checkpoint_s is the number of seconds between keep-alive checkpoints, "
    "from 0.5 to 3600",
    "state_label": "state_label is the data label of the app's state: S1, S2, S3 or S4",
    "stores": "stores lists the store names the app may open: lower-case letters, digits, "
    "'_', '.', '-', at most 64 characters, e.g. 'notes'",
}
_AT_FIELD = re.compile(r"at `\$\.(\w+)")


def parse_manifest(text: str | bytes, source: str = "<manifest>") -> AppManifest:
    """Parse and validate a manifest's TOML text; errors name ``source`` and the key."""
    try:
        raw = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{source}: malformed TOML: {exc}") from exc
    return manifest_from_dict(raw, source)


def manifest_from_dict(raw: dict[str, Any], source: str = "<manifest>") -> AppManifest:
    """Validate an already-parsed manifest table (see :func:`parse_manifest`)."""
    for key in raw:
        if key not in _FIELDS:
            hint = (
                "put the app's keys at the top level of the file, not under [app]"
                if key == "app"
                else f"known keys are: {', '.join(_FIELDS)}"
            )
            raise ManifestError(f"{source}: unknown key {key!r}; {hint}")
    try:
        manifest = msgspec.convert(raw, AppManifest, strict=True)
    except msgspec.ValidationError as exc:
        match = _AT_FIELD.search(str(exc))
        hint = _HINTS.get(match.group(1), "") if match else ""
        raise ManifestError(f"{source}: {exc}" + (f"; {hint}" if hint else "")) from exc
    for key, values in (("requires", manifest.requires), ("stores", manifest.stores)):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise ManifestError(f"{source}: {key} lists {value!r} twice; keep one")
            seen.add(value)
    for store in manifest.stores:
        if store == "accord" or store.startswith("accord."):
            raise ManifestError(
                f"{source}: stores names {store!r}; stores named accord.* are the node's "
                "own (checkpoints, settings): an app cannot open them"
            )
    return manifest


def load_manifest(folder: Path) -> AppManifest:
    """Read ``folder/accord-app.toml``."""
    path = folder / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(
            f"{folder} has no {MANIFEST_NAME}; an app folder needs one at its root, with at "
            'least: id = "com.example.app", version = "1.0.0", entry = "module"'
        ) from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror}") from exc
    return parse_manifest(data, str(path))
