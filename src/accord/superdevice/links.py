"""How the super-device API reaches the circle: from inside a node (NodeLink), or
from another process through the node's control socket (ControlLink)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from accord import errors
from accord.bus.directory import DeviceDirectory, DeviceRecord
from accord.control.aio import AsyncControlClient
from accord.rpc.client import RpcClient
from accord.trust.circle import Circle
from accord.wire.messages import DECODE_ERRORS

T = TypeVar("T")


class Link(Protocol):
    async def call(
        self,
        device_id: str,
        service: str,
        method: str,
        params: Any,
        result: type[T],
        timeout: float,
    ) -> T: ...

    def stream(
        self, device_id: str, service: str, method: str, params: Any, item: type[T], timeout: float
    ) -> AbstractAsyncContextManager[AsyncIterator[T]]: ...

    async def devices(self) -> list[DeviceRecord]:
        """Online circle members, this device included."""
        ...


class NodeLink:
    """The super device of a node running in this process."""

    def __init__(self, rpc: RpcClient, directory: DeviceDirectory, circle: Circle) -> None:
        self._rpc = rpc
        self._directory = directory
        self._circle = circle

    async def call(
        self,
        device_id: str,
        service: str,
        method: str,
        params: Any,
        result: type[T],
        timeout: float,
    ) -> T:
        return await self._rpc.call(device_id, service, method, params, result, timeout=timeout)

    def stream(
        self, device_id: str, service: str, method: str, params: Any, item: type[T], timeout: float
    ) -> AbstractAsyncContextManager[AsyncIterator[T]]:
        return self._rpc.stream(device_id, service, method, params, item, timeout=timeout)

    async def devices(self) -> list[DeviceRecord]:
        return [
            r
            for r in self._directory.records()
            if r.online and (r.is_self or self._circle.is_member(r.device_id))
        ]


class ControlLink:
    """The super device of the node that runs on a home, from any local process
    (scripts, apps): calls go through its control socket."""

    def __init__(self, home: Path) -> None:
        from accord.device.home import SOCKET_NAME

        self._client = AsyncControlClient(home / "run" / SOCKET_NAME)

    async def call(
        self,
        device_id: str,
        service: str,
        method: str,
        params: Any,
        result: type[T],
        timeout: float,
    ) -> T:
        try:
            value = await self._client.call(
                "call",
                device=device_id,
                target=f"{service}.{method}",
                args=msgspec.to_builtins(params),
                timeout=timeout,
            )
        except errors.RemoteError as exc:
            raise typed(exc) from None
        return _convert(value, result)

    def stream(
        self, device_id: str, service: str, method: str, params: Any, item: type[T], timeout: float
    ) -> AbstractAsyncContextManager[AsyncIterator[T]]:
        return self._stream(device_id, service, method, params, item, timeout)

    @asynccontextmanager
    async def _stream(
        self, device_id: str, service: str, method: str, params: Any, item: type[T], timeout: float
    ) -> AsyncIterator[AsyncIterator[T]]:
        events = self._client.stream(
            "stream",
            device=device_id,
            target=f"{service}.{method}",
            args=msgspec.to_builtins(params),
            timeout=timeout,
        )

        async def items() -> AsyncIterator[T]:
            try:
                async for event in events:
                    yield _convert(event, item)
            except errors.RemoteError as exc:
                raise typed(exc) from None

        try:
            yield items()
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def devices(self) -> list[DeviceRecord]:
        records = msgspec.convert(await self._client.call("devices"), list[DeviceRecord])
        return [r for r in records if r.online and r.standing in ("self", "member")]


def _convert(value: Any, kind: type[T]) -> T:
    try:
        return msgspec.convert(value, kind)
    except DECODE_ERRORS as exc:
        raise errors.RemoteError("ProtocolError", f"unexpected result: {exc}") from None


def typed(exc: errors.RemoteError) -> errors.AccordError:
    """The node's error, as the typed error it was there (RemoteError otherwise)."""
    kind, message = exc.remote_type, exc.remote_message
    if kind == "RemoteError":  # the callee's own failure, relayed: "Type: message"
        inner, _, rest = message.partition(": ")
        return errors.RemoteError(inner, rest)
    cls = getattr(errors, kind, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.AccordError)
        and cls is not errors.RemoteError
    ):
        return cls(message)
    return exc
