"""PIN pairing, the host's side: the window that answers ``accord/v1/pair/<host id>``.

Anyone may send these requests, so the host's rules are:

- an attempt is counted when the host answers a well-formed hello, since that
  answer is what lets the joiner test one PIN guess; a hello that tests nothing
  (malformed, refused) is not counted, and neither confirm nor abort counts;
- the answer carries a fresh random handshake id, and only a request naming it
  (which only the joiner that received the answer knows) may confirm or abort
  that handshake;
- a handshake confirms only while its window is still open with the same PIN,
  and success closes the window: one PIN admits one device.

Every refusal carries its kind (:data:`accord.trust.pairing.REFUSALS`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from accord.device.identity import Identity, device_id_for
from accord.errors import PairingError, TrustError
from accord.trust import members as ml
from accord.trust.circle import PAIRING_MAX_FAILURES, Circle
from accord.trust.pairing import (
    _NONCE_HOST,
    _NONCE_JOINER,
    HANDSHAKE_ID_BYTES,
    PAIR_VERSION,
    Credentials,
    JoinerInfo,
    Paired,
    PairReply,
    PairRequest,
    Refusal,
    _open,
    _seal,
    decode_request,
)
from accord.trust.pake import SIDE_A, SPAKE_MSG, Host
from accord.wire.quiet import QuietLog

log = logging.getLogger(__name__)

MAX_PENDING = PAIRING_MAX_FAILURES  # at most this many hellos are answered per window
PENDING_TTL_S = 30.0
HELLO_RATE = 10.0  # hellos a second that may cost the host SPAKE2 work (burst 10)
HELLO_BURST = 10


@dataclass
class _Pending:
    """A handshake the host answered, waiting for its joiner's confirm or abort."""

    host: Host
    joiner_id: str
    pin: str
    expires: float  # the window's expiry when the hello was answered: names the window
    started: float


class HostWindow:
    """The host side. ``handle`` takes a request's bytes and returns the reply's."""

    def __init__(
        self,
        circle: Circle,
        identity: Identity,
        on_paired: Callable[[Paired], None],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._circle = circle
        self._identity = identity
        self._on_paired = on_paired
        self._now = now
        self._pending: dict[bytes, _Pending] = {}
        self._budget = float(HELLO_BURST)
        self._budget_at = now()
        self._quiet = QuietLog(log)

    def pending(self) -> int:
        """How many answered handshakes wait for their joiner."""
        self._expire()
        return len(self._pending)

    def handle(self, payload: bytes) -> bytes:
        try:
            try:
                req = decode_request(payload)
            except PairingError as exc:
                raise Refusal("Malformed", str(exc)) from None
            reply = self._step(req)
        except (PairingError, TrustError) as exc:
            kind = exc.kind if isinstance(exc, Refusal) else "Refused"
            # Anyone may send these: an operator sees a stranger probing, once per kind.
            self._quiet.warn("pair:" + kind, "refused a pairing request (%s): %s", kind, exc)
            reply = PairReply(False, error=str(exc)[:500], error_type=kind)
        return msgspec.msgpack.encode(reply)

    def _step(self, req: PairRequest) -> PairReply:
        if req.v != PAIR_VERSION:
            raise Refusal(
                "Unsupported",
                f"unsupported pairing protocol version {req.v} (this device speaks "
                f"{PAIR_VERSION}); update the older of the two devices",
            )
        if req.step == "hello":
            self._expire()
            return self._hello(req)
        # Only the joiner that received the answer to its hello knows the handshake id:
        # nobody else can abort, confirm or otherwise use up its handshake.
        entry = self._pending.get(req.handshake)
        if entry is None or entry.joiner_id != req.joiner_id:
            raise Refusal("NoHandshake", "no pairing handshake in progress for this device")
        del self._pending[req.handshake]
        if req.step == "abort":
            log.warning("pairing attempt by %s failed: wrong PIN", req.joiner_id[:10])
            return PairReply(True)
        return self._confirm(req, entry)

    def _hello(self, req: PairRequest) -> PairReply:
        if not self._circle.pairing_open():
            raise Refusal(
                "WindowClosed", "this device is not accepting pairing (run: accord pair open)"
            )
        if self._circle.is_member(req.joiner_id) or req.joiner_id == self._identity.device_id:
            raise Refusal(
                "AlreadyMember",
                "that device is already a member of this circle (if it just left, this "
                "device has not heard yet: try again in a moment)",
            )
        if self._circle.members.revoked_for_good(req.joiner_id):
            raise Refusal(
                "RevokedForGood",
                "that device was revoked here without a revocation proof, which cannot be "
                "undone; it can rejoin only with a new identity (accord init --force on it)",
            )
        if len(self._pending) >= MAX_PENDING:
            raise Refusal("Busy", "too many pairing attempts at once; try again shortly")
        if len(req.data) != SPAKE_MSG or req.data[:1] != SIDE_A:
            raise Refusal("Malformed", "malformed pairing hello")
        if not self._take_budget():  # each costs the host curve arithmetic: bound them
            raise Refusal("Busy", "too many pairing attempts at once; try again shortly")
        state = self._circle.state
        host = Host(state.pairing_pin, self._identity.device_id)
        try:  # malformed: refused, not counted
            challenge = host.on_hello(req.joiner_id, req.data)
        except PairingError as exc:
            raise Refusal("Malformed", str(exc)) from None
        # The challenge lets the joiner test one PIN guess, so it is counted (and saved)
        # before it is sent, whether or not the joiner ever confirms or aborts. The
        # fifth closes the window.
        self._circle.count_pairing_attempt()
        handshake = secrets.token_bytes(HANDSHAKE_ID_BYTES)
        self._pending[handshake] = _Pending(
            host, req.joiner_id, state.pairing_pin, state.pairing_expires, self._now()
        )
        return PairReply(True, data=challenge, handshake=handshake)

    def _take_budget(self) -> bool:
        """A token bucket: at most HELLO_RATE hellos a second reach SPAKE2 work."""
        now = self._now()
        self._budget = min(HELLO_BURST, self._budget + (now - self._budget_at) * HELLO_RATE)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True

    def _confirm(self, req: PairRequest, entry: _Pending) -> PairReply:
        if self._now() - entry.started > PENDING_TTL_S:
            raise Refusal("WindowClosed", "the pairing handshake timed out; try again")
        if not self._same_window(entry):
            raise Refusal("WindowClosed", "the pairing window closed before this device confirmed")
        host = entry.host
        if len(req.data) < 32:
            raise Refusal("Malformed", "malformed pairing confirmation")
        try:
            host.on_confirm(req.data[:32])
        except PairingError as exc:
            log.warning("pairing attempt by %s failed: wrong PIN", req.joiner_id[:10])
            raise Refusal("WrongPin", str(exc)) from None
        assert host.keys is not None
        try:
            info = _open(host.keys.session, _NONCE_JOINER, req.data[32:], JoinerInfo)
        except PairingError as exc:
            raise Refusal("BadJoiner", str(exc)) from None
        assert isinstance(info, JoinerInfo)
        if device_id_for(info.public_key) != req.joiner_id:
            raise Refusal("BadJoiner", "the joining device's key does not match its id")
        if ml.level_rank(info.security_level) == 0:
            raise Refusal(
                "BadJoiner",
                f"the joining device declares no valid level: {info.security_level!r}",
            )
        me = self._circle.member(self._identity.device_id)
        assert me is not None, "a pairing host is a member of its own circle"
        # A device that left or was revoked comes back as a new incarnation: its record
        # must postdate the revocation, which this host holds, so a clock behind the
        # revoker's is stepped just past it (the admission does follow it).
        since = self._circle.members.revoked_at(req.joiner_id)
        now = time.time()
        if since is not None and now <= since:
            now = since + 0.001
        # The host signs the record; it vouches for no level above its own.
        member = ml.vouch(
            self._identity,
            device_id=req.joiner_id,
            public_key=info.public_key,
            name=info.name[:200] or "device",
            type_=info.type[:64] or "device",
            declared_level=info.security_level,
            voucher_level=me.security_level,
            at=now,
        )
        try:
            self._circle.add_member(member)
        except msgspec.ValidationError as exc:
            raise Refusal("BadJoiner", f"invalid joining device: {exc}") from None
        self._circle.pairing_succeeded()  # the PIN is single use: the window closes
        creds = Credentials(
            host_public_key=self._identity.public_bytes,
            members=self._circle.signed_list(),
            epoch=self._circle.state.epoch,
            circle_key=self._circle.state.circle_key,
        )
        self._on_paired(Paired(member.device_id, member.name, host.keys.code))
        return PairReply(True, data=_seal(host.keys.session, _NONCE_HOST, creds))

    def _same_window(self, entry: _Pending) -> bool:
        """Is the window the handshake was answered in still open (not expired, not
        closed by success, lockout or its owner, not replaced by a new window)?"""
        state = self._circle.state
        return (
            self._circle.pairing_open()
            and state.pairing_pin == entry.pin
            and state.pairing_expires == entry.expires
        )

    def _expire(self) -> None:
        """Drop handshakes that timed out or whose window is gone (so a window the
        owner reopens is not blocked by handshakes strangers left pending)."""
        now = self._now()
        for handshake, entry in list(self._pending.items()):
            if now - entry.started > PENDING_TTL_S or not self._same_window(entry):
                del self._pending[handshake]
