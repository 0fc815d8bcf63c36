"""PIN pairing handshake (sans-IO): SPAKE2 over a 6-digit PIN with explicit key
confirmation both ways.

Roles: the *host* is the member whose window shows the PIN (SPAKE2 side B); the
*joiner* types it (side A). Three messages::

    joiner -> host   HELLO    = spake2_A message (33 bytes)
    host   -> joiner CHALLENGE = spake2_B message || confirm_B (32 bytes)
    joiner -> host   CONFIRM  = confirm_A (32 bytes)

    transcript = SHA-256("accord/v1/pair" || len|joiner_id || len|host_id || HELLO || spake2_B)
    k_*        = HKDF-SHA256(spake2_key, info = label || transcript)
    confirm_B  = HMAC-SHA256(k_confirm_B, "host")       confirm_A = HMAC(k_confirm_A, "joiner")
    code       = 6 decimal digits of HKDF(..., "code"), shown on both sides

A wrong PIN gives each side a different SPAKE2 key, so the joiner's check of
confirm_B fails (it stops and tells the host), or the host's check of confirm_A
fails: an explicit failure on both sides, never mismatched session keys. A
recorded transcript gives an eavesdropper nothing to test PIN guesses against:
the confirmations are keyed by the SPAKE2 key, which needs a discrete log to get.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.parameters.ed25519 import ParamsEd25519

from accord.errors import PairingError

PIN_DIGITS = 6
SIDE_A = b"A"  # the first byte of a spake2 side-A message
_GROUP = ParamsEd25519.group  # spake2's default parameters, which SPAKE2_A/B use
SPAKE_MSG = 33
CONFIRM = 32


def new_pin() -> str:
    """A fresh uniformly random 6-digit PIN."""
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


MAX_ID_BYTES = 64


def _check_id(device_id: str) -> bytes:
    try:
        raw = device_id.encode()
    except UnicodeEncodeError:
        raise PairingError("device id is not valid text") from None
    if not 0 < len(raw) <= MAX_ID_BYTES:
        raise PairingError(f"device id must be 1 to {MAX_ID_BYTES} bytes")
    return raw


def _check_pin(pin: str) -> bytes:
    if len(pin) != PIN_DIGITS or not pin.isdigit() or not pin.isascii():
        raise PairingError(f"a PIN is {PIN_DIGITS} digits")
    return pin.encode()


class State(Enum):
    NEW = "new"
    STARTED = "started"
    CONFIRMING = "confirming"
    DONE = "done"
    FAILED = "failed"


class Keys:
    """What a successful handshake yields, identical on both sides."""

    def __init__(self, spake_key: bytes, transcript: bytes) -> None:
        def derive(label: bytes, length: int = 32) -> bytes:
            hkdf = HKDF(hashes.SHA256(), length, salt=None, info=label + transcript)
            return hkdf.derive(spake_key)

        self.confirm_joiner = derive(b"confirm-joiner")
        self.confirm_host = derive(b"confirm-host")
        self.session = derive(b"session")  # keys the credential exchange that follows
        digits = int.from_bytes(derive(b"code", 8), "big") % 10**PIN_DIGITS
        self.code = f"{digits:0{PIN_DIGITS}d}"


def _transcript(joiner_id: str, host_id: str, msg_a: bytes, msg_b: bytes) -> bytes:
    h = hashlib.sha256(b"accord/v1/pair")
    for part in (joiner_id.encode(), host_id.encode()):
        h.update(len(part).to_bytes(2, "big") + part)
    h.update(msg_a + msg_b)
    return h.digest()


def _mac(key: bytes, who: bytes) -> bytes:
    return hmac.new(key, who, hashlib.sha256).digest()


class _Side:
    def __init__(self) -> None:
        self.state = State.NEW
        self.keys: Keys | None = None

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise PairingError(f"handshake out of order: in state {self.state.value}")

    def _fail(self, message: str) -> PairingError:
        self.state = State.FAILED
        return PairingError(message)


class Joiner(_Side):
    """The device that types the PIN."""

    def __init__(self, pin: str, joiner_id: str, host_id: str) -> None:
        super().__init__()
        self._ids = (joiner_id, host_id)
        self._spake = SPAKE2_A(_check_pin(pin), idA=_check_id(joiner_id), idB=_check_id(host_id))
        self._hello = b""

    def hello(self) -> bytes:
        self._expect(State.NEW)
        self._hello = self._spake.start()
        self.state = State.STARTED
        return self._hello

    def on_challenge(self, data: bytes) -> bytes:
        """Check the host's confirmation; return ours. Raises PairingError on a wrong PIN."""
        return self.on_challenges([data])[1]

    def on_challenges(self, candidates: list[bytes]) -> tuple[int, bytes]:
        """Check several answers to our hello (anyone may answer on the host's key):
        the first whose confirmation proves knowledge of the PIN is the host's. Returns
        its index and our confirmation. Raises PairingError if none does."""
        self._expect(State.STARTED)
        error = "no pairing challenge"
        for index, data in enumerate(candidates):
            try:
                keys = self._check(data)
            except PairingError as exc:
                if "wrong PIN" not in error:  # the most telling failure is reported
                    error = str(exc)
                continue
            self.keys = keys
            self.state = State.DONE
            return index, _mac(keys.confirm_joiner, b"joiner")
        raise self._fail(error)

    def _check(self, data: bytes) -> Keys:
        if len(data) != SPAKE_MSG + CONFIRM:
            raise PairingError("malformed pairing challenge")
        msg_b, confirm_b = data[:SPAKE_MSG], data[SPAKE_MSG:]
        try:
            # A copy, so a forged challenge does not use up the handshake.
            key = copy.copy(self._spake).finish(msg_b)
        except Exception as exc:  # spake2 raises several types on bad or reflected input
            raise PairingError(f"invalid pairing challenge: {type(exc).__name__}") from None
        keys = Keys(key, _transcript(*self._ids, self._hello, msg_b))
        if not hmac.compare_digest(confirm_b, _mac(keys.confirm_host, b"host")):
            raise PairingError("wrong PIN (the other device could not prove it knows it)")
        return keys


class Host(_Side):
    """The member whose pairing window shows the PIN."""

    def __init__(self, pin: str, host_id: str) -> None:
        super().__init__()
        self._pin = _check_pin(pin)
        _check_id(host_id)
        self._host_id = host_id
        self._pending: Keys | None = None

    def on_hello(self, joiner_id: str, data: bytes) -> bytes:
        self._expect(State.NEW)
        if len(data) != SPAKE_MSG:
            raise self._fail("malformed pairing hello")
        try:
            joiner_raw = _check_id(joiner_id)
        except PairingError as exc:
            raise self._fail(str(exc)) from None
        # Cheap checks first, before the host's own (costlier) SPAKE2 work: a hello
        # that is not side A's valid point tests no PIN and is refused.
        if data[:1] != SIDE_A:
            raise self._fail("invalid pairing hello: not from a joining side")
        try:
            _GROUP.bytes_to_element(data[1:])
        except Exception:
            raise self._fail("invalid pairing hello: not a curve point") from None
        spake = SPAKE2_B(self._pin, idA=joiner_raw, idB=self._host_id.encode())
        msg_b: bytes = spake.start()
        try:
            key = spake.finish(data)
        except Exception as exc:
            raise self._fail(f"invalid pairing hello: {type(exc).__name__}") from None
        self._pending = Keys(key, _transcript(joiner_id, self._host_id, data, msg_b))
        self.state = State.CONFIRMING
        return msg_b + _mac(self._pending.confirm_host, b"host")

    def on_confirm(self, data: bytes) -> None:
        """Check the joiner's confirmation. Raises PairingError on a wrong PIN."""
        self._expect(State.CONFIRMING)
        assert self._pending is not None
        if len(data) != CONFIRM or not hmac.compare_digest(
            data, _mac(self._pending.confirm_joiner, b"joiner")
        ):
            raise self._fail("wrong PIN (the joining device could not prove it knows it)")
        self.keys = self._pending
        self.state = State.DONE
