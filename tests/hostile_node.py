"""A compromised circle member for the adversarial suite (issue 12):
``python -m tests.hostile_node --home HOME --listen EP [--connect EP]... [--set N=V]...``
(the same options as ``accord up --no-multicast``).

It runs the very Node that ``accord up`` runs, is paired into the household like any
device, and holds what a compromised member holds: its own identity key, the circle
key, its pairwise channels. On top it serves test-only control methods (``hostile_*``
on its control socket, see :class:`Hostile`) through which a test makes it misbehave:
put or query raw bytes on any key, seal anything under the circle key in anyone's
name, seal on its own channels, sign member lists, push key updates of any epoch,
capture other members' traffic, and answer catch-up pulls with forged rows.

Bytes cross the control socket as base64 (``*_b64``). Never used outside tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import secrets
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
import zenoh

from accord.bus import keys
from accord.bus.session import Bus
from accord.bus.settings import BusSettings
from accord.clock import Hlc
from accord.control.server import ControlServer
from accord.data.model import DATA_VERSION, Group, Op, Page, Pull, Summary, SyncMessage
from accord.data.model import decode as decode_sync
from accord.data.service import Envelope
from accord.device.home import open_home
from accord.device.identity import Identity, raw_id
from accord.errors import ControlError
from accord.node import Node
from accord.trust import members as ml
from accord.trust import session
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle, encode
from accord.trust.sessions import session_number
from accord.trust.sync import KeyUpdate
from accord.wire.seal import Kind, Sealer, StreamId

log = logging.getLogger("hostile")
MAX_KEPT = 2000  # captured payloads and logged data messages kept, per kind


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(params: dict[str, Any], name: str) -> bytes:
    return base64.b64decode(str(params.get(name) or ""))


def _kind(name: str) -> Kind:
    if name == "broadcast":
        return Kind.BROADCAST
    if name == "pairwise":
        return Kind.PAIRWISE
    raise ControlError(f"kind is broadcast or pairwise, not {name!r}")


class Hostile:
    """The misbehaviour a test can ask of this member (each a control method)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.me = node.home.device_id
        self.identity: Identity = node.home.identity
        self._captures: dict[str, deque[bytes]] = {}
        self._capture_undo: dict[str, list[Any]] = {}
        self._data_log: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)
        self._forged_pages = 0
        self._log_data_frames()

    # -- what the node holds ---------------------------------------------------------

    @property
    def bus(self) -> Bus:
        bus = self.node._bus
        assert bus is not None
        return bus

    @property
    def circle(self) -> Circle:
        circle = self.node.circle
        assert circle is not None
        return circle

    @property
    def channels(self) -> ChannelService:
        channels = self.node._channels
        assert channels is not None
        return channels

    @property
    def zenoh(self) -> zenoh.Session:
        return self.bus._session

    def register(self, control: ControlServer) -> None:
        for name in (
            "put",
            "get",
            "seal",
            "channel",
            "capture",
            "captured",
            "forge_level",
            "push_key",
            "data_log",
            "forge_catchup",
            "forge_status",
        ):
            control.add(f"hostile_{name}", getattr(self, name))

    # -- raw transport -----------------------------------------------------------------

    async def put(self, params: dict[str, Any]) -> dict[str, Any]:
        """Put raw bytes on a key expression (``times`` times)."""
        payload = unb64(params, "payload_b64")
        for _ in range(int(params.get("times", 1))):
            self.bus.put(str(params["key"]), payload)
        return {"put": True}

    async def get(self, params: dict[str, Any]) -> dict[str, Any]:
        """Query a key expression with a raw payload; every reply, as base64."""
        replies = await self.bus.get(
            str(params["key"]), float(params.get("timeout", 2.0)), unb64(params, "payload_b64")
        )
        return {"replies": [b64(payload) for _, payload in replies]}

    async def _send(self, how: str, key: str, frame: bytes, timeout: float) -> list[str]:
        if how == "put":
            self.bus.put(key, frame)
            return []
        if how == "get":
            return [b64(p) for _, p in await self.bus.get(key, timeout, frame)]
        return []

    # -- sealing in anyone's name ------------------------------------------------------

    async def seal(self, params: dict[str, Any]) -> dict[str, Any]:
        """Seal ``plaintext_b64`` for ``key`` with any header: ``kind`` (broadcast or
        pairwise), ``sender`` (a device id), ``epoch`` (default: the circle's),
        ``stream``, ``counter``; under ``root`` "circle" (the circle key of that
        epoch, or the current one), "zero", or ``root_b64``. ``send`` "put" or "get"
        sends it too (a get returns the replies)."""
        key = str(params["key"])
        state = self.circle.state
        epoch = int(params.get("epoch") or state.epoch)
        root_name = str(params.get("root") or "circle")
        if root_name == "circle":
            root = state.keys.get(epoch, state.circle_key)
        elif root_name == "zero":
            root = b"\x00" * 32
        else:
            root = unb64(params, "root_b64")
        sid = StreamId(
            _kind(str(params.get("kind", "broadcast"))),
            raw_id(str(params["sender"])),
            epoch,
            int(params.get("stream", 1)),
        )
        sealer = Sealer(root, sid)
        sealer._counter = int(params.get("counter", 1)) - 1  # the next seal uses `counter`
        frame = sealer.seal(key, unb64(params, "plaintext_b64"))
        how = str(params.get("send") or "")
        replies = await self._send(how, key, frame, float(params.get("timeout", 2.0)))
        return {"frame_b64": b64(frame), "replies": replies}

    async def channel(self, params: dict[str, Any]) -> dict[str, Any]:
        """Seal on this member's own pairwise channel with ``peer`` (opened if needed)
        and send it (``send`` "put" or "get"); a get returns the replies the peer
        sealed for us, opened (``plain_b64``), and how many others came."""
        peer, key = str(params["peer"]), str(params["key"])
        if not await self.channels.ensure(peer):
            raise ControlError(f"no channel with {peer}")
        frame = self.channels.seal(peer, key, unb64(params, "plaintext_b64"))
        if frame is None:
            raise ControlError(f"no channel with {peer}")
        how = str(params.get("send") or "get")
        if how == "put":
            self.bus.put(key, frame)
            return {"plain_b64": [], "other": 0}
        opened: list[str] = []
        other = 0
        for _, payload in await self.bus.get(key, float(params.get("timeout", 5.0)), frame):
            try:
                sender, plain = self.channels.open(key, payload)
            except Exception:
                other += 1
                continue
            if sender == peer:
                opened.append(b64(plain))
            else:
                other += 1
        return {"plain_b64": opened, "other": other}

    # -- capturing other members' traffic ----------------------------------------------

    async def capture(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start capturing what others send on ``key`` (a key expression): queries
        (through a queryable that never answers) and puts. ``stop`` ends it."""
        key = str(params["key"])
        for undo in self._capture_undo.pop(key, []):
            undo()
        if params.get("stop"):
            return {"capturing": False}
        kept: deque[bytes] = self._captures.setdefault(key, deque(maxlen=MAX_KEPT))

        def on_query(query: zenoh.Query) -> None:
            if query.payload is not None:
                kept.append(query.payload.to_bytes())
            query.drop()  # type: ignore[no-untyped-call]

        def on_sample(sample: zenoh.Sample) -> None:
            kept.append(sample.payload.to_bytes())

        queryable = self.zenoh.declare_queryable(key, on_query)
        subscriber = self.zenoh.declare_subscriber(key, on_sample)
        self._capture_undo[key] = [queryable.undeclare, subscriber.undeclare]
        return {"capturing": True}

    async def captured(self, params: dict[str, Any]) -> dict[str, Any]:
        """What was captured on ``key`` so far (oldest first)."""
        kept = list(self._captures.get(str(params["key"]), ()))  # a copy made in C: atomic
        return {"payloads_b64": [b64(p) for p in kept]}

    # -- member records ----------------------------------------------------------------

    async def forge_level(self, params: dict[str, Any]) -> dict[str, Any]:
        """Re-sign this member's own record at ``level`` and publish member lists that
        carry it, one per forgery: vouched by itself, and credited to ``credit`` (a
        member of that level) but signed here. This member takes the record into its
        own view first, so it believes the level and would hold any data it is sent.
        The last list also vouches (legitimately, at SL1) for a made-up device, the
        ``decoy``: a receiver that lists the decoy has processed every list."""
        level = str(params["level"])
        me = self.circle.member(self.me)
        assert me is not None
        forged: list[ml.Member] = []
        # Dated 0.0, the earliest record of all: it wins any merge that prefers age.
        voucher = ml.vouch(
            self.identity,
            device_id=me.device_id,
            public_key=me.public_key,
            name=me.name,
            type_=me.type,
            declared_level=level,
            voucher_level=level,
            at=0.0,
        )
        forged.append(voucher)  # added_by: itself
        credit = str(params.get("credit") or "")
        if credit:
            unsigned = msgspec.structs.replace(voucher, added_by=credit, signature=b"")
            forged.append(
                msgspec.structs.replace(
                    unsigned,
                    signature=self.identity.sign(ml.RECORD_CONTEXT + unsigned.signed_bytes()),
                )
            )
        for record in forged:
            self.circle.add_member(record)  # our own view now says `level`
        decoy = Identity.generate()
        decoy_record = ml.vouch(
            self.identity,
            device_id=decoy.device_id,
            public_key=decoy.public_bytes,
            name=f"Decoy {decoy.device_id[:4]}",
            type_="sensor",
            declared_level="SL1",
            voucher_level=me.security_level,
            at=time.time(),
        )
        lists = []
        for record in forged:
            body = ml.MemberList(
                self.circle.members.circle_id,
                (*[m for m in self.circle.members.members if m.device_id != self.me], record),
                self.circle.members.revoked,
            )
            lists.append(body)
        last = lists[-1]
        lists[-1] = msgspec.structs.replace(last, members=(*last.members, decoy_record))
        for body in lists:
            signed = ml.sign(body, self.identity)
            frame = self.circle.seal(keys.MEMBERS_KEY, encode(signed))
            self.bus.put(keys.MEMBERS_KEY, frame)
        return {"decoy": decoy.device_id, "lists": len(lists)}

    # -- circle keys -------------------------------------------------------------------

    async def push_key(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``target`` a key update for ``epoch`` (a fresh key unless ``key_b64``),
        on a pairwise session as a member does; the target's answer says it read it."""
        target = str(params["target"])
        member = self.circle.member(target)
        if member is None:
            raise ControlError(f"{target} is not a member here")
        epoch = int(params["epoch"])
        key = unb64(params, "key_b64") or secrets.token_bytes(32)
        timeout = float(params.get("timeout", 5.0))
        initiator = session.Initiator(self.identity, target)
        offer = initiator.offer()
        replies = await self.bus.get(keys.session_key(target), timeout, offer)
        if not replies:
            raise ControlError(f"{target} did not answer the session offer")
        secret = initiator.on_answer(replies[0][1], member.public_key)
        update = KeyUpdate(self.circle.signed_list(), epoch, key, self.me)
        sid = StreamId(Kind.PAIRWISE, raw_id(self.me), session_number(offer), self.circle.boot)
        rekey = keys.rekey_key(target)
        frame = Sealer(secret, sid).seal(rekey, encode(update))
        answers = await self.bus.get(rekey, timeout, frame)
        return {"answers": [b64(p) for _, p in answers]}

    # -- data sync ---------------------------------------------------------------------

    def _log_data_frames(self) -> None:
        """Log every data message that reaches this member (by wrapping its channels'
        open, which the data service calls for each frame)."""
        channels = self.channels
        real_open = channels.open
        data_key = keys.data_key(self.me)
        log_entry = self._data_log

        def open_and_log(key_expr: str, frame: bytes) -> tuple[str, bytes]:
            sender, plain = real_open(key_expr, frame)
            if key_expr == data_key:
                try:
                    env = msgspec.msgpack.decode(plain, type=Envelope)
                    message = decode_sync(env.message)
                except Exception as exc:
                    log_entry.append({"sender": sender, "error": str(exc)})
                else:
                    log_entry.append(_describe(sender, env, message))
            return sender, plain

        channels.open = open_and_log  # type: ignore[method-assign]

    async def data_log(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every data message that reached this member (``store``: only that store's)."""
        store = params.get("store")
        return {"messages": [m for m in self._data_log if not store or m.get("store") == store]}

    async def forge_catchup(self, params: dict[str, Any]) -> dict[str, Any]:
        """Answer ``target``'s pulls of ``store`` with one forged page: ``rows`` (each
        ``{key, value_b64, origin, seq}``, stamped now) and the version vector ``vv``;
        then invite the pull with a summary claiming ``vv``."""
        target, store = str(params["target"]), str(params["store"])
        data = self.node.data
        replica = data.stores.get(store)
        vv = {str(k): int(v) for k, v in dict(params["vv"]).items()}
        now = Hlc(int(time.time() * 1000), 0)
        ids = tuple(sorted({str(r["origin"]) for r in params["rows"]}))
        groups = tuple(
            Group(
                ids.index(str(r["origin"])),
                int(r["seq"]),
                now,
                (Op(str(r["key"]), base64.b64decode(r["value_b64"])),),
            )
            for r in params["rows"]
        )
        real_receive = replica.receive

        def receive(sender: str, message: SyncMessage) -> list[SyncMessage]:
            if sender == target and isinstance(message, Pull):
                self._forged_pages += 1
                page = Page(
                    DATA_VERSION,
                    store,
                    message.session,
                    replica.epoch,
                    message.after,
                    0,
                    True,
                    vv,
                    ids,
                    groups,
                )
                return [page]
            return real_receive(sender, message)

        def summary(*, ask: bool = False) -> Summary:
            # Every summary it sends claims the forged vector (a member that invites
            # a pull once, then tells the truth, would be waited out: the target does
            # not pull while the phone's own pushes are arriving).
            return Summary(DATA_VERSION, store, vv, ask)

        replica.receive = receive  # type: ignore[method-assign]
        replica.summary = summary  # type: ignore[method-assign]
        data._send(target, replica, summary())
        return {"armed": True}

    async def forge_status(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"pages_sent": self._forged_pages}


def _describe(sender: str, env: Envelope, message: SyncMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sender": sender,
        "store": message.store,
        "label": env.label,
        "type": type(message).__name__.lower(),
        "at": time.time(),
    }
    if isinstance(message, Page):
        entry["keys"] = [op.key for group in message.groups for op in group.items]
        entry["keys"] += [row.key for row in message.rows]
    elif isinstance(message, Summary | Pull):
        entry["vv"] = dict(message.vv)
    else:
        entry["keys"] = [op.key for batch in message.batches for op in batch.ops]
    return entry


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = BusSettings(
        listen=tuple(args.listen), connect=tuple(args.connect), multicast=False
    ).with_overrides(args.set)
    node = Node(open_home(Path(args.home)), settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stopping.set)
    async with node:
        control = node._control
        assert control is not None
        Hostile(node).register(control)
        log.info("%s: hostile member up as %s", node.name, node.home.device_id)
        await node.run_until_stopped()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile_node")
    parser.add_argument("--home", required=True)
    parser.add_argument("--listen", action="append", default=[])
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--no-multicast", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
