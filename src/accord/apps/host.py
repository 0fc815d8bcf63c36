"""The child process one ability runs in: ``python -m accord.apps.host``.

The node starts hosts ahead of need (a warm spare has Python and Accord imported
already, which is most of a start's cost) and hands one an app with ``load``.
The node talks to it over the child's stdin and stdout with length-prefixed
MessagePack frames (4-byte big-endian length, then a map); the app's own prints
go to stderr, which the node keeps in the app's log. Requests carry ``op``:

* ``start`` (``params``, ``state`` bytes or nil) -> ``on_start``
* ``save`` -> ``{"state": bytes}`` from ``on_save`` (checked against MAX_STATE)
* ``continue`` (``target``) -> ``{"accept": bool}`` from ``on_continue``
* ``message`` (``message``) -> ``{"reply": ...}`` from ``on_message``
* ``describe`` -> ``{"status": {...}}``
* ``stop`` -> ``on_stop``, then the process exits

The first request is ``load`` (``app_dir``, ``socket``, ``device_id``,
``device_name``, ``log``, ``sandbox``): open the log, confine this process as
``sandbox`` says (:func:`accord.apps.sandbox.confine`: the app's user, Landlock),
and only then import the app's entry module and create its Ability, whose context
reaches the node through ``socket``, the app's gate. Every reply is
``{"ok": true, ...}`` or ``{"ok": false, "type": T, "error": E}``.
An app that raises in a hook fails that request, not the process; a crash of the
process is the node's to report (and to restart, for keep-alive apps).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from accord.apps.ability import Ability, find_ability, state_bytes
from accord.apps.context import AbilityContext
from accord.apps.manifest import load_manifest
from accord.apps.sandbox import confine

FRAME = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024 + 4096  # 10 MiB of state with room to spare


def write_frame(out: BinaryIO, obj: Any) -> None:
    data = msgspec.msgpack.encode(obj)
    out.write(FRAME.pack(len(data)) + data)
    out.flush()


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    try:
        head = await reader.readexactly(FRAME.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = FRAME.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    return msgspec.msgpack.decode(await reader.readexactly(size))


def load(request: dict[str, Any]) -> Ability:
    log_path = request.get("log")
    if log_path:  # from now on the app's output goes to its own log
        fd = os.open(str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    app_dir = Path(str(request["app_dir"]))
    plan = request.get("sandbox")
    if plan:
        held = confine(plan)
        logging.getLogger("accord.apps.host").info("confined: %s", held)
    manifest = load_manifest(app_dir)
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module(manifest.entry_module)
    ability: Ability = find_ability(module, manifest.entry_class)()
    ability.app_id = manifest.id
    ability.device_id = str(request.get("device_id", ""))
    ability.device_name = str(request.get("device_name", ""))
    ability.context = AbilityContext(Path(str(request["socket"])), manifest.id, manifest.stores)
    return ability


async def serve(proto_in: int, proto_out: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(proto_in, "rb", buffering=0)
    )
    ability: Ability | None = None
    while True:
        request = await read_frame(reader)
        if request is None:
            return  # the node closed our pipe: it is gone, so are we
        op = request.get("op")
        try:
            if op == "load":
                ability = load(request)
                result: dict[str, Any] = {}
            elif ability is None:
                raise RuntimeError(f"{op} before load")  # noqa: TRY301
            else:
                result = await _handle(ability, op, request)
        except Exception as exc:
            name = ability.app_id if ability is not None else "host"
            logging.getLogger(name).exception("%s failed", op)
            write_frame(proto_out, {"ok": False, "type": type(exc).__name__, "error": str(exc)})
            if op == "load":
                return
        else:
            write_frame(proto_out, {"ok": True, **result})
        if op == "stop":
            return


async def _handle(ability: Ability, op: str, request: dict[str, Any]) -> dict[str, Any]:
    if op == "start":
        await ability.on_start(request.get("params") or {}, request.get("state"))
        return {}
    if op == "save":
        return {"state": state_bytes(await ability.on_save())}
    if op == "continue":
        return {"accept": bool(await ability.on_continue(str(request.get("target", ""))))}
    if op == "message":
        return {"reply": msgspec.to_builtins(await ability.on_message(request.get("message")))}
    if op == "describe":
        return {"status": msgspec.to_builtins(ability.describe())}
    if op == "stop":
        await ability.on_stop()
        return {}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    # The protocol owns the original stdin/stdout; the app's prints go to stderr.
    proto_in = os.dup(0)
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(proto_in, proto_out))
    # The reply to "stop" is out: skip the interpreter's teardown of everything it
    # imported (up to ~0.25 s), which the node's move would otherwise wait for.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
