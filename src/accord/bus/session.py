"""The one seam between Zenoh's threads and asyncio.

Zenoh calls back on its own threads. Every callback is handed to the event loop
here, with exceptions caught and logged (Zenoh swallows them otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import zenoh

from accord.bus.settings import BusSettings, zenoh_config
from accord.errors import TransportError

log = logging.getLogger(__name__)

Undo = Callable[[], None]
QueryHandler = Callable[[str, bytes], Awaitable[bytes | None]]
Replier = Callable[[bytes | bytearray], Awaitable[None]]  # a bytearray: seal_buffer's frame
StreamingHandler = Callable[[str, bytes, Replier], Awaitable[None]]
MAX_PENDING_QUERIES = 64
LARGE_REPLY = 64 * 1024


def explain_open_error(exc: Exception, settings: BusSettings) -> TransportError:
    """Turn Zenoh's open errors into one line that says what to do."""
    text = str(exc)
    if "Unable to connect" in text:
        targets = re.findall(r"[a-z]+/[^\s\),\]]+", text.split("at /")[0])
        where = ", ".join(t for t in targets if "/" in t) or ", ".join(settings.connect)
        return TransportError(
            f"cannot reach --connect endpoint {where}: is a node listening there? "
            "(start it first, or drop that --connect)"
        )
    if "in use" in text or "Address already" in text or "bind" in text.lower():
        return TransportError(
            f"cannot listen on {', '.join(settings.listen) or 'the default endpoint'}: "
            "the address is already in use; choose another --listen port"
        )
    if "listen" in text.lower() or "locator" in text.lower() or "endpoint" in text.lower():
        return TransportError(f"invalid or unusable endpoint: {text.split(' at /')[0]}")
    return TransportError(f"cannot open the Zenoh session: {text.split(' at /')[0]}")


class Bus:
    """An open Zenoh session bound to one asyncio loop."""

    def __init__(self, session: zenoh.Session, loop: asyncio.AbstractEventLoop, label: str):
        self._session = session
        self._loop = loop
        self._label = label
        self._closed = False

    @classmethod
    async def open(cls, settings: BusSettings, label: str) -> Bus:
        loop = asyncio.get_running_loop()
        conf = zenoh_config(settings)
        try:
            session = await loop.run_in_executor(None, zenoh.open, conf)
        except zenoh.ZError as exc:
            raise explain_open_error(exc, settings) from exc
        return cls(session, loop, label)

    @property
    def zid(self) -> str:
        return str(self._session.zid())

    def peer_count(self) -> int:
        """How many Zenoh peers this session has a transport to."""
        try:
            return len(self._session.info.peers_zid())
        except zenoh.ZError:
            return 0

    def to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop; safe to call from any Zenoh thread."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("%s: handler %s failed", self._label, getattr(fn, "__name__", fn))

        with contextlib.suppress(RuntimeError):  # loop closed: we are shutting down
            self._loop.call_soon_threadsafe(guarded)

    def declare_token(self, key: str) -> Undo:
        token = self._session.liveliness().declare_token(key)
        return _once(token.undeclare)

    def watch_liveliness(self, key: str, on_change: Callable[[str, bool], None]) -> Undo:
        """Call ``on_change(key, alive)`` on the loop for every token matching ``key``,
        starting with those already alive."""

        def callback(sample: zenoh.Sample) -> None:
            try:
                alive = sample.kind == zenoh.SampleKind.PUT
                self.to_loop(on_change, str(sample.key_expr), alive)
            except Exception:
                log.exception("%s: liveliness callback failed", self._label)

        sub = self._session.liveliness().declare_subscriber(key, callback, history=True)
        return _once(sub.undeclare)

    def serve_bytes(self, key: str, payload: Callable[[], bytes]) -> Undo:
        """Answer queries on ``key`` with ``payload()``, directly on the Zenoh thread
        (``payload`` must be thread-safe and cheap)."""

        def callback(query: zenoh.Query) -> None:
            try:
                query.reply(key, payload())
            except Exception:
                log.exception("%s: queryable %s failed", self._label, key)

        queryable = self._session.declare_queryable(key, callback)
        return _once(queryable.undeclare)

    def serve(self, key: str, handler: QueryHandler) -> Undo:
        """Answer queries on ``key`` with ``await handler(query_key, payload)`` on the loop.
        A None result sends no reply."""

        async def one_reply(query_key: str, payload: bytes, reply: Replier) -> None:
            answer = await handler(query_key, payload)
            if answer is not None:
                await reply(answer)

        return self.serve_query(key, one_reply)

    def serve_query(self, key: str, handler: StreamingHandler) -> Undo:
        """Run ``await handler(query_key, payload, reply)`` on the loop for each query on
        ``key``; ``await reply(bytes)`` may be called any number of times, and the query
        ends when the handler returns. At most MAX_PENDING_QUERIES run at once; beyond
        that, queries are dropped unanswered (the asker times out) so a flood cannot
        grow memory."""
        pending: set[asyncio.Task[None]] = set()

        async def answer(query: zenoh.Query) -> None:
            query_key = query.key_expr
            # A large reply runs in a worker thread and reply() returns once it is
            # handed over, so the handler prepares its next reply meanwhile (a stream
            # seals item n + 1 while item n is sent). A Zenoh Query must not be used by
            # two threads at once ("RuntimeError: Already borrowed"), so each reply
            # first waits (shielded) for the one before, which also raises its error
            # there; the final drop waits for the last one too.
            sending: asyncio.Future[None] | None = None

            async def reply(data: bytes | bytearray) -> None:
                nonlocal sending
                if sending is not None:
                    await asyncio.shield(sending)  # cancelled here: the drop still waits
                    sending = None
                if len(data) > LARGE_REPLY:  # may block on a congested link: not on the loop
                    sending = self._loop.run_in_executor(None, query.reply, query_key, data)
                else:
                    query.reply(query_key, data)

            try:
                payload = query.payload.to_bytes() if query.payload is not None else b""
                await handler(str(query_key), payload, reply)
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("%s: handler for %s failed", self._label, key)
            finally:
                if sending is None:
                    self._drop(query)
                else:  # runs on the loop once the worker's last reply has returned
                    sending.add_done_callback(lambda done: self._drop_after(query, done))

        def start(query: zenoh.Query) -> None:
            if len(pending) >= MAX_PENDING_QUERIES:
                self._drop(query)
                return
            task = self._loop.create_task(answer(query))
            pending.add(task)
            task.add_done_callback(pending.discard)

        def callback(query: zenoh.Query) -> None:
            self.to_loop(start, query)

        queryable = self._session.declare_queryable(key, callback)
        undo = _once(queryable.undeclare)

        def undo_all() -> None:
            undo()
            for task in list(pending):
                task.cancel()

        return undo_all

    def _drop_after(self, query: zenoh.Query, last: asyncio.Future[None]) -> None:
        """End a query once its last reply (sent by a worker) is out."""
        if not last.cancelled() and last.exception() is not None:
            log.debug("%s: the last reply to %s failed: %s", self._label, query.key_expr,
                      last.exception())  # fmt: skip
        self._drop(query)

    def _drop(self, query: zenoh.Query) -> None:
        """End a query: Zenoh tells the asker no more replies come."""
        try:
            query.drop()  # type: ignore[no-untyped-call]
        except Exception:
            log.exception("%s: ending query %s failed", self._label, query.key_expr)

    def subscribe(self, key: str, on_sample: Callable[[str, bytes], None]) -> Undo:
        """Call ``on_sample(key, payload)`` on the loop for every put on ``key``."""

        def callback(sample: zenoh.Sample) -> None:
            try:
                if sample.kind == zenoh.SampleKind.PUT:
                    self.to_loop(on_sample, str(sample.key_expr), sample.payload.to_bytes())
            except Exception:
                log.exception("%s: subscriber callback failed", self._label)

        sub = self._session.declare_subscriber(key, callback)
        return _once(sub.undeclare)

    async def get(
        self, selector: str, timeout: float, payload: bytes | None = None
    ) -> list[tuple[str, bytes]]:
        """All successful replies to a query, as (key, payload). Error replies are
        logged and dropped. An empty list means nobody answered in time."""
        done: asyncio.Future[None] = self._loop.create_future()
        replies: list[tuple[str, bytes]] = []

        def on_reply(reply: zenoh.Reply) -> None:
            try:
                ok = reply.ok
                if ok is not None:
                    replies.append((str(ok.key_expr), ok.payload.to_bytes()))
                else:
                    log.debug("%s: error reply to %s", self._label, selector)
            except Exception:
                log.exception("%s: reply handler failed", self._label)

        def on_done() -> None:
            self.to_loop(_resolve, done)

        cancel = self._query(selector, timeout, payload, on_reply, on_done, consolidate=True)
        try:
            await done
        except asyncio.CancelledError:
            cancel()  # stop waiting for replies
            raise
        return replies

    def query(
        self,
        selector: str,
        timeout: float,
        payload: bytes | None,
        on_reply: Callable[[bytes], None],
        on_done: Callable[[], None],
    ) -> Undo:
        """Start a query whose replies arrive one by one: ``on_reply(payload)`` on the
        loop for each, then ``on_done()`` once (finished, timed out, or the replier's
        transport closed). The returned function cancels it."""

        def reply_cb(reply: zenoh.Reply) -> None:
            try:
                ok = reply.ok
                if ok is not None:
                    self.to_loop(on_reply, ok.payload.to_bytes())
            except Exception:
                log.exception("%s: reply handler failed", self._label)

        def done_cb() -> None:
            self.to_loop(on_done)

        return self._query(selector, timeout, payload, reply_cb, done_cb, consolidate=False)

    def _query(
        self,
        selector: str,
        timeout: float,
        payload: bytes | None,
        on_reply: Callable[[zenoh.Reply], None],
        on_done: Callable[[], None],
        *,
        consolidate: bool,
    ) -> Undo:
        # Zenoh's default consolidation keeps only the latest reply per key, holding
        # them back until the end: a stream needs every reply, as it arrives.
        mode = zenoh.ConsolidationMode.AUTO if consolidate else zenoh.ConsolidationMode.NONE
        # indirect=False: run on Zenoh's thread (our callbacks only hand off to the
        # loop); the default starts a Python thread per query, ~0.7 ms a call.
        handler = zenoh.handlers.Callback(on_reply, on_done, indirect=False)
        token = zenoh.CancellationToken()
        try:
            self._session.get(
                selector,
                handler,
                timeout=timeout,
                payload=payload,
                cancellation_token=token,
                consolidation=mode,
            )
        except zenoh.ZError as exc:
            raise TransportError(f"query {selector} failed: {exc}") from exc
        return _once(token.cancel)

    def put(self, key: str, payload: bytes | bytearray) -> None:
        self._session.put(key, payload)

    def put_reliably(self, key: str, payload: bytes | bytearray) -> None:
        """Put, waiting for room in Zenoh's queue instead of dropping when it is full.
        It can block: call it off the event loop (e.g. in an executor)."""
        self._session.put(key, payload, congestion_control=zenoh.CongestionControl.BLOCK)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._loop.run_in_executor(None, self._session.close)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _once(fn: Callable[[], None]) -> Undo:
    called = False

    def undo() -> None:
        nonlocal called
        if called:
            return
        called = True
        try:
            fn()
        except zenoh.ZError:
            log.debug("undeclare after session close ignored")

    return undo
