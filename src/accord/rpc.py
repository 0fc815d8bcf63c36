"""Typed remote calls between circle members, sealed under the circle key.

A call is a Zenoh query to ``accord/v1/rpc/<callee>/<service>/<method>`` whose
payload is a sealed :class:`RpcRequest`; the reply is a sealed :class:`RpcResult`.
Parameters and results are msgspec structs (or any msgspec-encodable value).

- Every call has a timeout; the callee runs the work under the same deadline.
- Cancelling a call (or its timeout) sends a sealed cancel to the callee, which
  cancels the running handler.
- A remote exception comes back as :class:`RemoteError` with its type and message.
- A callee that is gone gives :class:`DeviceUnavailable`: Zenoh answers a query
  whose queryable has vanished with an empty reply set, which we map.
- Services may be restricted to named devices; anyone else gets PermissionDenied.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from accord.bus import keys
from accord.bus.directory import DeviceDirectory
from accord.bus.session import Bus, Undo
from accord.errors import (
    AccordError,
    CallTimeout,
    DeviceUnavailable,
    PermissionDenied,
    RemoteError,
    SealError,
    TrustError,
)
from accord.trust.circle import Circle
from accord.wire.messages import DECODE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 3600.0
MAX_PARAMS = 1024 * 1024


class RpcRequest(msgspec.Struct, frozen=True):
    call_id: int
    params: msgspec.Raw
    timeout_ms: int


class RpcResult(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    value: msgspec.Raw = msgspec.Raw(b"\xc0")  # msgpack nil
    error_type: str = ""
    error: str = ""


class RpcCancel(msgspec.Struct, frozen=True):
    call_id: int


Handler = Callable[[Any, str], Coroutine[Any, Any, Any]]  # (params, caller id) -> result


@dataclass(frozen=True)
class _Method:
    handler: Handler
    params: type[Any]
    allowed: frozenset[str] | None


_request = msgspec.msgpack.Decoder(RpcRequest)
_result = msgspec.msgpack.Decoder(RpcResult)
_cancel = msgspec.msgpack.Decoder(RpcCancel)


class RpcServer:
    """Serves this device's registered methods to circle members."""

    def __init__(self, bus: Bus, circle: Circle, device_id: str, label: str) -> None:
        self._bus = bus
        self._circle = circle
        self._me = device_id
        self._label = label
        self._methods: dict[tuple[str, str], _Method] = {}
        self._running: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self._undo: list[Undo] = []

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
        if "/" in service or "/" in method or not service or not method:
            raise ValueError("service and method names are non-empty and have no '/'")
        self._methods[(service, method)] = _Method(
            handler, params, frozenset(allowed) if allowed is not None else None
        )

    def restrict(self, service: str, allowed: set[str] | None) -> None:
        """Limit every method of ``service`` to ``allowed`` devices (None: all members)."""
        for (svc, name), m in list(self._methods.items()):
            if svc == service:
                frozen = frozenset(allowed) if allowed is not None else None
                self._methods[(svc, name)] = _Method(m.handler, m.params, frozen)

    def methods(self) -> list[str]:
        return sorted(f"{s}.{m}" for s, m in self._methods)

    async def start(self) -> None:
        self._undo.append(self._bus.serve(keys.rpc_all(self._me), self._serve))
        self._undo.append(self._bus.subscribe(keys.rpc_cancel_key(self._me), self._on_cancel))

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, key: str, payload: bytes) -> bytes | None:
        try:
            sender, plain = self._circle.open(key, payload)
            req = _request.decode(plain)
        except SealError:
            return None  # strangers and revoked devices get nothing
        except DECODE_ERRORS:
            return None
        result = await self._run(key, sender, req)
        return self._circle.seal(key, msgspec.msgpack.encode(result))

    async def _run(self, key: str, sender: str, req: RpcRequest) -> RpcResult:
        parts = key.split("/")
        service, method = parts[-2], parts[-1]
        entry = self._methods.get((service, method))
        if entry is None:
            known = ", ".join(self.methods()) or "none"
            return _error("UnknownMethod", f"{service}.{method} is not served here; known: {known}")
        if entry.allowed is not None and sender not in entry.allowed:
            return _error("PermissionDenied", f"{service} is restricted on this device")
        try:
            params = msgspec.msgpack.decode(req.params, type=entry.params)
        except DECODE_ERRORS as exc:
            return _error("InvalidParams", f"{service}.{method}: {exc}")
        timeout = min(max(req.timeout_ms, 1) / 1000, MAX_TIMEOUT_S)
        task = asyncio.get_running_loop().create_task(entry.handler(params, sender))
        self._running[(sender, req.call_id)] = task
        try:
            value = await asyncio.wait_for(task, timeout)
            return RpcResult(True, msgspec.Raw(msgspec.msgpack.encode(value)))
        except asyncio.CancelledError:
            if task.cancelled():
                return _error("Cancelled", "the call was cancelled")
            raise
        except TimeoutError:
            return _error("CallTimeout", f"{service}.{method} ran past its {timeout:g} s timeout")
        except Exception as exc:  # the handler's failure is the caller's answer
            return _error(type(exc).__name__, str(exc))
        finally:
            self._running.pop((sender, req.call_id), None)

    def _on_cancel(self, key: str, payload: bytes) -> None:
        try:
            sender, plain = self._circle.open(key, payload)
            call_id = _cancel.decode(plain).call_id
        except (SealError, *DECODE_ERRORS):
            return
        task = self._running.get((sender, call_id))
        if task is not None:
            task.cancel()


def _error(kind: str, message: str) -> RpcResult:
    return RpcResult(False, error_type=kind, error=message)


class RpcClient:
    """Calls methods on other members."""

    def __init__(self, bus: Bus, circle: Circle, directory: DeviceDirectory) -> None:
        self._bus = bus
        self._circle = circle
        self._directory = directory

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
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise AccordError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds")
        if not self._circle.is_member(device_id):
            raise TrustError(f"{device_id} is not a member of this circle; pair with it first")
        record = self._directory.get(device_id)
        name = record.name if record else device_id[:10]
        if record is None or not record.online:
            raise DeviceUnavailable(f"{name} is offline")
        encoded = msgspec.msgpack.encode(params)
        if len(encoded) > MAX_PARAMS:
            raise AccordError(f"parameters of {len(encoded)} bytes exceed {MAX_PARAMS}")
        key = keys.rpc_key(device_id, service, method)
        call_id = secrets.randbits(63)
        req = RpcRequest(call_id, msgspec.Raw(encoded), int(timeout * 1000))
        frame = self._circle.seal(key, msgspec.msgpack.encode(req))
        started = time.monotonic()
        try:
            replies = await self._bus.get(key, timeout, payload=frame)
        except asyncio.CancelledError:
            self._send_cancel(device_id, call_id)
            raise
        if not replies:
            if time.monotonic() - started >= timeout * 0.95:
                self._send_cancel(device_id, call_id)
                raise CallTimeout(f"{service}.{method} on {name} timed out after {timeout:g} s")
            raise DeviceUnavailable(f"{name} did not answer {service}.{method}; it has gone")
        try:
            sender, plain = self._circle.open(key, replies[0][1])
            res = _result.decode(plain)
        except (SealError, *DECODE_ERRORS) as exc:
            raise RemoteError("ProtocolError", f"unreadable reply from {name}: {exc}") from None
        if sender != device_id:
            raise RemoteError("ProtocolError", f"reply sealed by {sender}, not {name}")
        if not res.ok:
            if res.error_type == "PermissionDenied":
                raise PermissionDenied(f"{name}: {res.error}")
            if res.error_type == "CallTimeout":
                raise CallTimeout(f"{name}: {res.error}")
            raise RemoteError(res.error_type, res.error)
        try:
            return msgspec.msgpack.decode(res.value, type=result)
        except DECODE_ERRORS as exc:
            raise RemoteError("ProtocolError", f"result of {service}.{method}: {exc}") from None

    def _send_cancel(self, device_id: str, call_id: int) -> None:
        key = keys.rpc_cancel_key(device_id)
        try:
            self._bus.put(key, self._circle.seal(key, msgspec.msgpack.encode(RpcCancel(call_id))))
        except Exception:
            log.debug("could not send cancel for call %d", call_id)
