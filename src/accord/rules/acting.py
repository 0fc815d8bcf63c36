"""``rules.act``: a member runs one action of a rule, with the authority of the
rule's author, never of whoever asks.

The runner of a rule is any member, possibly a hostile one. So the device an action
is for does the checks itself, on what it can verify:

1. the rule record is signed by its author, a current member (so no member can
   put words in another's mouth);
2. no newer record of that rule is known here (a superseded or removed rule cannot
   be replayed);
3. the action is the rule's own, it is meant for this device, and its parameters
   are rendered here from the rule's text (the runner supplies only the trigger's
   values);
4. the call then runs through this device's RPC server *as the author*: the
   author's allow-lists and the apps service's level checks apply, exactly as if
   the author had called.

What a hostile runner can still do: run a rule's actions at a time of its choosing,
with trigger values of its choosing (see docs/security.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Final

import msgspec

from accord.bus import keys
from accord.errors import PermissionDenied, RemoteError
from accord.rpc import RpcServer
from accord.rpc.messages import RpcRequest, remote_failure
from accord.rules.errors import ActionRefused
from accord.rules.parse import parse_rule
from accord.rules.records import KeyOf, RuleRecord, record_valid
from accord.rules.spec import BEST, Action
from accord.rules.template import render

SERVICE: Final = "rules"
ACT_TIMEOUT_S: Final = 20.0


class ActRequest(msgspec.Struct, frozen=True):
    """``rules.act`` params: step ``step`` of the rule in ``record``, with the run's
    variables (the trigger's values)."""

    record: RuleRecord
    step: int
    vars: dict[str, Any]


def service_call(action: Action, variables: dict[str, Any], rule: str,
                 resolve: Callable[[str], str]) -> tuple[str, str, Any]:  # fmt: skip
    """The SERVICE.METHOD and params an action comes down to."""
    if action.kind == "call":
        service, _, method = action.call.partition(".")
        # no params table: no params (methods such as display.clear take none)
        return service, method, render(action.params, variables) if action.params else None
    if action.kind == "notify":
        return "notify", "post", {"title": str(render(action.title, variables) or rule),
                                  "body": str(render(action.body, variables) or ""),
                                  "app": f"rule {rule}"}  # fmt: skip
    if action.op == "run":
        return "apps", "run", {"app_id": action.app, "params": render(action.params, variables)}
    if action.op == "move":
        return "apps", "move", {"app_id": action.app, "target": resolve(action.to)}
    return "apps", "stop", {"app_id": action.app}


class Acting:
    """The ``rules.act`` method of one device."""

    def __init__(self, me: str, capabilities: Callable[[], list[str]], key_of: KeyOf,
                 known: Callable[[str], RuleRecord | None], resolve: Callable[[str], str],
                 server: RpcServer) -> None:  # fmt: skip
        self._me = me
        self._capabilities = capabilities
        self._key_of = key_of  # current members' keys (this device's own included)
        self._known = known  # the record of a rule name that counts here
        self._resolve = resolve  # a device as a rule names it -> device id
        self._server = server

    def register(self) -> None:
        self._server.register(SERVICE, "act", self._act, ActRequest)

    def check(self, req: ActRequest) -> Action:
        """The action to run, or :class:`ActionRefused` saying why not."""
        record = req.record
        if not record_valid(record, self._key_of):
            raise ActionRefused(f"rule {record.name!r} is not signed by a current member "
                                "as its author")  # fmt: skip
        if record.deleted or not record.enabled:
            raise ActionRefused(f"rule {record.name!r} is removed or disabled")
        held = self._known(record.name)
        if held is not None and (held.written_at, held.author) > (record.written_at,
                                                                  record.author):  # fmt: skip
            raise ActionRefused(f"rule {record.name!r} was changed since; not acting on an "
                                "old version")  # fmt: skip
        rule = parse_rule(record.source, record.name)
        if not 0 <= req.step < len(rule.actions) or not rule.actions[req.step].remote:
            raise ActionRefused(f"rule {record.name!r} has no such action")
        action = rule.actions[req.step]
        if action.op != "move":  # a move goes to wherever the app runs
            self._for_me(action)
        return action

    def _for_me(self, action: Action) -> None:
        if action.device.startswith(BEST):
            capability = action.device[len(BEST) :]
            if capability not in self._capabilities():
                raise ActionRefused(f"this device has no {capability}")
            return
        if self._resolve(action.device) != self._me:
            raise ActionRefused(f"the action is for {action.device}, not this device")

    async def _act(self, req: ActRequest, caller: str) -> Any:
        action = self.check(req)
        service, method, params = service_call(action, req.vars, req.record.name,
                                               self._resolve)  # fmt: skip
        return await run_as(self._server, self._me, req.record.author, service, method, params)


async def run_as(server: RpcServer, me: str, author: str, service: str, method: str,
                 params: Any) -> Any:  # fmt: skip
    """Run this device's ``service.method`` with ``author`` as the caller, through the
    same path (allow-lists, decoding, the handler's own caller checks) as a call the
    author made (``RpcServer.run_as``)."""
    if service == SERVICE:
        raise PermissionDenied("a rule cannot call the rules service")
    req = RpcRequest(secrets.randbits(63), msgspec.Raw(msgspec.msgpack.encode(params)),
                     int(ACT_TIMEOUT_S * 1000))  # fmt: skip
    result = await server.run_as(author, keys.rpc_key(me, service, method), req)
    if not result.ok:
        raise remote_failure("this device", result.error_type, result.error)
    try:
        return msgspec.msgpack.decode(result.value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteError("ProtocolError", f"{service}.{method}: {exc}") from None
