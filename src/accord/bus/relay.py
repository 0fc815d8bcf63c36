"""A relay: a Zenoh router that carries Accord's traffic between sites, and nothing else.

Nodes that cannot reach each other directly (two homes, a phone on mobile data)
connect to one relay as Zenoh clients (``accord up --relay ENDPOINT``). The relay is
a Python Zenoh session in router mode: no ``zenohd`` binary, no storage plugins.

What it may carry is fixed by Zenoh's access control, checked on every message in
both directions: only the key expressions of Accord's layout pass, so a stranger
cannot use the relay as a general-purpose broker. What it can read is fixed by
Accord's sealing: member traffic is sealed end to end (docs/protocol.md, "Sealed
frames"), so the relay sees public announcements, pairing handshakes (built to be
safe to observe), who talks to whom, and volume; never a call, a value or a key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import zenoh

from accord.bus import keys
from accord.errors import TransportError

log = logging.getLogger(__name__)

DEFAULT_LISTEN: Final = "tcp/[::]:7447"  # Zenoh's usual router port
# The key-expression layout of docs/protocol.md, and nothing more of accord/v1/: a
# stranger cannot even use a made-up key under Accord's root as a mailbox. A key added
# to bus/keys.py must be added here (tests/test_relay.py checks every builder).
ALLOWED_KEYS: Final = (
    keys.PRESENCE_ALL,
    keys.ANNOUNCE_ALL,
    f"{keys.PAIR_PREFIX}/*",
    f"{keys.DETAILS_PREFIX}/*",
    keys.MEMBERS_KEY,
    f"{keys.ROOT}/session/*",
    f"{keys.ROOT}/rekey/*",
    f"{keys.RPC_PREFIX}/*/*/*",
    f"{keys.ROOT}/rpc-cancel/*",
    f"{keys.ROOT}/rpc-credit/*",
    f"{keys.ROOT}/channel/*",
    f"{keys.ROOT}/data/*",
)

# Every kind of message Zenoh's access control can filter (zenoh 1.x). A kind left
# out here would fall to the default, "deny", so an omission fails closed.
_MESSAGES: Final = (
    "put",
    "delete",
    "declare_subscriber",
    "query",
    "reply",
    "declare_queryable",
    "liveliness_token",
    "liveliness_query",
    "declare_liveliness_subscriber",
)


def access_control() -> dict[str, object]:
    """Zenoh's ``access_control`` section: Accord's keys pass, nothing else."""
    return {
        "enabled": True,
        "default_permission": "deny",
        "rules": [
            {
                "id": "accord-keys",
                "messages": list(_MESSAGES),
                "flows": ["ingress", "egress"],
                "permission": "allow",
                "key_exprs": list(ALLOWED_KEYS),
            }
        ],
        "subjects": [{"id": "anyone"}],  # no attribute: matches every link
        "policies": [{"id": "accord-only", "rules": ["accord-keys"], "subjects": ["anyone"]}],
    }


def relay_config(
    listen: Sequence[str] = (),
    *,
    connect: Sequence[str] = (),
    tls: tuple[Path, Path] | None = None,
    lease_ms: int = 10_000,
) -> zenoh.Config:
    """The Zenoh config of a relay listening on ``listen`` (default: tcp port 7447 on
    every address). ``tls`` is (certificate, private key) in PEM for ``tls/`` endpoints;
    ``connect`` links this relay to other relays (routers route between each other)."""
    conf = zenoh.Config()

    def put(key: str, value: object) -> None:
        conf.insert_json5(key, json.dumps(value))

    try:
        put("mode", "router")
        put("listen/endpoints", list(listen) or [DEFAULT_LISTEN])
        put("connect/endpoints", list(connect))
        # Another relay that restarts is redialled within a second; a relay starts
        # even if the one it links to is not up yet (it keeps trying meanwhile).
        put("connect/retry", {"period_init_ms": 100, "period_max_ms": 1000})
        put("connect/exit_on_failure", False)
        # A relay is reached by address: it neither answers nor sends multicast
        # scouting, so it never joins a LAN's peer mesh by itself.
        put("scouting/multicast/enabled", False)
        # The lease the relay announces: its clients drop the link only after this long
        # without a word from it (a relay that stops closes its links at once; this is
        # for one that freezes), not when they themselves were starved of CPU a moment.
        put("transport/link/tx/lease", lease_ms)
        put("transport/link/tx/keep_alive", 4)
        if tls is not None:
            cert, key = tls
            for path in (cert, key):
                if not path.is_file():
                    raise TransportError(f"--tls: {path} is not a readable file")
            put("transport/link/tls/listen_certificate", str(cert))
            put("transport/link/tls/listen_private_key", str(key))
        put("access_control", access_control())
    except zenoh.ZError as exc:
        raise TransportError(f"invalid relay setting: {exc}") from exc
    return conf


class Relay:
    """A running relay. ``with Relay(...)`` opens it; leaving the block closes it."""

    def __init__(
        self,
        listen: Sequence[str] = (),
        *,
        connect: Sequence[str] = (),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self._conf = relay_config(listen, connect=connect, tls=tls)
        self.listen = tuple(listen) or (DEFAULT_LISTEN,)
        self._session: zenoh.Session | None = None

    def open(self) -> None:
        try:
            self._session = zenoh.open(self._conf)
        except zenoh.ZError as exc:
            text = str(exc).split(" at /")[0]
            raise TransportError(
                f"cannot start the relay on {', '.join(self.listen)}: {text} "
                "(is the port in use? choose another --listen)"
            ) from exc
        log.info("relay %s listening on %s", self.zid, ", ".join(self.listen))

    @property
    def zid(self) -> str:
        return "" if self._session is None else str(self._session.zid())

    def clients(self) -> int:
        """How many sessions have a link to this relay now (clients and peers)."""
        if self._session is None:
            return 0
        try:
            return len(self._session.info.peers_zid()) + len(self._session.info.routers_zid())
        except zenoh.ZError:
            return 0

    def close(self) -> None:
        if self._session is not None:
            self._session.close()  # type: ignore[no-untyped-call]
            self._session = None

    def __enter__(self) -> Relay:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
