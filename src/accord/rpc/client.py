"""The caller side of RPC: typed calls and streams to other circle members."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.errors import (
    AccordError,
    CallTimeout,
    DeviceUnavailable,
    PayloadTooLarge,
    RemoteError,
    SealError,
    TrustError,
)
from accord.rpc.messages import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_WINDOW,
    MAX_ITEM,
    MAX_PARAMS,
    MAX_TIMEOUT_S,
    MAX_WINDOW,
    NO_CHANNEL,
    RpcCancel,
    RpcCredit,
    RpcRequest,
    RpcResult,
    StreamFrame,
    frame_decoder,
    remote_failure,
    result_decoder,
)
from accord.trust.channel_service import ChannelService
from accord.trust.circle import Circle
from accord.wire.messages import DECODE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")


class LocalServer(Protocol):
    """This device's own RPC server, as the client sees it (calls to self stay local).

    A protocol rather than an import of ``RpcServer``: the server imports the client's
    error mapping, so the client must not import the server back.
    """

    @property
    def device_id(self) -> str: ...

    async def run_local(self, key: str, req: RpcRequest) -> RpcResult: ...

    def stream_local(self, key: str, req: RpcRequest) -> AsyncIterator[Any]: ...


FRAME_SLACK = 4096  # sealing and framing around an item


class RpcClient:
    """Calls methods on other members."""

    def __init__(
        self,
        bus: Bus,
        channels: ChannelService,
        circle: Circle,
        directory: DeviceDirectory,
        local: LocalServer | None = None,
    ) -> None:
        self._bus = bus
        self._channels = channels
        self._circle = circle
        self._directory = directory
        self._local = local  # calls to this device itself go straight to its server

    def _is_local(self, device_id: str) -> bool:
        return self._local is not None and device_id == self._local.device_id

    def _target(self, device_id: str) -> str:
        """The device's name for messages; raises unless it is an online member."""
        if self._is_local(device_id):
            return "this device"
        if not self._circle.is_member(device_id):
            raise TrustError(f"{device_id} is not a member of this circle; pair with it first")
        record = self._directory.get(device_id)
        name = record.name if record else device_id[:10]
        if record is None or not record.online:
            raise DeviceUnavailable(f"{name} is offline")
        return name

    def _request(self, params: Any, timeout: float, window: int) -> RpcRequest:
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise AccordError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds")
        encoded = msgspec.msgpack.encode(params)
        if len(encoded) > MAX_PARAMS:
            raise PayloadTooLarge(
                f"parameters of {len(encoded)} bytes are over the {MAX_PARAMS} byte limit"
            )
        return RpcRequest(secrets.randbits(63), msgspec.Raw(encoded), int(timeout * 1000), window)

    async def _sealed(self, device_id: str, name: str, key: str, req: RpcRequest) -> bytes:
        """``req`` sealed on our pairwise channel with the callee (opened if needed)."""
        frame = None
        if await self._channels.ensure(device_id):
            frame = self._channels.seal(device_id, key, msgspec.msgpack.encode(req))
        if frame is None:
            raise DeviceUnavailable(f"{name} did not open a channel with this device")
        return frame

    def _authentic(self, key: str, device_id: str, payload: bytes) -> bytes | None:
        """The plaintext of a reply the callee sealed for us, or None for anything
        else: any Zenoh peer can answer a query, so strangers' replies are noise."""
        try:
            sender, plain = self._channels.open(key, payload)
        except SealError as exc:
            log.debug("dropped a reply on %s: %s", key, exc)
            return None
        return plain if sender == device_id else None

    async def call(
        self,
        device_id: str,
        service: str,
        method: str,
        params: Any = None,
        result: type[T] = Any,  # type: ignore[assignment]
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> T:
        """Call ``service.method`` on a member and return its result as ``result``."""
        name = self._target(device_id)
        key = keys.rpc_key(device_id, service, method)
        if self._is_local(device_id):
            assert self._local is not None
            req = self._local_request(params, timeout, 0)
            return _result_value(await self._local.run_local(key, req), name, service, method,
                                 result)  # fmt: skip
        req = self._request(params, timeout, 0)
        started = time.monotonic()
        for attempt in (1, 2):
            frame = await self._sealed(device_id, name, key, req)
            left = timeout - (time.monotonic() - started)
            try:
                replies = await self._bus.get(key, max(left, 0.001), payload=frame)
            except asyncio.CancelledError:
                self.send_cancel(device_id, req.call_id)
                raise
            stale = False
            for _, payload in replies:
                if payload == NO_CHANNEL:
                    stale = True
                    continue
                plain = self._authentic(key, device_id, payload)
                if plain is None:
                    continue
                try:
                    res = result_decoder.decode(plain)
                except DECODE_ERRORS as exc:
                    raise RemoteError(
                        "ProtocolError", f"unreadable reply from {name}: {exc}"
                    ) from None
                return _result_value(res, name, service, method, result)
            if not (stale and attempt == 1):
                break
            # The callee restarted and lost our channel; the request did not run there.
            self._channels.forget(device_id)
        if replies:
            raise RemoteError("ProtocolError", f"no authentic reply from {name}")
        if time.monotonic() - started >= timeout * 0.95:
            self.send_cancel(device_id, req.call_id)
            raise CallTimeout(f"{service}.{method} on {name} timed out after {timeout:g} s")
        raise DeviceUnavailable(f"{name} did not answer {service}.{method}; it has gone")

    def _local_request(self, params: Any, timeout: float, window: int) -> RpcRequest:
        """The request a remote caller would send, so a local call is checked alike."""
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise AccordError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds")
        encoded = msgspec.msgpack.encode(params)
        return RpcRequest(secrets.randbits(63), msgspec.Raw(encoded), int(timeout * 1000), window)

    def stream(
        self,
        device_id: str,
        service: str,
        method: str,
        params: Any = None,
        item: type[T] = Any,  # type: ignore[assignment]
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        window: int = DEFAULT_WINDOW,
        max_duration: float = MAX_TIMEOUT_S,
    ) -> RpcStream[T]:
        """Open a stream: iterate it with ``async for`` (or use it as an async context
        manager to close it early). ``timeout`` bounds the wait for each item;
        ``window`` is how many items may be in flight ahead of the consumer."""
        name = self._target(device_id)
        if not 1 <= window <= MAX_WINDOW:
            raise AccordError(f"window must be in [1, {MAX_WINDOW}]")
        if not 0 < max_duration <= MAX_TIMEOUT_S:
            raise AccordError(f"max_duration must be in (0, {MAX_TIMEOUT_S:g}] seconds")
        key = keys.rpc_key(device_id, service, method)
        if self._is_local(device_id):
            assert self._local is not None
            req = self._local_request(params, timeout, window)
            return LocalStream(self._local.stream_local(key, req), item)
        req = self._request(params, timeout, window)
        return RpcStream(self, device_id, name, key, req, item, timeout, window, max_duration)

    def send_cancel(self, device_id: str, call_id: int) -> None:
        self._publish(device_id, keys.rpc_cancel_key(device_id), RpcCancel(call_id))

    def send_credit(self, device_id: str, call_id: int, granted: int) -> None:
        self._publish(device_id, keys.rpc_credit_key(device_id), RpcCredit(call_id, granted))

    def _publish(self, device_id: str, key: str, message: msgspec.Struct) -> None:
        frame = self._channels.seal(device_id, key, msgspec.msgpack.encode(message))
        if frame is None:
            return
        try:
            self._bus.put(key, frame)
        except Exception:
            log.debug("could not publish %s", type(message).__name__)

    def _open_frame(
        self, key: str, device_id: str, payload: bytes
    ) -> StreamFrame | RpcResult | None:
        """A stream frame the callee sealed for us; None for anyone else's noise. A
        callee that cannot read the request at all answers with a refused RpcResult
        (it cannot tell a stream from a call then): that is returned too."""
        if len(payload) > MAX_ITEM + FRAME_SLACK:
            return None
        plain = self._authentic(key, device_id, payload)
        if plain is None:
            return None
        try:
            return frame_decoder.decode(plain)
        except DECODE_ERRORS as exc:
            with contextlib.suppress(*DECODE_ERRORS):
                refused = result_decoder.decode(plain)
                if not refused.ok:
                    return refused
            raise RemoteError("ProtocolError", f"unreadable stream frame: {exc}") from None


class RpcStream(Generic[T]):
    """The items of a remote stream, with credit-based backpressure: the callee runs at
    most ``window`` items ahead of the consumer."""

    def __init__(
        self,
        client: RpcClient,
        device_id: str,
        name: str,
        key: str,
        request: RpcRequest,
        item: type[T],
        timeout: float,
        window: int,
        max_duration: float,
    ) -> None:
        self._client = client
        self._device = device_id
        self._name = name
        self._key = key
        self._call_id = request.call_id
        self._request = request
        self._retried = False
        self._query = 0
        self._item = item
        self._timeout = timeout
        self._window = window
        self._max_duration = max_duration
        self._frames: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self._query_done = False
        self._overrun = False
        self._finished = False
        self._cancel: Undo | None = None
        self._consumed = 0
        self._granted = window

    async def _start(self) -> None:
        if self._cancel is not None or self._finished:
            return
        frame = await self._client._sealed(self._device, self._name, self._key, self._request)
        if self._cancel is not None or self._finished:
            return
        self._query += 1
        query = self._query  # callbacks of an abandoned query (see _restart) do nothing
        self._cancel = self._client._bus.query(
            self._key,
            self._max_duration,
            frame,
            lambda payload: self._on_reply(query, payload),
            lambda: self._on_done(query),
        )

    async def _restart(self) -> None:
        """The callee lost our channel (it restarted) before sending anything: open a
        new one and ask again, once."""
        self._retried = True
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        self._frames.clear()
        self._query_done = False
        self._client._channels.forget(self._device)
        await self._start()

    def _on_reply(self, query: int, payload: bytes) -> None:
        if self._finished or query != self._query:
            return
        # An honest callee has at most `window` items, its end frame and one "no
        # channel" reply out at once; more is past the credit we grant: drop, then fail
        # (so a callee can make us hold at most window + 2 frames).
        if len(self._frames) >= self._window + 2:
            self._overrun = True
            self._query_done = True
        else:
            self._frames.append(payload)
        self._arrived.set()

    def _on_done(self, query: int) -> None:
        if query != self._query:
            return
        self._query_done = True
        self._arrived.set()

    def __aiter__(self) -> RpcStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        try:
            await self._start()
            frame = await self._next_frame()
        except BaseException:
            self._close(cancel=True)
            raise
        if frame.seq != self._consumed:
            self._close(cancel=True)
            raise RemoteError("ProtocolError", f"stream item {frame.seq} out of order")
        if frame.end:
            self._close(cancel=False)
            if frame.error_type:
                raise remote_failure(self._name, frame.error_type, frame.error)
            raise StopAsyncIteration
        self._consumed += 1
        if self._granted - self._consumed <= self._window // 2:
            self._granted = self._consumed + self._window
            self._client.send_credit(self._device, self._call_id, self._granted)
        try:
            return msgspec.msgpack.decode(frame.value, type=self._item)
        except DECODE_ERRORS as exc:
            self._close(cancel=True)
            raise RemoteError("ProtocolError", f"stream item: {exc}") from None

    async def _next_frame(self) -> StreamFrame:
        while True:
            if self._overrun:
                raise RemoteError("ProtocolError", f"{self._name} sent past its stream credit")
            while not self._frames:
                if self._query_done:
                    raise DeviceUnavailable(
                        f"{self._name} stopped answering mid-stream; it has gone"
                    )
                self._arrived.clear()
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._arrived.wait()
                except TimeoutError:
                    raise CallTimeout(
                        f"no stream item from {self._name} within {self._timeout:g} s"
                    ) from None
            payload = self._frames.popleft()
            if payload == NO_CHANNEL:
                if self._consumed == 0 and not self._retried:
                    await self._restart()
                continue
            frame = self._client._open_frame(self._key, self._device, payload)
            if isinstance(frame, RpcResult):
                self._close(cancel=False)
                raise remote_failure(self._name, frame.error_type, frame.error)
            if frame is not None:
                return frame

    def _close(self, *, cancel: bool) -> None:
        if self._finished:
            return
        self._finished = True
        self._frames.clear()
        if cancel and not self._query_done:
            self._client.send_cancel(self._device, self._call_id)
        if self._cancel is not None:
            self._cancel()

    async def aclose(self) -> None:
        """Stop early; the callee's generator is cancelled."""
        self._close(cancel=True)

    async def __aenter__(self) -> RpcStream[T]:
        try:
            await self._start()
        except BaseException:
            self._close(cancel=False)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close(cancel=True)


def _result_value(res: RpcResult, name: str, service: str, method: str, result: type[T]) -> T:
    if not res.ok:
        raise remote_failure(name, res.error_type, res.error)
    try:
        return msgspec.msgpack.decode(res.value, type=result)
    except DECODE_ERRORS as exc:
        raise RemoteError("ProtocolError", f"result of {service}.{method}: {exc}") from None


class LocalStream(RpcStream[T]):
    """A stream served by this device itself: the handler's items, converted to the
    asked item type exactly as a remote caller would get them (no credit needed)."""

    def __init__(self, items: AsyncIterator[Any], item: type[T]) -> None:
        self._items = items
        self._item = item

    def __aiter__(self) -> LocalStream[T]:
        return self

    async def __anext__(self) -> T:
        value = await self._items.__anext__()
        return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=self._item)

    async def aclose(self) -> None:
        closer = getattr(self._items, "aclose", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> LocalStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
