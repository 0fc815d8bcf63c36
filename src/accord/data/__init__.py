"""Replicated key-value stores: storage, sync and watch (see docs/consistency.md).

Sans-IO: a :class:`Replica` takes sync messages and returns the replies; the node
moves the bytes. Each store lives in its own SQLite file under the data directory.
"""

from accord.data.changes import Change, ChangeSet, Entry, Listener
from accord.data.limits import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OPS,
    MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_VALUE_BYTES,
)
from accord.data.merge import COUNTER, SET_UNION, CounterMerge, Merge, SetUnionMerge
from accord.data.model import (
    Batch,
    Op,
    Page,
    Pull,
    Push,
    Row,
    Summary,
    SyncMessage,
    decode,
    encode,
)
from accord.data.peers import Peers, StaticPeers
from accord.data.replica import Replica
from accord.data.rules import StoreKind
from accord.data.store import TOMBSTONE_GRACE_S, BatchBuilder, Store
from accord.data.stores import Stores

__all__ = [
    "COUNTER",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPS",
    "MAX_KEY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_VALUE_BYTES",
    "SET_UNION",
    "TOMBSTONE_GRACE_S",
    "Batch",
    "BatchBuilder",
    "Change",
    "ChangeSet",
    "CounterMerge",
    "Entry",
    "Listener",
    "Merge",
    "Op",
    "Page",
    "Peers",
    "Pull",
    "Push",
    "Replica",
    "Row",
    "SetUnionMerge",
    "StaticPeers",
    "Store",
    "StoreKind",
    "Stores",
    "Summary",
    "SyncMessage",
    "decode",
    "encode",
]
