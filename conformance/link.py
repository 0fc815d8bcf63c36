"""The client's Zenoh session: queries, queryables and liveliness, nothing Accord."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import zenoh


@dataclass(frozen=True)
class Reply:
    """One reply to a query: its key and payload, or an error reply's payload."""

    key: str
    payload: bytes
    ok: bool


@dataclass(frozen=True)
class Answer:
    replies: list[Reply]
    seconds: float  # how long until the query ended (all replies or its timeout)


Responder = Callable[[str, bytes], bytes | None]


class Link:
    def __init__(self, connect: list[str], *, multicast: bool = False) -> None:
        conf = zenoh.Config()
        conf.insert_json5("mode", json.dumps("peer"))
        conf.insert_json5("connect/endpoints", json.dumps(connect))
        conf.insert_json5("listen/endpoints", json.dumps([]))
        conf.insert_json5("scouting/multicast/enabled", json.dumps(multicast))
        self.session = zenoh.open(conf)
        self._undo: list[Callable[[], None]] = []

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self.session.close()  # type: ignore[no-untyped-call]

    def get(
        self, key: str, payload: bytes | None = None, *, timeout: float = 2.0, limit: int = 64
    ) -> Answer:
        """Query ``key`` without consolidation and collect up to ``limit`` replies."""
        started = time.monotonic()
        handler = self.session.get(
            key,
            payload=payload,
            timeout=timeout,
            consolidation=zenoh.ConsolidationMode.NONE,
            target=zenoh.QueryTarget.ALL,
        )
        replies: list[Reply] = []
        for r in handler:
            if r.ok is not None:
                replies.append(Reply(str(r.ok.key_expr), r.ok.payload.to_bytes(), True))
            elif r.err is not None:
                replies.append(Reply(key, r.err.payload.to_bytes(), False))
            if len(replies) >= limit:
                break
        return Answer(replies, time.monotonic() - started)

    def alive(self, pattern: str, timeout: float = 2.0) -> list[str]:
        """Keys of the liveliness tokens alive under ``pattern``."""
        keys = []
        for r in self.session.liveliness().get(pattern, timeout=timeout):
            if r.ok is not None:
                keys.append(str(r.ok.key_expr))
        return keys

    def token(self, key: str) -> None:
        tok = self.session.liveliness().declare_token(key)
        self._undo.append(tok.undeclare)

    def serve(self, key: str, respond: Responder) -> None:
        """Answer queries on ``key``: ``respond(key, payload)`` returns the reply
        payload, or None for no reply."""

        def on_query(query: zenoh.Query) -> None:
            body = query.payload.to_bytes() if query.payload is not None else b""
            answer = respond(str(query.key_expr), body)
            if answer is not None:
                query.reply(str(query.key_expr), answer)

        q = self.session.declare_queryable(key, on_query)
        self._undo.append(q.undeclare)

    def put(self, key: str, payload: bytes) -> None:
        self.session.put(key, payload)


def stream_replies(
    link: Link, key: str, payload: bytes, timeout: float
) -> zenoh.Handler[zenoh.Reply]:
    """A query's reply handler, to read replies as they come (for streams)."""
    return link.session.get(
        key,
        payload=payload,
        timeout=timeout,
        consolidation=zenoh.ConsolidationMode.NONE,
        target=zenoh.QueryTarget.ALL,
    )


def subscribe(link: Link, key: str, on_sample: Callable[[bytes], None]) -> None:
    """Call ``on_sample(payload)`` for each put on ``key`` (on Zenoh's thread)."""
    sub = link.session.declare_subscriber(key, lambda s: on_sample(s.payload.to_bytes()))
    link._undo.append(sub.undeclare)
