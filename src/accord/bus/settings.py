"""Named, overridable transport settings, and their translation to a Zenoh config."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import zenoh

from accord.errors import TransportError

Millis = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]


class BusSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Transport settings. Defaults meet the presence bounds in docs/performance.md:
    a clean stop or a killed peer is seen offline at once (its links close), a frozen
    or vanished host within ``lease_ms``, and a restarted peer is reconnected within
    ``retry_max_ms`` of its start."""

    listen: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    # Relay endpoints (``accord relay``): when set, the node is a Zenoh *client* of the
    # relay and every link goes through it (docs/architecture.md, "Relays").
    relay: tuple[str, ...] = ()
    multicast: bool = True
    lease_ms: Millis = 1500
    # The lease of a relay client's link (used instead of ``lease_ms`` with ``relay``).
    # A crash closes the link, and the relay sees it at once whatever the lease; only a
    # frozen device or a cut network is noticed this late. Long, because one relay
    # carries a whole circle: a client starved of CPU for a second or two (100 nodes on
    # 2 cores) must not be cut off, come back and be fetched again by everyone.
    relay_lease_ms: Millis = 10_000
    keep_alive: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    connect_timeout_ms: Millis = 2000
    retry_init_ms: Millis = 100
    retry_max_ms: Millis = 400
    query_timeout_ms: Millis = 2000
    anti_entropy_ms: Millis = 30_000  # data stores exchange summaries this often
    shared_memory: bool = False
    zenoh_overrides: dict[str, str] = {}

    def with_overrides(self, pairs: list[str]) -> BusSettings:
        """Apply ``name=value`` overrides (``zenoh.<path>=<json5>`` passes raw Zenoh config)."""
        fields = msgspec.to_builtins(self)
        overrides = dict(self.zenoh_overrides)
        for pair in pairs:
            name, sep, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise TransportError(f"setting {pair!r} is not NAME=VALUE")
            if name.startswith("zenoh."):
                path = name[len("zenoh.") :].replace(".", "/")
                if not path or "//" in path or path.endswith("/"):
                    raise TransportError(f"setting {pair!r} names no Zenoh config path")
                overrides[path] = value
                continue
            if name not in fields or name in _NOT_SETTABLE:
                settable = sorted(set(fields) - _NOT_SETTABLE)
                raise TransportError(
                    f"unknown setting {name!r}; known: {', '.join(settable)}, zenoh.<path>"
                )
            fields[name] = value
        fields["zenoh_overrides"] = overrides
        try:
            return msgspec.convert(fields, BusSettings, strict=False)
        except msgspec.ValidationError as exc:
            raise TransportError(f"invalid setting: {exc}") from exc


_NOT_SETTABLE = frozenset({"listen", "connect", "relay", "zenoh_overrides"})


def zenoh_config(settings: BusSettings) -> zenoh.Config:
    conf = zenoh.Config()

    def put(key: str, value: object) -> None:
        conf.insert_json5(key, json.dumps(value))

    try:
        if settings.relay:
            # A client of the relay: Zenoh 1.x routers do not broker between two peers
            # that have no link of their own, so peer mode cannot cross sites. A client
            # listens nowhere and scouts for no other router: the relay is the one way in.
            put("mode", "client")
            put("listen/endpoints", [])
            put("connect/endpoints", [*settings.relay, *settings.connect])
        else:
            put("mode", "peer")
            put("listen/endpoints", list(settings.listen) or ["tcp/[::]:0"])
            put("connect/endpoints", list(settings.connect))
        put("connect/timeout_ms", settings.connect_timeout_ms)
        put("connect/exit_on_failure", True)
        retry = {
            "period_init_ms": settings.retry_init_ms,
            "period_max_ms": settings.retry_max_ms,
            "period_increase_factor": 1.5,
        }
        put("connect/retry", retry)
        put("scouting/multicast/enabled", settings.multicast and not settings.relay)
        put(
            "transport/link/tx/lease",
            settings.relay_lease_ms if settings.relay else settings.lease_ms,
        )
        put("transport/link/tx/keep_alive", settings.keep_alive)
        put("transport/shared_memory/enabled", settings.shared_memory)
        for key, raw in settings.zenoh_overrides.items():
            conf.insert_json5(key, raw)
    except zenoh.ZError as exc:
        raise TransportError(f"invalid Zenoh setting: {exc}") from exc
    return conf
