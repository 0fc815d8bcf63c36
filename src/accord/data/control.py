"""The control methods behind ``accord kv``: the node's stores, for local tools.

Values cross the control socket as base64 (``value_b64``); a value that is UTF-8
text of at most TEXT_MAX bytes also comes back as ``text``, so scripts need not
decode it. Every reply stays within the control socket's line limit: ``kv_ls``
stops early (``truncated``) and ``kv_watch`` splits a large change set over several
events rather than send a line no client can read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, get_args

import msgspec

from accord.control.server import ControlServer
from accord.data import ChangeSet, Op
from accord.data.api import DataStore
from accord.data.rules import StoreKind
from accord.data.service import BUILTIN_MERGES, DataService
from accord.errors import AccordError, ControlError, UnknownStore
from accord.trust.levels import DataLabel
from accord.trust.members import Member

MAX_LIST = 100_000  # keys one `kv ls` returns
TEXT_MAX = 256 * 1024  # larger values come back as value_b64 only
# Bytes of entries or changes in one reply or event: a 4 MiB value in base64 fits,
# and so does the framing, under the control socket's 8 MiB line (MAX_LINE).
REPLY_BUDGET = 6 * 1024 * 1024


class KvControl:
    def __init__(self, data: DataService, resolve_member: Callable[[str], Member]) -> None:
        self._data = data
        self._resolve = resolve_member

    def register(self, control: ControlServer) -> None:
        control.add("kv_stores", self.stores)
        control.add("kv_put", self.put)
        control.add("kv_get", self.get)
        control.add("kv_del", self.delete)
        control.add("kv_batch", self.batch)
        control.add("kv_ls", self.ls)
        control.add_stream("kv_watch", self.watch)

    def _store(self, params: dict[str, Any], *, create: bool = False) -> DataStore:
        name = str(params.get("store", ""))
        if not name:
            raise ControlError("name the store")
        try:
            return self._data.open_existing(name)
        except UnknownStore:
            if not create:
                raise
        # A new store takes the circle's settings for its name, unless told otherwise
        # (then settings that differ from the circle's are StoreConflict).
        circle = self._data.circle_settings(name)
        kind = str(params.get("kind") or (circle.kind if circle else "shared"))
        label = str(params.get("label") or (circle.label if circle else "S1"))
        merge_name = str(params.get("merge") or (circle.merge if circle else ""))
        if kind not in get_args(StoreKind):
            raise ControlError(f"unknown store kind {kind!r}; use shared or per-device")
        if label not in get_args(DataLabel):
            raise ControlError(f"unknown data label {label!r}; use S1, S2, S3 or S4")
        merge = BUILTIN_MERGES.get(merge_name) if merge_name else None
        if merge_name and merge is None and circle is not None and merge_name == circle.merge:
            raise ControlError(
                f"store {name!r} merges with an app's own code ({merge_name}): only that "
                "app can create it"
            )
        if merge_name and merge is None:
            known = ", ".join(sorted(BUILTIN_MERGES))
            raise ControlError(f"unknown merge {merge_name!r}; built in: {known}")
        return self._data.open(name, kind=kind, label=label, merge=merge)  # type: ignore[arg-type]

    def _device(self, params: dict[str, Any]) -> str | None:
        device = params.get("device")
        if not device:
            return None
        if device == "self":
            return self._data.device_id
        return self._resolve(str(device)).device_id

    async def stores(self, _params: dict[str, Any]) -> dict[str, Any]:
        rows = [self._data.stats(s.name) for s in self._data.facades()]
        traffic = {peer: asdict(t) for peer, t in sorted(self._data.traffic.items())}
        return {"stores": rows, "traffic": traffic, "elsewhere": self._data.elsewhere()}

    async def put(self, params: dict[str, Any]) -> dict[str, Any]:
        store = self._store(params, create=True)
        key = str(params.get("key", ""))
        value = _value(params)
        await store.put(key, value)
        return {"store": store.name, "key": key, "bytes": len(value)}

    async def batch(self, params: dict[str, Any]) -> dict[str, Any]:
        """Several puts and deletes, atomically here and on every peer. ``ops`` is a
        list of ``{"key": K, "value_b64": V}``, or ``{"key": K}`` alone to delete."""
        store = self._store(params, create=True)
        ops = params.get("ops")
        if not isinstance(ops, list) or not ops:
            raise ControlError("give ops: a list of {key, value_b64} (no value deletes)")
        batch = []
        for op in ops:
            if not isinstance(op, dict):
                raise ControlError("each op is an object {key, value_b64}")
            key = str(op.get("key", ""))
            batch.append(Op(key, _value(op) if "value_b64" in op or "value" in op else None))
        await store.commit(batch)
        return {"store": store.name, "ops": len(batch)}

    async def get(self, params: dict[str, Any]) -> dict[str, Any]:
        store = self._store(params)
        key = str(params.get("key", ""))
        value = await store.get(key, device=self._device(params))
        return {"store": store.name, "key": key, **_encode(value), **self._conflict(store)}

    async def delete(self, params: dict[str, Any]) -> dict[str, Any]:
        store = self._store(params)
        key = str(params.get("key", ""))
        existed = await store.get(key) is not None
        await store.delete(key)
        return {"store": store.name, "key": key, "existed": existed}

    async def ls(self, params: dict[str, Any]) -> dict[str, Any]:
        store = self._store(params)
        prefix = str(params.get("prefix") or "")
        values = bool(params.get("values"))
        entries = await store.scan(prefix, device=self._device(params), limit=MAX_LIST + 1)
        rows: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        size = 0
        for e in entries[:MAX_LIST]:
            row: dict[str, Any] = {"key": e.key, "bytes": len(e.value)}
            if store.kind == "per-device":
                row["device"] = e.device
                if e.device not in names:
                    names[e.device] = self._name(e.device)
                row["device_name"] = names[e.device]
            if values:
                row.update(_encode(e.value))
            size += _json_size(row)
            if size > REPLY_BUDGET:
                return {"store": store.name, "entries": rows, "truncated": True,
                        **self._conflict(store)}  # fmt: skip
            rows.append(row)
        truncated = len(entries) > MAX_LIST
        return {"store": store.name, "entries": rows, "truncated": truncated,
                **self._conflict(store)}  # fmt: skip

    def _conflict(self, store: DataStore) -> dict[str, Any]:
        """``{"conflict": why}`` if this device's store lost to the circle's (its
        writes are refused), else nothing."""
        why = self._data.conflict(store.name)
        return {} if why is None else {"conflict": why}

    async def watch(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        store = self._store(params)
        async with store.watch(str(params.get("prefix") or "")) as changes:
            async for change_set in changes:
                for event in _change_events(change_set, self._name):
                    yield event

    def _name(self, device_id: str) -> str:
        """A member's name, or "" for a device no longer in the circle."""
        if not device_id:
            return ""
        try:
            member = self._resolve(device_id)
        except AccordError:
            return ""
        return member.name if member.device_id == device_id else ""


def _value(params: dict[str, Any]) -> bytes:
    if "value_b64" in params:
        try:
            return base64.b64decode(str(params["value_b64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ControlError(f"value_b64 is not base64: {exc}") from exc
    if "value" in params:
        return str(params["value"]).encode()
    raise ControlError("give the value (value or value_b64)")


def _encode(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {"found": False}
    out: dict[str, Any] = {"found": True, "value_b64": base64.b64encode(value).decode()}
    if len(value) <= TEXT_MAX:
        with contextlib.suppress(UnicodeDecodeError):
            out["text"] = value.decode("utf-8")
    return out


def _json_size(obj: Any) -> int:
    return len(msgspec.json.encode(obj))


def _change_events(change_set: ChangeSet, name: Callable[[str], str]) -> list[dict[str, Any]]:
    """A change set as watch events: one, or several if its changes would not fit in
    one line. Each change says ``op`` (put or delete), when its writer wrote it
    (``at``, seconds) and who: ``origin`` and, if it is a member, ``origin_name``."""
    names: dict[str, str] = {}

    def named(device_id: str) -> str:
        if device_id not in names:
            names[device_id] = name(device_id)
        return names[device_id]

    head = {"store": change_set.store, "source": change_set.source, "peer": change_set.peer}
    events: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for c in change_set.changes:
        change: dict[str, Any] = {
            "op": "delete" if c.value is None else "put",
            "device": c.device,
            "key": c.key,
            "origin": c.origin,
            "origin_name": named(c.origin),
            "at": c.hlc.wall_ms / 1000,
            "deleted": c.value is None,
            **(_encode(c.value) if c.value is not None else {}),
        }
        if c.device:  # a per-device store: whose namespace
            change["device_name"] = named(c.device)
        change.pop("found", None)
        change_size = _json_size(change)
        if batch and size + change_size > REPLY_BUDGET:
            events.append({**head, "changes": batch})
            batch, size = [], 0
        batch.append(change)
        size += change_size
    events.append({**head, "changes": batch})
    return events
