"""Catch-up pages: building one from a store file, and checking one from a peer.

Sans-IO beside :class:`accord.data.replica.Replica`, which decides when to send and
apply them. A page lists each device id once (``ids``) and carries a last-writer-wins
store's rows grouped by the batch that wrote them (one origin, seq and time per
group, and the group's provenance proof); a merge store's rows travel one by one
with their dots. See docs/protocol.md for the exact format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from accord.clock import Hlc
from accord.data import provenance as pv
from accord.data.limits import DOT_OVERHEAD, ROW_OVERHEAD
from accord.data.model import Group, MergeRow, Op, Page, Row
from accord.data.provenance import GroupProof, Material, Proof
from accord.data.sqlite_store import RawRow, StoreFile

_dots_decoder: Final = msgspec.msgpack.Decoder(dict[str, int])
_proof_decoder: Final = msgspec.msgpack.Decoder(Proof)
_material_decoder: Final = msgspec.msgpack.Decoder(Material)
_material_encoder: Final = msgspec.msgpack.Encoder()
GROUP_OVERHEAD: Final = 120  # origin, seq, hlc and a proof's signature, beside the items


@dataclass
class PageBody:
    """What :func:`build` found: the page's rows, and where the next page starts."""

    ids: list[str] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    rows: list[MergeRow] = field(default_factory=list)
    cursor: int = 0
    done: bool = True


class _Builder:
    def __init__(self, file: StoreFile, *, ns_of_group: bool, prove: bool) -> None:
        self._file = file
        self._prove = prove
        self._ns_of_group = ns_of_group
        self.body = PageBody()
        self._index: dict[str, int] = {}
        self._open: tuple[str, int, int, int] | None = None  # (origin, seq, wall, counter)
        self._items: list[Op] = []
        self._legacy: list[bytes | None] = []
        self._places: list[int | None] = []

    def id(self, device: str) -> int:
        found = self._index.get(device)
        if found is None:
            found = self._index[device] = len(self.body.ids)
            self.body.ids.append(device)
        return found

    def same_batch(self, origin: str, seq: int) -> bool:
        return self._open is not None and self._open[:2] == (origin, seq)

    def add_flat(self, raw: RawRow) -> None:
        _lseq, _ns, key, value, wall, counter, origin, seq, _dots, proof, idx = raw
        head = (origin, seq, wall, counter)
        if self._open != head:
            self.close()
            self._open = head
        self._items.append(Op(key.decode(), value))
        self._legacy.append(proof)
        self._places.append(idx)

    def add_merge(self, raw: RawRow) -> None:
        self.close()
        _lseq, ns, key, value, wall, counter, origin, seq, dots, _proof, _idx = raw
        spread = _dots_decoder.decode(dots) if dots else {origin: seq}
        assert value is not None  # a merge store has no tombstones
        self.body.rows.append(
            MergeRow(
                0 if ns == "" else 1 + self.id(ns),
                key.decode(),
                value,
                Hlc(wall, counter),
                self.id(origin),
                tuple((self.id(o), s) for o, s in spread.items()),
            )
        )

    def close(self) -> None:
        if self._open is None:
            return
        origin, seq, wall, counter = self._open
        items = self._items
        proof = None
        if self._prove:
            ns = "" if not self._ns_of_group else origin
            items, proof = self._proof(origin, seq, ns, items)
        group = Group(self.id(origin), seq, Hlc(wall, counter), tuple(items), proof)
        self.body.groups.append(group)
        self._open, self._items, self._legacy, self._places = None, [], [], []

    def _proof(
        self, origin: str, seq: int, ns: str, items: list[Op]
    ) -> tuple[list[Op], GroupProof | None]:
        """The group's items in leaf order and the proof of exactly them; no proof if
        this file lacks the batch's material (the receiver then asks the origin)."""
        blob = self._file.material(origin, seq)
        places: list[int | None] = list(self._places)
        if blob is not None:
            material = _material_decoder.decode(blob)
            if len(items) == material.n and places == list(range(material.n)):
                return items, GroupProof(material.sig, material.n)  # the whole batch
            known = material.known()
            if material.rows:  # its leaves: its rows', stored or gone
                leaves = self._file.batch_leaves(origin, seq, material.n)
                known.update(((0, i), leaf) for i, leaf in leaves.items())
            if any(p is None for p in places):  # where in the batch: ask the leaves
                where = {known[(0, i)]: i for i in range(material.n) if (0, i) in known}
                places = [where.get(pv.leaf(ns, op.key, op.value)) for op in items]
        elif all(p is not None for p in self._legacy):  # rows stored before schema 2
            proofs = [_proof_decoder.decode(p) for p in self._legacy if p is not None]
            material = Material(proofs[0].sig, proofs[0].n, b"")
            known = {}
            for op, p in zip(items, proofs, strict=True):
                leaf = pv.leaf(ns, op.key, op.value)
                known.update(pv.path_nodes(p.n, p.index, leaf, p.path))
            places = [p.index for p in proofs]
        else:
            return items, None
        at = [p for p in places if p is not None]
        if len(at) != len(items) or len(set(at)) != len(at):
            return items, None
        order = sorted(range(len(items)), key=lambda k: at[k])
        ordered = [items[k] for k in order]
        at = sorted(at)
        if at == list(range(material.n)):
            return ordered, GroupProof(material.sig, material.n)
        hashes = pv.multiproof(material.n, known, at)
        if hashes is None:
            return items, None
        return ordered, GroupProof(material.sig, material.n, tuple(at), tuple(hashes))


def build(
    file: StoreFile,
    want: Mapping[str, int],
    after: int,
    max_bytes: int,
    *,
    ns_of_group: bool,
    merge: bool,
    prove: bool,
) -> PageBody:
    """The rows with a dot beyond ``want`` (origin -> seq; every origin we know must
    be listed) and lseq > ``after``, in lseq order, until ``max_bytes`` (at least one
    row; a batch's rows are not split across pages when they are adjacent).

    ``after`` 0 starts at the first wanted row (found by the origin indexes), so a
    page costs the rows it scans, not the whole store. ``ns_of_group``: rows' namespace
    is their origin (a per-device store); ``prove``: attach provenance proofs."""
    builder = _Builder(file, ns_of_group=ns_of_group, prove=prove and not merge)
    body = builder.body
    body.cursor = after
    if not want:
        return body
    if after == 0:
        first = file.first_wanted(want)
        if first is None:
            return body
        body.cursor = after = first - 1
    size = 0
    for raw in file.rows_after(after):
        lseq, _ns, key, value, _wall, _counter, origin, seq, dots, _proof, _idx = raw
        if dots:
            spread = _dots_decoder.decode(dots)
            wanted = any(s > want.get(o, 0) for o, s in spread.items())
            cost = len(spread) * DOT_OVERHEAD
        else:
            wanted = seq > want.get(origin, 0)
            cost = DOT_OVERHEAD
        if not wanted:
            body.cursor = lseq
            continue
        cost += len(key) + len(value or b"") + ROW_OVERHEAD // 4
        if size and size + cost > max_bytes and not builder.same_batch(origin, seq):
            body.done = False
            break
        if not size:
            size = GROUP_OVERHEAD
        if merge:
            builder.add_merge(raw)
        else:
            if not builder.same_batch(origin, seq):
                size += GROUP_OVERHEAD
            builder.add_flat(raw)
        size += cost
        body.cursor = lseq
    builder.close()
    return body


class Staged(msgspec.Struct, frozen=True, array_like=True):
    """A checked page as a replica keeps it until its catch-up completes, with what
    proves its groups' rows, ``(origin, seq, encoded Material)``, and of each group
    its batch, time and where its rows start among the staged rows, ``(origin, seq,
    wall_ms, counter, n)``: finishing reads them here, not in a pass over the staged
    rows (None in pages an older Accord staged: then it does)."""

    page: Page
    materials: tuple[tuple[str, int, bytes], ...] = ()
    starts: tuple[tuple[str, int, int, int, int], ...] | None = None
    # Per origin, the highest seq of the page's whole batches, which went into the
    # store as the page came (receiving.CatchingUp._take_whole), not into staging.
    applied: tuple[tuple[str, int], ...] = ()


@dataclass
class Checked:
    """A received page's groups sorted into kept and refused (with the reason), and
    the material that proves the kept ones' rows to others later."""

    groups: list[Group] = field(default_factory=list)
    materials: list[tuple[str, int, bytes]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (origin, why)


def check_groups(
    page: Page,
    *,
    sender: str,
    ns_of_group: bool,
    verify: Callable[[str, bytes, bytes], bool] | None,
    message: Callable[[str, int, Hlc, int, bytes], bytes],
) -> Checked:
    """With provenance on (``verify`` given: origin, signature, message -> valid?),
    keep the groups that prove their origin: the sender's own (its channel
    authenticates them; a malformed proof only stops us relaying them), and others'
    whose proof checks against the origin's signature."""
    out = Checked()
    if verify is None:
        out.groups = list(page.groups)
        return out
    for group in page.groups:
        origin = page.ids[group.origin]
        proof = group.proof
        if origin == sender and proof is not None and _whole(proof, group):
            # The sender's own whole batch: its signature alone, its rows are its
            # leaves (as for a push), hashed only if some row is refused or it is
            # relayed on (receiving.CatchingUp._finish decides which).
            lazy = Material(proof.sig, proof.n, b"", rows=True)
            out.materials.append((origin, group.seq, _material_encoder.encode(lazy)))
            out.groups.append(group)
            continue
        leaves = _leaves(group, origin if ns_of_group else "")
        if origin != sender:  # relayed: only with the origin's proof
            root = None if proof is None or leaves is None else _root(proof, leaves)
            if proof is None or root is None:
                out.refused.append((origin, "without its proof"))
                continue
            if not verify(origin, proof.sig, message(origin, group.seq, group.hlc, proof.n, root)):
                out.refused.append((origin, "with a forged proof"))
                continue
        if proof is not None and leaves is not None:
            # Kept unchecked for the sender's own rows: a bad proof only makes the
            # members we relay them to refuse them, and costs a hash per node here.
            try:
                material = pv.material(proof.sig, proof.n, leaves, proof.hashes)
            except ValueError:  # hashes that do not fit the tree: nothing to keep
                pass
            else:
                out.materials.append((origin, group.seq, _material_encoder.encode(material)))
        out.groups.append(group)
    return out


def whole_batch(group: Group) -> bool:
    """Does ``group`` carry its whole batch, in order, as its proof tells?"""
    return group.proof is not None and _whole(group.proof, group)


def _whole(proof: GroupProof, group: Group) -> bool:
    """Does ``group`` carry its whole batch, in order (so its proof has no hash)?"""
    return not proof.index and not proof.hashes and proof.n == len(group.items)


def _root(proof: GroupProof, leaves: dict[int, bytes]) -> bytes | None:
    if not proof.index and not proof.hashes and len(leaves) == proof.n:
        return pv.root(list(leaves.values()))  # the whole batch, in order: no dict work
    return pv.root_with(proof.n, leaves, proof.hashes)


def places(group: Group) -> list[int] | list[None]:
    """Each item's place in its batch, as the group's proof tells (None: unknown)."""
    proof = group.proof
    if proof is None:
        return [None] * len(group.items)
    return list(proof.index) or list(range(len(group.items)))


def _leaves(group: Group, ns: str) -> dict[int, bytes] | None:
    proof = group.proof
    if proof is None:
        return None
    positions = list(proof.index) or list(range(proof.n))
    if len(positions) != len(group.items) or len(set(positions)) != len(positions):
        return None
    return dict(zip(positions, pv.leaves(ns, group.items), strict=True))


def merge_rows(page: Page) -> Iterable[Row]:
    """A merge page's rows with their device ids spelled out."""
    ids = page.ids
    for r in page.rows:
        yield Row(
            "" if r.ns == 0 else ids[r.ns - 1],
            r.key,
            r.value,
            r.hlc,
            ids[r.origin],
            {ids[o]: s for o, s in r.dots},
        )
