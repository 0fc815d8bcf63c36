"""Provenance of writes: a row relayed by any member proves which member wrote it.

Sans-IO. The origin of a batch signs one Merkle root over its ops; every row of a
last-writer-wins store keeps, beside its value, the origin's signature and the
path from its op to that root (a :class:`Proof`). A member relaying the row in a
catch-up page cannot change its value, key, timestamp, origin or seq without the
origin's key; so no member can write, or advance a version, in another's name.

Layout (every hash SHA-256, every integer and string MessagePack)::

    leaf_i   = H(0x00 || msgpack([ns, key, value]))        value nil for a delete
    node     = H(0x01 || left || right)
    level up : pairs (0,1), (2,3), ...; a last node without a pair moves up as is
    root     = the single node left (a batch of one op: its leaf)
    message  = "accord/v1/batch" || msgpack([store, origin, seq, wall_ms, counter, n, root])
    sig      = Ed25519_sig_origin(message)
    Proof    = [sig, n, index, path]   path: the sibling hashes from the leaf up,
                                       32 bytes each, levels without a sibling skipped

Merge stores (counters, sets) keep no per-row proof: a merged state joins several
origins' writes and no one origin can sign it (docs/security.md says what that
leaves open).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Annotated, Final

import msgspec

from accord.clock import Hlc

DOMAIN: Final = b"accord/v1/batch"
HASH: Final = 32
MAX_OPS: Final = 1 << 16  # beyond any batch's op limit; bounds a path to 16 hashes

Signer = Callable[[bytes], bytes]


class Proof(msgspec.Struct, frozen=True, array_like=True):
    """What lets anyone check a row against its origin's signature."""

    sig: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_OPS)]
    index: Annotated[int, msgspec.Meta(ge=0, lt=MAX_OPS)]
    path: Annotated[bytes, msgspec.Meta(max_length=16 * HASH)]


_encode: Final = msgspec.msgpack.Encoder().encode


def leaf(ns: str, key: str, value: bytes | None) -> bytes:
    return hashlib.sha256(b"\x00" + _encode([ns, key, value])).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree(leaves: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """The root over ``leaves`` and each leaf's path to it."""
    paths = [b""] * len(leaves)
    level = list(leaves)
    members = [[i] for i in range(len(leaves))]  # which leaves sit under each node
    while len(level) > 1:
        up: list[bytes] = []
        up_members: list[list[int]] = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):
                up.append(level[j])
                up_members.append(members[j])
                continue
            for i in members[j]:
                paths[i] += level[j + 1]
            for i in members[j + 1]:
                paths[i] += level[j]
            up.append(_node(level[j], level[j + 1]))
            up_members.append(members[j] + members[j + 1])
        level, members = up, up_members
    return level[0], paths


def root_from(leaf_hash: bytes, n: int, index: int, path: bytes) -> bytes | None:
    """Fold ``path`` from a leaf up; None if the path does not fit ``n`` and ``index``."""
    if not 0 <= index < n or len(path) % HASH:
        return None
    node, width, used = leaf_hash, n, 0
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            if used + HASH > len(path):
                return None
            other = path[used : used + HASH]
            used += HASH
            node = _node(other, node) if index & 1 else _node(node, other)
        index //= 2
        width = (width + 1) // 2
    return node if used == len(path) else None


def message(store: str, origin: str, seq: int, hlc: Hlc, n: int, root: bytes) -> bytes:
    return DOMAIN + _encode([store, origin, seq, hlc.wall_ms, hlc.counter, n, root])


def sign_batch(
    signer: Signer, store: str, origin: str, seq: int, hlc: Hlc, leaves: Sequence[bytes]
) -> tuple[bytes, list[bytes]]:
    """The origin's signature over a batch, and each op's path."""
    root, paths = tree(leaves)
    return signer(message(store, origin, seq, hlc, len(leaves), root)), paths
