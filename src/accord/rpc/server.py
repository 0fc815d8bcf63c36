"""The callee side of RPC: serves this device's registered methods to circle members."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from accord.bus import keys
from accord.bus.session import Bus, Replier, Undo
from accord.errors import AccordError, SealError, UnknownSender
from accord.rpc.messages import (
    EMPTY_MAP,
    MAX_ITEM,
    MAX_RESULT,
    MAX_TIMEOUT_S,
    MAX_WINDOW,
    NIL,
    NO_CHANNEL,
    ItemFrame,
    RpcRequest,
    RpcResult,
    StreamFrame,
    cancel_decoder,
    credit_decoder,
    remote_failure,
    request_decoder,
)
from accord.trust.channel_service import ChannelService
from accord.wire.messages import DECODE_ERRORS
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

Handler = Callable[[Any, str], Coroutine[Any, Any, Any]]  # (params, caller id) -> result
StreamHandler = Callable[[Any, str], AsyncIterator[Any]]  # (params, caller id) -> items
STALL_S = 30.0  # a stream whose caller grants no credit for this long is ended
BIG_ITEM = 64 * 1024  # items from this size on are sealed with seal_buffer


@dataclass(frozen=True)
class _Method:
    handler: Handler | StreamHandler
    params: type[Any]
    allowed: frozenset[str] | None
    streams: bool


@dataclass
class _Flow:
    """Credit of one running stream: items with seq < granted may be sent."""

    granted: int
    more: asyncio.Event = field(default_factory=asyncio.Event)


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RpcServer:
    """Serves this device's registered methods to circle members."""

    def __init__(self, bus: Bus, channels: ChannelService, device_id: str, label: str) -> None:
        self._bus = bus
        self._channels = channels
        self._me = device_id
        self._label = label
        self._methods: dict[tuple[str, str], _Method] = {}
        self._running: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self._flows: dict[tuple[str, int], _Flow] = {}
        self._restricted: dict[str, frozenset[str]] = {}
        self._undo: list[Undo] = []
        self._quiet = QuietLog(log)

    def register(
        self,
        service: str,
        method: str,
        handler: Handler,
        params: type[Any] = type(None),
        *,
        allowed: set[str] | None = None,
    ) -> None:
        """Expose ``handler`` as ``service.method``. ``allowed``: only these device ids
        may call it (default: every circle member)."""
        self._add(service, method, _Method(handler, params, _frozen(allowed), streams=False))

    def register_stream(
        self,
        service: str,
        method: str,
        handler: StreamHandler,
        params: type[Any] = type(None),
        *,
        allowed: set[str] | None = None,
    ) -> None:
        """Expose an async generator as a stream: callers iterate its items, and it
        runs only as far ahead of them as they grant credit."""
        self._add(service, method, _Method(handler, params, _frozen(allowed), streams=True))

    def _add(self, service: str, method: str, entry: _Method) -> None:
        if "/" in service or "/" in method or not service or not method:
            raise ValueError("service and method names are non-empty and have no '/'")
        if any(c in service + method for c in "*$?#"):
            raise ValueError("service and method names cannot contain key wildcards")
        self._methods[(service, method)] = entry

    def restrict(self, service: str, allowed: set[str] | None) -> None:
        """Limit ``service`` (registered now or later) to ``allowed`` devices, over any
        method's own list; None lifts the restriction."""
        if allowed is None:
            self._restricted.pop(service, None)
        else:
            self._restricted[service] = frozenset(allowed)

    @property
    def device_id(self) -> str:
        return self._me

    async def run_local(self, key: str, req: RpcRequest) -> RpcResult:
        """A unary call by this device on itself (no network, same checks)."""
        return await self._run(key, self._me, req)

    async def stream_local(self, key: str, req: RpcRequest) -> AsyncIterator[Any]:
        """A stream by this device on itself: the handler's items, errors typed."""
        try:
            entry, params = self._resolve(key, self._me, req, streams=True)
        except _Refused as exc:
            raise remote_failure("this device", exc.kind, str(exc)) from None
        items = entry.handler(params, self._me)
        assert isinstance(items, AsyncIterator)
        try:
            async for item in items:
                yield item
        except AccordError:
            raise
        except Exception as exc:  # as a remote caller would see it
            raise remote_failure("this device", type(exc).__name__, str(exc)) from exc
        finally:
            closer = getattr(items, "aclose", None)
            if closer is not None:
                await closer()

    def restrictions(self) -> dict[str, frozenset[str]]:
        return dict(self._restricted)

    def methods(self) -> list[str]:
        return sorted(f"{s}.{m}" for s, m in self._methods)

    def services(self) -> list[str]:
        return sorted({s for s, _ in self._methods})

    async def start(self) -> None:
        self._undo.append(self._bus.serve_query(keys.rpc_all(self._me), self._serve))
        self._undo.append(self._bus.subscribe(keys.rpc_cancel_key(self._me), self._on_cancel))
        self._undo.append(self._bus.subscribe(keys.rpc_credit_key(self._me), self._on_credit))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, key: str, payload: bytes, reply: Replier) -> None:
        """Threat model: the payload may come from anyone. Only a frame sealed on a
        pairwise channel with a current member opens, and its sender is who sealed
        it: the caller id every handler and allow-list sees cannot be forged by
        another member. A frame on a channel we do not hold (we restarted, or a
        frame under the circle key) naming a member as sender gets an empty reply,
        which tells a real member to open a new channel and retry; the request did
        not run. Strangers get nothing. (docs/protocol.md, "Remote calls": the order
        of these checks and each answer.) Every refusal is logged, once per kind of
        fault (and caller, once it is known) at warning level, then at debug."""
        try:
            sender, plain = self._channels.open(key, payload)
        except UnknownSender as exc:
            if self._channels.stale_member(payload):
                self._quiet.warn("no-channel", "%s: RPC on a channel we do not hold; "
                                 "answered 'no channel': %s", self._label, exc)  # fmt: skip
                await reply(NO_CHANNEL)
                return
            self._quiet.warn("stranger", "%s: dropped an RPC query from no member: %s",
                             self._label, exc)  # fmt: skip
            return
        except SealError as exc:  # tampered, replayed or malformed: unauthenticated, so silent
            self._quiet.warn("seal:" + type(exc).__name__, "%s: dropped an RPC query: %s",
                             self._label, exc)  # fmt: skip
            return
        try:
            req = request_decoder.decode(plain)
        except DECODE_ERRORS as exc:
            self._quiet.warn("InvalidRequest:" + sender, "%s: refused an RPC request from %s "
                             "(InvalidRequest): %s", self._label, sender[:10], exc)  # fmt: skip
            result = _error("InvalidRequest", f"the request does not decode: {exc}")
            await self._reply(reply, sender, key, result)
            return
        if req.window > 0:
            await self._stream(key, sender, req, reply)
        else:
            await self._reply(reply, sender, key, await self._run(key, sender, req))

    async def _reply(self, reply: Replier, peer: str, key: str, message: msgspec.Struct) -> None:
        frame = self._channels.seal(peer, key, msgspec.msgpack.encode(message))
        if frame is not None:  # None: the peer was revoked meanwhile
            await reply(frame)

    def _resolve(
        self, key: str, sender: str, req: RpcRequest, streams: bool
    ) -> tuple[_Method, Any]:
        try:
            return self._check(key, sender, req, streams)
        except _Refused as exc:
            self._quiet.warn(f"{exc.kind}:{sender}", "%s: refused %s from %s (%s): %s",
                             self._label, key, sender[:10], exc.kind, exc)  # fmt: skip
            raise

    def _check(self, key: str, sender: str, req: RpcRequest, streams: bool) -> tuple[_Method, Any]:
        parts = key.split("/")
        service, method = parts[-2], parts[-1]
        entry = self._methods.get((service, method))
        if entry is None:
            known = ", ".join(self.methods()) or "none"
            raise _Refused(
                "UnknownMethod", f"{service}.{method} is not served here; known: {known}"
            )
        allowed = self._restricted.get(service, entry.allowed)
        if allowed is not None and sender not in allowed and sender != self._me:
            raise _Refused("PermissionDenied", f"{service} is restricted on this device")
        if entry.streams != streams:
            how = "a stream: iterate it with stream()" if entry.streams else "not a stream: call it"
            raise _Refused("WrongCallKind", f"{service}.{method} is {how}")
        if entry.params is type(None) and bytes(req.params) == EMPTY_MAP:
            return entry, None  # "no params" sent as {}: taken as nil (docs/protocol.md)
        try:
            return entry, msgspec.msgpack.decode(req.params, type=entry.params)
        except DECODE_ERRORS as exc:
            try:  # JSON-born params (the CLI, scripts) carry bytes as base64 text
                return entry, msgspec.convert(msgspec.msgpack.decode(req.params), entry.params)
            except DECODE_ERRORS:
                raise _Refused("InvalidParams", f"{service}.{method}: {exc}") from None

    async def run_as(self, caller: str, key: str, req: RpcRequest) -> RpcResult:
        """Run a call on this device as ``caller`` would make it (its allow-lists and
        checks applied to ``caller``), with no network in between: for a component
        that already authenticated the caller's authority (a rule, signed by its
        author, run on the author's behalf)."""
        return await self._run(key, caller, req)

    async def _run(self, key: str, sender: str, req: RpcRequest) -> RpcResult:
        try:
            entry, params = self._resolve(key, sender, req, streams=False)
        except _Refused as exc:
            return _error(exc.kind, str(exc))
        timeout = min(max(req.timeout_ms, 1) / 1000, MAX_TIMEOUT_S)
        try:
            coro = entry.handler(params, sender)
        except Exception as exc:  # failed before its first await: still the caller's answer
            return _error(type(exc).__name__, str(exc))
        if not asyncio.iscoroutine(coro):
            log.error("%s: handler of %s is not async", self._label, key)
            return _error("BadHandler", "the method's handler is not an async function")
        task = asyncio.get_running_loop().create_task(coro)
        self._running[(sender, req.call_id)] = task
        try:
            value = await asyncio.wait_for(task, timeout)
            encoded = msgspec.msgpack.encode(value)
        except asyncio.CancelledError:
            if task.cancelled():
                return _error("Cancelled", "the call was cancelled")
            raise
        except TimeoutError:
            return _error("CallTimeout", f"the call ran past its {timeout:g} s timeout")
        except Exception as exc:  # the handler's failure is the caller's answer
            return _error(type(exc).__name__, str(exc))
        finally:
            self._running.pop((sender, req.call_id), None)
        if len(encoded) > MAX_RESULT:
            return _error(
                "PayloadTooLarge",
                f"the result is {len(encoded)} bytes, over the {MAX_RESULT} byte limit "
                "of a call; serve it as a stream",
            )
        return RpcResult(True, msgspec.Raw(encoded))

    async def _stream(self, key: str, sender: str, req: RpcRequest, reply: Replier) -> None:
        seq = 0

        async def send(frame: StreamFrame) -> None:
            await self._reply(reply, sender, key, frame)

        try:
            entry, params = self._resolve(key, sender, req, streams=True)
        except _Refused as exc:
            await send(StreamFrame(0, end=True, error_type=exc.kind, error=str(exc)))
            return
        call = (sender, req.call_id)
        flow = _Flow(min(req.window, MAX_WINDOW))
        task = asyncio.current_task()
        assert task is not None
        self._flows[call] = flow
        self._running[call] = task
        try:
            items = entry.handler(params, sender)
        except Exception as exc:
            items = _failed(exc)
        if not isinstance(items, AsyncIterator):
            log.error("%s: handler of %s is not an async generator", self._label, key)
            items = _failed(
                _Refused("BadHandler", "the stream's handler is not an async generator")
            )
        # Items are encoded into one reused buffer: sealing copies it, so it is free
        # again for the next item, and big items cost no fresh allocation each.
        buffer = bytearray()
        try:
            async with asyncio.timeout(MAX_TIMEOUT_S):
                async for item in items:
                    while seq >= flow.granted:
                        flow.more.clear()
                        async with asyncio.timeout(STALL_S):
                            await flow.more.wait()
                    _encode_item(seq, item, buffer)
                    # A big item is sealed into a fresh buffer of its own (no copy to join
                    # header and ciphertext); the reply worker then owns it.
                    seal = (
                        self._channels.seal_buffer
                        if len(buffer) >= BIG_ITEM
                        else self._channels.seal
                    )
                    frame = seal(sender, key, buffer)
                    if frame is not None:  # None: the peer was revoked meanwhile
                        await reply(frame)
                    seq += 1
            await send(StreamFrame(seq, end=True))
        except asyncio.CancelledError:
            raise  # the caller cancelled: it expects nothing more
        except TimeoutError:
            log.info("%s: stream %s stalled or ran too long; ended", self._label, key)
            await send(StreamFrame(seq, end=True, error_type="CallTimeout", error="stream ended"))
        except _Refused as exc:
            await send(StreamFrame(seq, end=True, error_type=exc.kind, error=str(exc)))
        except Exception as exc:  # the generator's failure ends the caller's stream
            await send(StreamFrame(seq, end=True, error_type=type(exc).__name__, error=str(exc)))
        finally:
            self._flows.pop(call, None)
            self._running.pop(call, None)
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    def _on_cancel(self, key: str, payload: bytes) -> None:
        try:
            sender, plain = self._channels.open(key, payload)
            call_id = cancel_decoder.decode(plain).call_id
        except (SealError, *DECODE_ERRORS):
            return
        task = self._running.get((sender, call_id))
        if task is not None:
            task.cancel()

    def _on_credit(self, key: str, payload: bytes) -> None:
        try:
            sender, plain = self._channels.open(key, payload)
            credit = credit_decoder.decode(plain)
        except (SealError, *DECODE_ERRORS):
            return
        flow = self._flows.get((sender, credit.call_id))
        if flow is not None and credit.granted > flow.granted:
            flow.granted = credit.granted
            flow.more.set()


async def _failed(exc: Exception) -> AsyncIterator[Any]:
    """A stream that fails at once with ``exc`` (its handler could not start)."""
    raise exc
    yield  # pragma: no cover - makes this an async generator


_item_encoder = msgspec.msgpack.Encoder()


def _encode_item(seq: int, item: Any, buffer: bytearray) -> None:
    """Write the plaintext of item ``seq`` into ``buffer`` (its whole content)."""
    _item_encoder.encode_into(ItemFrame(seq, item), buffer)
    size = len(buffer) - len(_item_encoder.encode(ItemFrame(seq, None))) + len(NIL)
    if size > MAX_ITEM:
        raise _Refused(
            "PayloadTooLarge",
            f"a stream item of {size} bytes is over the {MAX_ITEM} byte limit; "
            "send it in smaller pieces",
        )


def _frozen(allowed: set[str] | None) -> frozenset[str] | None:
    return frozenset(allowed) if allowed is not None else None


def _error(kind: str, message: str) -> RpcResult:
    return RpcResult(False, error_type=kind, error=message)
