"""The stores of one device: opened by name, one SQLite file each in the data directory."""

from __future__ import annotations

from pathlib import Path

import msgspec

from accord.clock import HybridClock
from accord.data.limits import DEFAULT_PAGE_BYTES, check_store_name
from accord.data.merge import Merge
from accord.data.peers import Peers
from accord.data.provenance import Signer
from accord.data.replica import Replica
from accord.data.rules import StoreConfig, StoreKind
from accord.data.sqlite_store import StoreFile, Synchronous
from accord.data.store import TOMBSTONE_GRACE_S
from accord.errors import StoreError, StoreMismatch, UnknownStore
from accord.trust.levels import DataLabel

SUFFIX = ".kv.sqlite"


class Stores:
    """Every open store of this device. The node routes a peer's sync message with
    :meth:`get` (an unknown name is :class:`UnknownStore`)."""

    def __init__(
        self,
        directory: Path,
        *,
        device_id: str,
        hlc: HybridClock,
        peers: Peers,
        synchronous: Synchronous = "FULL",
        page_bytes: int = DEFAULT_PAGE_BYTES,
        tombstone_grace_s: float = TOMBSTONE_GRACE_S,
        signer: Signer | None = None,
    ) -> None:
        self.directory = directory
        self._signer = signer
        self._device_id = device_id
        self._hlc = hlc
        self._peers = peers
        self._synchronous: Synchronous = synchronous
        self._page_bytes = page_bytes
        self._grace_s = tombstone_grace_s
        self._open: dict[str, Replica] = {}

    def path_of(self, name: str) -> Path:
        return self.directory / f"{check_store_name(name)}{SUFFIX}"

    def open(
        self,
        name: str,
        *,
        kind: StoreKind = "shared",
        label: DataLabel = "S1",
        merge: Merge | None = None,
    ) -> Replica:
        """Open (creating if new) the store ``name``. Opening an open store again
        with the same settings returns it; other settings are :class:`StoreMismatch`."""
        path = self.path_of(name)
        replica = self._open.get(name)
        if replica is not None:
            same = (kind, label) == (replica.kind, replica.label) and merge is replica.merge
            if not same:
                raise StoreMismatch(f"store {name!r} is already open with other settings")
            return replica
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {self.directory}: {exc}") from exc
        replica = Replica.open(
            path,
            name=name,
            device_id=self._device_id,
            hlc=self._hlc,
            peers=self._peers,
            kind=kind,
            label=label,
            merge=merge,
            synchronous=self._synchronous,
            page_bytes=self._page_bytes,
            tombstone_grace_s=self._grace_s,
            signer=self._signer,
        )
        self._open[name] = replica
        return replica

    def stored_config(self, name: str) -> StoreConfig | None:
        """The settings a store on disk was created with (None if it has no file)."""
        path = self.path_of(name)
        if not path.is_file():
            return None
        file = StoreFile(path, synchronous=self._synchronous)
        try:
            blob = file.get_meta("config")
        finally:
            file.close()
        if blob is None:
            return None
        try:
            return msgspec.msgpack.decode(blob, type=StoreConfig)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreError(f"store file {path} has unreadable settings: {exc}") from exc

    def get(self, name: str) -> Replica:
        replica = self._open.get(name)
        if replica is None:
            raise UnknownStore(f"no store named {name!r} is open on this device")
        return replica

    def names(self) -> list[str]:
        return sorted(self._open)

    def on_disk(self) -> list[str]:
        """Store names with a file in the directory (open or not)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name.removesuffix(SUFFIX) for p in self.directory.glob(f"*{SUFFIX}"))

    def close(self) -> None:
        for replica in self._open.values():
            replica.close()
        self._open.clear()
