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

A catch-up page sends the rows of one batch together with one :class:`GroupProof`:
the signature, ``n``, the indices of the rows it carries (none when it carries all
``n`` in order) and a *multiproof*, the fewest node hashes that, with the carried
rows' leaves, give the root (:func:`multiproof`, :func:`root_with`). A whole batch
needs no hash at all. Nodes are ordered level by level from the leaves up, and by
index within a level; a one-row multiproof is that row's path. A replica stores,
per batch, the signature and every node it knows (:class:`Material`), so it can
prove any subset of the rows it still holds.

Merge stores (counters, sets) keep no per-row proof: a merged state joins several
origins' writes and no one origin can sign it (docs/security.md says what that
leaves open).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Final, Protocol

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


class GroupProof(msgspec.Struct, frozen=True, array_like=True):
    """The proof of the rows of one batch that a catch-up page carries together."""

    sig: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_OPS)]
    index: Annotated[tuple[int, ...], msgspec.Meta(max_length=MAX_OPS)] = ()  # () = 0..n-1
    hashes: Annotated[tuple[bytes, ...], msgspec.Meta(max_length=MAX_OPS)] = ()


class Material(msgspec.Struct, frozen=True, array_like=True):
    """What a replica keeps of one batch to prove its rows later: the signature, the
    leaves it knows (``leaves``: 32 bytes each, at the indices ``at``; () = all n in
    order) and other tree nodes it was given, ``(level, index, hash)``.

    With ``rows``, nothing but the signature is kept: the leaves are the batch's
    rows' own, hashed when needed from the rows still stored (every one at its place
    in the batch), and, for a row replaced or removed since, kept as it went (the
    store file's ``gone`` table). A batch whose rows all went in as new keys is kept
    this way, so no receiver hashes its rows unless it relays part of it."""

    sig: bytes
    n: int
    leaves: bytes
    at: tuple[int, ...] = ()
    extra: tuple[tuple[int, int, bytes], ...] = ()
    rows: bool = False

    def known(self) -> dict[Node, bytes]:
        nodes: dict[Node, bytes] = {}
        if not self.rows:
            at = self.at or range(self.n)
            nodes = {(0, i): self.leaves[k * HASH : (k + 1) * HASH] for k, i in enumerate(at)}
        for level, index, value in self.extra:
            nodes[(level, index)] = value
        return nodes


Node = tuple[int, int]  # (level, index)

_encode: Final = msgspec.msgpack.Encoder().encode


def leaf(ns: str, key: str, value: bytes | None) -> bytes:
    return hashlib.sha256(b"\x00" + _encode([ns, key, value])).digest()


class Write(Protocol):
    """What a leaf is made of: an op of a batch (:class:`accord.data.model.Op`)."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> bytes | None: ...


def leaves(ns: str, ops: Iterable[Write]) -> list[bytes]:
    """:func:`leaf` of every op in ``ops``: the loop every write and every received
    batch runs per row, so without a call per row."""
    sha, enc = hashlib.sha256, _encode
    return [sha(b"\x00" + enc([ns, op.key, op.value])).digest() for op in ops]


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


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle root over ``leaves`` (without the paths :func:`tree` also builds)."""
    level, sha = leaves, hashlib.sha256
    while len(level) > 1:
        pairs = iter(level)  # zip of one iterator with itself: (0, 1), (2, 3), ...
        up = [
            sha(b"\x01" + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)  # a last one alone: below
        ]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def _widths(n: int) -> list[int]:
    widths = [n]
    while widths[-1] > 1:
        widths.append((widths[-1] + 1) // 2)
    return widths


def _needed(n: int, positions: Sequence[int]) -> list[Node]:
    """The nodes a multiproof of the leaves at ``positions`` carries, in order."""
    needed: list[Node] = []
    current = sorted(set(positions))
    for level, width in enumerate(_widths(n)[:-1]):
        have = set(current)
        for p in current:
            sibling = p ^ 1
            if sibling < width and sibling not in have:
                needed.append((level, sibling))
        current = sorted({p // 2 for p in current})
    return needed


def multiproof(n: int, known: dict[Node, bytes], positions: Sequence[int]) -> list[bytes] | None:
    """The hashes that prove the leaves at ``positions`` of an ``n``-leaf tree, from
    the nodes in ``known``; None if ``known`` cannot give them."""
    widths = _widths(n)
    memo = dict(known)

    def node(level: int, index: int) -> bytes | None:
        found = memo.get((level, index))
        if found is not None or level == 0:
            return found
        left = node(level - 1, 2 * index)
        if 2 * index + 1 >= widths[level - 1]:
            value = left  # a last node without a pair moves up as is
        else:
            right = node(level - 1, 2 * index + 1)
            value = None if left is None or right is None else _node(left, right)
        if value is not None:
            memo[(level, index)] = value
        return value

    out = []
    for level, index in _needed(n, positions):
        value = node(level, index)
        if value is None:
            return None
        out.append(value)
    return out


def root_with(n: int, leaves: dict[int, bytes], hashes: Sequence[bytes]) -> bytes | None:
    """The root from the leaves at their indices and a :func:`multiproof`; None if
    they do not fit together (wrong count, index out of range)."""
    if not leaves or not all(0 <= i < n for i in leaves):
        return None
    needed = _needed(n, list(leaves))
    if len(needed) != len(hashes) or any(len(h) != HASH for h in hashes):
        return None
    given = dict(zip(needed, hashes, strict=True))
    current = dict(leaves)
    for level, width in enumerate(_widths(n)[:-1]):
        up: dict[int, bytes] = {}
        for p in sorted(current):
            parent = p // 2
            if parent in up:
                continue
            if p ^ 1 >= width:
                up[parent] = current[p]
                continue
            left = current.get(p & ~1, given.get((level, p & ~1)))
            right = current.get(p | 1, given.get((level, p | 1)))
            assert left is not None
            assert right is not None
            up[parent] = _node(left, right)
        current = up
    return current[0]


def material(sig: bytes, n: int, leaves: dict[int, bytes], hashes: Sequence[bytes]) -> Material:
    """What a receiver of a group keeps: its leaves and the multiproof's nodes."""
    at = sorted(leaves)
    joined = b"".join(leaves[i] for i in at)
    if len(at) == n:
        return Material(sig, n, joined)
    extra = tuple((lv, i, h) for (lv, i), h in zip(_needed(n, at), hashes, strict=True))
    return Material(sig, n, joined, tuple(at), extra)


def path_nodes(n: int, index: int, leaf_hash: bytes, path: bytes) -> dict[Node, bytes]:
    """The nodes a single-row proof (a :class:`Proof`'s path) gives, by position."""
    nodes: dict[Node, bytes] = {(0, index): leaf_hash}
    used, level, width = 0, 0, n
    while width > 1 and used + HASH <= len(path):
        sibling = index ^ 1
        if sibling < width:
            nodes[(level, sibling)] = path[used : used + HASH]
            used += HASH
        index //= 2
        width = (width + 1) // 2
        level += 1
    return nodes
