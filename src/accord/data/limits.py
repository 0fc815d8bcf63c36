"""Size limits of the data stores, and the checks that enforce them with typed errors.

Limits protect every member: a value must fit a sync message (a sealed frame is at
most 16 MiB), and a hostile or buggy peer must not make us store or hold more.
"""

from __future__ import annotations

import re
from typing import Final

from accord.errors import BatchTooLarge, InvalidKey, KeyTooLong, StoreError, ValueTooLarge

MAX_KEY_BYTES: Final = 1024
MAX_VALUE_BYTES: Final = 4 * 1024 * 1024
MAX_BATCH_OPS: Final = 1024
MAX_BATCH_BYTES: Final = 8 * 1024 * 1024  # keys + values of one batch
MAX_MESSAGE_BYTES: Final = 12 * 1024 * 1024  # one encoded sync message; fits a sealed frame
DEFAULT_PAGE_BYTES: Final = 1024 * 1024  # catch-up page target (one row may exceed it)
MAX_ORIGINS: Final = 4096  # entries in a version vector or a row's dots
ROW_OVERHEAD: Final = 64  # bytes of framing we count per row or op beside key and value
DOT_OVERHEAD: Final = 40  # a device id and a seq
# A catch-up waits for the writer only if it lacks at least this many of its batches
# (a few relayed batches cost less to check than any wait): receiving.CatchingUp.
WRITER_WAIT_BATCHES: Final = 32

STORE_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def check_store_name(name: str) -> str:
    if not STORE_NAME.match(name):
        raise StoreError(
            f"invalid store name {name!r}: use 1-64 of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def key_bytes(key: str) -> bytes:
    """The key's UTF-8 bytes, or a typed error if it is empty, too long or not UTF-8."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(f"key {key!r} is not valid Unicode text: {exc.reason}") from exc
    if not raw:
        raise InvalidKey("a key must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise KeyTooLong(f"key of {len(raw)} UTF-8 bytes exceeds the {MAX_KEY_BYTES} byte limit")
    return raw


def check_value(value: bytes) -> None:
    if not isinstance(value, bytes):
        raise StoreError(f"values are bytes, not {type(value).__name__}: encode them first")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(
            f"value of {len(value)} bytes exceeds the {MAX_VALUE_BYTES} byte limit: "
            "split it over several keys"
        )


def check_batch(ops: int, size: int) -> None:
    if ops > MAX_BATCH_OPS:
        raise BatchTooLarge(f"batch of {ops} operations exceeds {MAX_BATCH_OPS}: split it")
    if size > MAX_BATCH_BYTES:
        raise BatchTooLarge(f"batch of {size} bytes exceeds {MAX_BATCH_BYTES}: split it")
