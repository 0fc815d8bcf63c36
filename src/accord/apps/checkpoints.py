"""Keep-alive checkpoints: an app's bundle and saved state in the ``accord.apps`` store.

A checkpoint (``ckpt/<app>``) names two content-addressed blobs, each stored as
chunks under ``blob/<app>/<sha256>/<i>``. Chunks are written before the checkpoint
that points at them, each write its own batch: a peer applies one device's batches in
order, so whoever sees a checkpoint already holds its chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Final

import msgspec

from accord.apps.errors import AppError
from accord.apps.messages import Checkpoint
from accord.data.api import DataStore

BLOB_CHUNK: Final = 2 * 1024 * 1024  # one value in the apps store


def _chunk_key(app_id: str, digest: str, i: int) -> str:
    return f"blob/{app_id}/{digest}/{i:04d}"


class Checkpoints:
    """Reads and writes checkpoints in one store (given lazily: it opens at start)."""

    def __init__(self, store: Callable[[], DataStore]) -> None:
        self._store = store

    async def write_blob(self, app_id: str, data: bytes) -> tuple[str, int]:
        """Store ``data`` as chunks; returns its digest and chunk count. A blob that is
        already there (same digest) is not written again."""
        store = self._store()
        digest = hashlib.sha256(data).hexdigest()
        n = max(1, -(-len(data) // BLOB_CHUNK))
        if await store.get(_chunk_key(app_id, digest, n - 1)) is None:
            for i in range(n):
                await store.put(
                    _chunk_key(app_id, digest, i), data[i * BLOB_CHUNK : (i + 1) * BLOB_CHUNK]
                )
        return digest, n

    async def read_blob(self, app_id: str, digest: str, n: int) -> bytes:
        store = self._store()
        parts = []
        for i in range(n):
            part = await store.get(_chunk_key(app_id, digest, i))
            if part is None:
                raise AppError(f"checkpoint chunk {digest[:12]}/{i} has not arrived")
            parts.append(part)
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != digest:
            raise AppError(f"checkpoint blob {digest[:12]} is corrupt")
        return data

    async def get(self, app_id: str) -> Checkpoint | None:
        raw = await self._store().get(f"ckpt/{app_id}")
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=Checkpoint)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def save(self, ckpt: Checkpoint) -> None:
        """Write ``ckpt`` (its blobs must be written already) and drop the state blob of
        the checkpoint it replaces."""
        store = self._store()
        old = await self.get(ckpt.app_id)
        await store.put(f"ckpt/{ckpt.app_id}", msgspec.msgpack.encode(ckpt))
        if old is not None and old.state_blob not in (ckpt.state_blob, ckpt.bundle_blob):
            async with store.batch() as b:
                for i in range(old.state_chunks):
                    b.delete(_chunk_key(ckpt.app_id, old.state_blob, i))

    async def forget(self, app_id: str) -> None:
        """Delete an app's checkpoint and the chunks it names, in one batch."""
        store = self._store()
        raw = await store.get(f"ckpt/{app_id}")
        if raw is None:
            return
        async with store.batch() as b:
            b.delete(f"ckpt/{app_id}")
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                old = msgspec.msgpack.decode(raw, type=Checkpoint)
                for blob, n in ((old.state_blob, old.state_chunks),
                                (old.bundle_blob, old.bundle_chunks)):  # fmt: skip
                    for i in range(n):
                        b.delete(_chunk_key(app_id, blob, i))

    async def all(self) -> list[Checkpoint]:
        out = []
        for entry in await self._store().scan("ckpt/"):
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                out.append(msgspec.msgpack.decode(entry.value, type=Checkpoint))
        return out
