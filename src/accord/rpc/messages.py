"""What RPC puts on the wire (msgpack, inside sealed frames) and its size limits."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from accord.errors import (
    AccordError,
    CallTimeout,
    HardwareError,
    PayloadTooLarge,
    PermissionDenied,
    RemoteError,
)
from accord.trust.channels import NO_CHANNEL

DEFAULT_TIMEOUT_S: Final = 10.0
MAX_TIMEOUT_S: Final = 3600.0
MAX_PARAMS: Final = 1024 * 1024  # a request's encoded parameters
MAX_RESULT: Final = 4 * 1024 * 1024  # a unary result; larger data goes through a stream
# One stream item: room for 4 MiB of data and its MessagePack framing (a 4 MiB item
# costs a hand-off between threads per 4 MiB instead of per MiB; a caller holds at
# most its window, plus two, of them).
MAX_ITEM: Final = 4 * 1024 * 1024 + 64 * 1024
DEFAULT_WINDOW: Final = 8  # stream items in flight before the caller grants more
MAX_WINDOW: Final = 64
NIL: Final = msgspec.Raw(b"\xc0")  # msgpack nil
EMPTY_MAP: Final = b"\x80"  # msgpack {}: taken as nil by a method with no params


CallId = Annotated[int, msgspec.Meta(ge=0)]  # MessagePack ints end at 2**64 - 1
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class RpcRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Bounds are checked on decode: a request out of them is ``InvalidRequest``."""

    call_id: CallId
    params: msgspec.Raw
    timeout_ms: NonNegative  # the callee clamps it to 1 ms .. MAX_TIMEOUT_S
    window: NonNegative = 0  # 0: a unary call; > 0: a stream with this much initial credit


class RpcResult(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    value: msgspec.Raw = NIL
    error_type: str = ""
    error: str = ""


class StreamFrame(msgspec.Struct, frozen=True, omit_defaults=True):
    """One reply of a stream: an item, or the end (clean, or with an error)."""

    seq: int
    value: msgspec.Raw = NIL
    end: bool = False
    error_type: str = ""
    error: str = ""


class ItemFrame(msgspec.Struct, frozen=True):
    """A stream item as the callee encodes it: the same bytes as ``StreamFrame(seq,
    value=msgpack(item))``, written in one pass (no copy of the item in between)."""

    seq: int
    value: Any


class RpcCancel(msgspec.Struct, frozen=True):
    call_id: int


class RpcCredit(msgspec.Struct, frozen=True):
    """The caller allows items with seq < ``granted`` (cumulative, so a lost or
    repeated credit is harmless)."""

    call_id: int
    granted: int


request_decoder: Final = msgspec.msgpack.Decoder(RpcRequest)
result_decoder: Final = msgspec.msgpack.Decoder(RpcResult)
frame_decoder: Final = msgspec.msgpack.Decoder(StreamFrame)
cancel_decoder: Final = msgspec.msgpack.Decoder(RpcCancel)
credit_decoder: Final = msgspec.msgpack.Decoder(RpcCredit)


def remote_failure(name: str, kind: str, message: str) -> AccordError:
    """The typed error a caller raises for a failure reported by the callee."""
    if kind == "PermissionDenied":
        return PermissionDenied(f"{name}: {message}")
    if kind == "CallTimeout":
        return CallTimeout(f"{name}: {message}")
    if kind == "PayloadTooLarge":
        return PayloadTooLarge(f"{name}: {message}")
    if kind == "HardwareError":
        return HardwareError(f"{name}: {message}")
    return RemoteError(kind, message)


__all__ = ["NO_CHANNEL"]  # re-exported: the callee's "no channel" reply (trust.channels)
