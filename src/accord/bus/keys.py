"""The key-expression layout (documented in docs/protocol.md).

Everything Accord puts on Zenoh lives under ``accord/v1/``.
"""

from __future__ import annotations

from accord.wire.messages import DEVICE_ID

ROOT = "accord/v1"
PRESENCE_PREFIX = f"{ROOT}/presence"
ANNOUNCE_PREFIX = f"{ROOT}/announce"
PRESENCE_ALL = f"{PRESENCE_PREFIX}/*"
ANNOUNCE_ALL = f"{ANNOUNCE_PREFIX}/*"
DETAILS_PREFIX = f"{ROOT}/details"
PAIR_PREFIX = f"{ROOT}/pair"
MEMBERS_KEY = f"{ROOT}/circle/members"


def details_key(device_id: str) -> str:
    """Sealed queryable: a member asks for the device's details and member list."""
    return f"{DETAILS_PREFIX}/{device_id}"


def session_key(device_id: str) -> str:
    """Queryable: a member offers a pairwise session (signed ephemeral X25519)."""
    return f"{ROOT}/session/{device_id}"


def rekey_key(device_id: str) -> str:
    """Queryable: a member sends a new circle key, sealed on a pairwise session."""
    return f"{ROOT}/rekey/{device_id}"


def pair_key(device_id: str) -> str:
    """Queryable for PIN pairing requests to this device."""
    return f"{PAIR_PREFIX}/{device_id}"


def presence_key(device_id: str) -> str:
    """Liveliness token a running node declares."""
    return f"{PRESENCE_PREFIX}/{device_id}"


def announce_key(device_id: str) -> str:
    """Queryable that answers with the node's announcement."""
    return f"{ANNOUNCE_PREFIX}/{device_id}"


def device_from_presence(key: str) -> str | None:
    """The device id in a presence key, or None if the key is not a valid one."""
    prefix = PRESENCE_PREFIX + "/"
    if not key.startswith(prefix):
        return None
    device_id = key[len(prefix) :]
    return device_id if DEVICE_ID.fullmatch(device_id) else None


RPC_PREFIX = f"{ROOT}/rpc"


def rpc_key(device_id: str, service: str, method: str) -> str:
    """Queryable for one method of one device's service (sealed request and reply)."""
    return f"{RPC_PREFIX}/{device_id}/{service}/{method}"


def rpc_all(device_id: str) -> str:
    return f"{RPC_PREFIX}/{device_id}/*/*"


def rpc_cancel_key(device_id: str) -> str:
    """Sealed publications that cancel a call running on ``device_id``."""
    return f"{ROOT}/rpc-cancel/{device_id}"


def rpc_credit_key(device_id: str) -> str:
    """Sealed publications that grant a stream running on ``device_id`` more items."""
    return f"{ROOT}/rpc-credit/{device_id}"


def channel_key(device_id: str) -> str:
    """Queryable: a member opens a long-lived pairwise channel (signed ephemeral X25519)."""
    return f"{ROOT}/channel/{device_id}"


def data_key(device_id: str) -> str:
    """Data sync messages for one device, each sealed on a pairwise channel."""
    return f"{ROOT}/data/{device_id}"
