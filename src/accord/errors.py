"""One exception root for Accord, with families by phase and by who is at fault.

Every error a user can meet says what went wrong and, where there is one, what to
do next. Foreign exceptions are translated at the boundary (``raise ... from exc``).
"""

from __future__ import annotations


class AccordError(Exception):
    """Root of every error Accord raises on purpose."""


class ProfileError(AccordError):
    """A device profile is missing, malformed or invalid."""


class HomeError(AccordError):
    """The device home is missing, not writable, or already initialised."""


class NodeAlreadyRunning(HomeError):
    """Another node already runs on this home."""


class TrustError(AccordError):
    """A trust rule was broken: pairing, sealing, membership or security level."""


class PairingError(TrustError):
    """PIN pairing failed (wrong PIN, closed window, malformed handshake)."""


class SealError(TrustError):
    """A sealed frame could not be opened (the sender's or an attacker's fault)."""


class MalformedFrame(SealError):
    """The frame is too short, too long, or has an unknown version or kind."""


class UnknownSender(SealError):
    """No key for the frame's sender, epoch or stream: not a member, or revoked."""


class TamperedFrame(SealError):
    """Authentication failed: the frame, its key expression or its header was altered."""


class ReplayedFrame(SealError):
    """The frame's counter was already seen, or is too old for the replay window."""


class LevelDenied(TrustError):
    """Data labelled Sx may not go to a device of this security level."""


class TransportError(AccordError):
    """Zenoh could not be opened or a link could not be set up."""


class WireError(AccordError):
    """Bytes received from a peer do not form a valid Accord message (the peer's fault)."""


class ControlError(AccordError):
    """The local control API could not be reached or refused a request."""


class NodeNotRunning(ControlError):
    """No node answers on this home's control socket."""


class RemoteError(AccordError):
    """A remote call failed on the other side."""

    def __init__(self, remote_type: str, message: str) -> None:
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_message = message


class DeviceUnavailable(AccordError):
    """The device asked for is not online, or went away during a call."""


class CallTimeout(AccordError):
    """A remote call did not finish within its timeout (the callee's work is cancelled)."""


class PayloadTooLarge(AccordError):
    """Parameters, a result or a stream item exceed the RPC size limits."""


class HardwareError(AccordError):
    """A device's hardware service refused a request (bad setpoint, no such camera...)."""


class PermissionDenied(AccordError):
    """The callee does not let this device use that service."""


class SimError(AccordError):
    """A simulated household could not be started."""


class StoreError(AccordError):
    """A distributed data store refused an operation (bad key, value, store or batch)."""


class InvalidKey(StoreError):
    """A key is empty, is not valid UTF-8, or breaks a store's namespace rules."""


class KeyTooLong(InvalidKey):
    """A key is longer than the 1 KiB (UTF-8) limit."""


class ValueTooLarge(StoreError):
    """A value is larger than the 4 MiB limit."""


class BatchTooLarge(StoreError):
    """A batch has too many operations or too many bytes for one sync message."""


class UnknownStore(StoreError):
    """No store of this name is open on this device."""


class StoreMismatch(StoreError):
    """A store exists on disk with another kind, label or merge than asked for."""


class StoreConflict(StoreMismatch):
    """The circle's store of this name has other settings (kind, label, merge) than
    this device asked for or holds, or a label this device may not hold."""


class StoreNotHeld(UnknownStore):
    """The store exists in the circle, with a label this device's level may not hold."""


class ReadOnlyNamespace(StoreError):
    """A per-device store's namespace may only be written by its own device."""


class UnsupportedOperation(StoreError):
    """The operation does not exist for this kind of store (e.g. delete in a merge store)."""


class SyncError(StoreError):
    """A sync message from a peer breaks the rules (the peer's fault); it changed nothing."""


class MalformedSync(SyncError):
    """Sync bytes do not decode to a valid message, or a message is inconsistent."""


class ForgedOrigin(SyncError):
    """A peer sent a write in the name of another device (or another device's namespace)."""


class PeerNotAllowed(SyncError):
    """The peer is not a member, or its security level may not receive the store's label."""


class ClockSkew(SyncError):
    """A remote timestamp is further ahead of this device's clock than the allowed drift."""
