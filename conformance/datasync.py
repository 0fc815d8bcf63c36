"""Data sync as a member (docs/protocol.md, "Data sync"): read a store by `pull`,
write one by `push` of a signed batch, and read the write back."""

from __future__ import annotations

import hashlib
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from conformance.crypto import Channel, Identity, verify
from conformance.link import subscribe
from conformance.messages import ProtocolViolation, pack, unpack
from conformance.peer import Member

BATCH_DOMAIN = b"accord/v1/batch"
CATALOG = "accord.catalog"
CATALOG_SETTINGS = ("per-device", "S1", "")


def leaf(ns: str, key: str, value: bytes | None) -> bytes:
    return hashlib.sha256(b"\x00" + pack([ns, key, value])).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    level = leaves
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def batch_message(store: str, origin: str, seq: int, hlc: list[int], n: int, root: bytes) -> bytes:
    return BATCH_DOMAIN + pack([store, origin, seq, hlc[0], hlc[1], n, root])


def make_batch(
    me: Identity, store: str, per_device: bool, seq: int, hlc: list[int], ops: list[list[Any]]
) -> list[Any]:
    """Batch = [origin, seq, hlc, ops, sig], sig over the Merkle root of its ops."""
    ns = me.device_id if per_device else ""
    root = merkle_root([leaf(ns, k, v) for k, v in ops])
    sig = me.sign(batch_message(store, me.device_id, seq, hlc, len(ops), root))
    return [me.device_id, seq, hlc, ops, sig]


def multiproof_root(n: int, index: list[int], leaves: list[bytes], hashes: list[bytes]) -> bytes:
    """The root from the items' leaves at ``index`` and the multiproof ``hashes``
    (level by level from the leaves, within a level by position); ValueError if the
    proof does not fit exactly."""
    if len(index) != len(leaves) or len(set(index)) != len(index) or not 0 < n <= 65536:
        raise ValueError("index and items differ, repeat, or n is out of range")
    if any(not 0 <= i < n for i in index):
        raise ValueError("an index beyond n")
    known = dict(zip(index, leaves, strict=True))
    width, taken = n, 0
    while width > 1:
        for p in sorted(known):
            sib = p ^ 1
            if sib < width and sib not in known:
                if taken >= len(hashes):
                    raise ValueError("too few proof hashes")
                known[sib] = hashes[taken]
                taken += 1
        parents: dict[int, bytes] = {}
        for p in sorted(known):
            if p % 2 == 0:
                parents[p // 2] = (
                    hashlib.sha256(b"\x01" + known[p] + known[p + 1]).digest()
                    if p + 1 < width
                    else known[p]
                )
        known, width = parents, (width + 1) // 2
    if taken != len(hashes):
        raise ValueError("too many proof hashes")
    return known[0]


@dataclass
class Page:
    store: str
    ids: list[str]
    rows: dict[tuple[str, str], bytes | None]  # (namespace, key) -> value
    origins: dict[tuple[str, str], str]
    vv: dict[str, int]
    done: bool
    next: int
    epoch: str
    unproven: int  # groups of another origin than the responder whose proof fails


@dataclass
class Sync:
    """The client's replica side: sends to the node, collects what comes back."""

    member: Member
    inbox: queue.Queue[tuple[list[Any], dict[str, Any]]] = field(default_factory=queue.Queue)
    session: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    seqs: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        me = self.member.me.device_id
        subscribe(self.member.link, f"accord/v1/data/{me}", self._on_frame)

    def _channels(self) -> list[Channel]:
        chans = list(self.member.answered.values())
        if self.member.channel is not None:
            chans.append(self.member.channel)
        return chans

    def _on_frame(self, frame: bytes) -> None:
        key = f"accord/v1/data/{self.member.me.device_id}"
        for ch in self._channels():
            plain = ch.open_from_peer(key, frame)
            if plain is None:
                continue
            try:
                env = unpack(plain)
                if not (isinstance(env, list) and len(env) == 4 and isinstance(env[3], bytes)):
                    return
                msg = unpack(env[3])
            except ProtocolViolation:
                return
            if isinstance(msg, dict):
                if msg.get("t") == "pull":
                    # we hold nothing to catch it up with: an empty summary passes its turn on
                    store = msg.get("store")
                    self.send(env[:3], {"t": "summary", "v": 2, "store": store, "vv": {}})
                else:
                    self.inbox.put((env, msg))
            return

    def send(self, settings: list[Any] | tuple[str, str, str], msg: dict[str, Any]) -> None:
        kind, label, merge = settings
        self.member.publish_sealed(
            f"accord/v1/data/{self.member.host}", [kind, label, merge, pack(msg)]
        )

    def pull(self, store: str, settings: tuple[str, str, str], timeout: float) -> Page:
        """Pull the whole store (vv {}) and gather its pages until `done`."""
        self.session += 1
        after = 0
        merged: Page | None = None
        deadline = time.monotonic() + timeout
        self.send(
            settings, {"t": "pull", "v": 2, "store": store, "vv": {}, "session": self.session}
        )
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete page of {store} within {timeout:g} s")
            try:
                _env, msg = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("t") != "page" or msg.get("store") != store:
                continue
            if msg.get("session") != self.session:
                continue
            m = self.member
            page = parse_page(msg, m.host, m.keys, store, settings[0] == "per-device")
            if merged is None:
                merged = page
            else:
                merged.rows.update(page.rows)
                merged.origins.update(page.origins)
                merged.unproven += page.unproven
                merged.vv, merged.done = page.vv, page.done
            if page.done:
                return merged
            if not msg.get("more"):
                after = page.next
                self.send(
                    settings,
                    {
                        "t": "pull",
                        "v": 2,
                        "store": store,
                        "vv": {},
                        "session": self.session,
                        "after": after,
                        "epoch": page.epoch,
                    },
                )

    def push(self, store: str, settings: tuple[str, str, str], ops: list[list[Any]]) -> int:
        """Sign and push one batch of our own ops; returns its seq."""
        seq = self.seqs.get(store, 0) + 1
        self.seqs[store] = seq
        hlc = [int(time.time() * 1000), 0]
        batch = make_batch(self.member.me, store, settings[0] == "per-device", seq, hlc, ops)
        self.send(settings, {"t": "push", "v": 2, "store": store, "batches": [batch]})
        return seq


def parse_page(
    msg: dict[str, Any], responder: str, keys: dict[str, bytes], store: str, per_device: bool
) -> Page:
    ids = msg.get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProtocolViolation("page ids are not a list of device ids")
    rows: dict[tuple[str, str], bytes | None] = {}
    origins: dict[tuple[str, str], str] = {}
    unproven = 0
    for g in msg.get("groups") or []:
        origin, seq, hlc, items = ids[g[0]], g[1], g[2], g[3]
        proof = g[4] if len(g) > 4 else None
        ns = origin if per_device else ""
        relayed = origin != responder  # the responder's own rows ride on its channel
        if relayed and not _proof_ok(keys, store, origin, seq, hlc, items, ns, proof):
            unproven += 1
            continue
        for key, value in items:
            rows[(ns, key)] = value
            origins[(ns, key)] = origin
    vv = msg.get("vv") or {}
    return Page(
        store,
        ids,
        rows,
        origins,
        dict(vv),
        bool(msg.get("done")),
        int(msg.get("next", 0)),
        str(msg.get("epoch", "")),
        unproven,
    )


def _proof_ok(
    keys: dict[str, bytes],
    store: str,
    origin: str,
    seq: int,
    hlc: list[int],
    items: list[list[Any]],
    ns: str,
    proof: Any,
) -> bool:
    """Check a relayed group's GroupProof [sig, n, index?, hashes?] by the origin's key."""
    key = keys.get(origin)
    if key is None or not isinstance(proof, list) or len(proof) < 2:
        return False
    sig, n = proof[0], proof[1]
    index = proof[2] if len(proof) > 2 else []
    hashes = proof[3] if len(proof) > 3 else []
    leaves = [leaf(ns, k, v) for k, v in items]
    try:
        if not index:
            if n != len(items):
                return False
            root = merkle_root(leaves)
        else:
            root = multiproof_root(n, index, leaves, hashes)
    except (ValueError, TypeError):
        return False
    hlc2 = list(hlc) + [0] * (2 - len(hlc))
    return verify(key, sig, batch_message(store, origin, seq, hlc2, n, root))
