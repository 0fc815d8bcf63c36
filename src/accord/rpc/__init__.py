"""Typed remote calls and streams between circle members, sealed under the circle key.

A call is a Zenoh query to ``accord/v1/rpc/<callee>/<service>/<method>`` whose
payload is a sealed :class:`RpcRequest`; the reply is a sealed :class:`RpcResult`.
A stream is the same query with ``window > 0``: the callee replies with a sealed
:class:`StreamFrame` per item and a final one with ``end``, sending item ``seq`` only
once the caller has granted credit beyond it (:class:`RpcCredit`).

- Every call has a timeout; the callee runs the work under the same deadline.
- Cancelling a call or closing a stream sends a sealed cancel; the callee cancels
  the running handler.
- A remote exception comes back as :class:`RemoteError` with its type and message.
- A callee that is gone gives :class:`DeviceUnavailable`: Zenoh answers a query
  whose queryable has vanished with an empty reply set, which we map.
- Services may be restricted to named devices; anyone else gets PermissionDenied.
"""

from accord.rpc.client import RpcClient, RpcStream
from accord.rpc.messages import DEFAULT_TIMEOUT_S, MAX_ITEM, MAX_PARAMS, MAX_RESULT
from accord.rpc.server import RpcServer

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_ITEM",
    "MAX_PARAMS",
    "MAX_RESULT",
    "RpcClient",
    "RpcServer",
    "RpcStream",
]
