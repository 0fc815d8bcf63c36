"""An app process reaches neither its node's key, nor its control socket, nor a store
its manifest does not name (issue 12 §4). The app under test tries each, from inside
a real ability process on an in-process node, with every sandbox layer this machine
offers, and with each layer alone.

The attack it answers: an app installed on the SL4 phone read the phone's
``identity.key`` and an S3 store through the node's control socket, and wrote them
to an S1 store that synced back to the SL1 fridge.
"""

from __future__ import annotations

import base64
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from accord.apps import sandbox
from accord.control.aio import AsyncControlClient
from accord.errors import AccordError, ControlError, RemoteError
from accord.node import Node
from tests.nodes import Mesh, household, wait_until

SECRET = b"the S3 secret"

SNOOP = '''
"""Tries, on request, what an app must not be able to do."""
import os
import socket
from typing import Any

from accord.apps import Ability
from accord.control.aio import AsyncControlClient
from accord.errors import AccordError


class Snoop(Ability):
    async def on_message(self, message: Any) -> Any:
        op = message["op"]
        try:
            if op == "read":
                with open(message["path"], "rb") as f:
                    return {"ok": True, "data": f.read().hex()}
            if op == "list":
                return {"ok": True, "names": os.listdir(message["path"])}
            if op == "connect":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(message["path"])
                finally:
                    s.close()
                return {"ok": True}
            if op == "control":  # the control API, raw, at a path of the app's choosing
                path = message.get("path") or str(self.context.socket)
                got = await AsyncControlClient(path).call(message["method"],
                                                          **message.get("params", {}))
                return {"ok": True, "result": got}
            if op == "store":  # through the context, as an app would
                store = self.context.store(message["store"])
                if "put" in message:
                    await store.put(message["key"], message["put"].encode())
                    return {"ok": True}
                value = await store.get(message["key"])
                return {"ok": True, "value": value.decode() if value else None}
            if op == "swaplog":  # put a link to the key where the node reads its log, die
                log = os.path.join(os.path.dirname(str(self.context.socket)), "app.log")
                os.remove(log)
                os.symlink(message["path"], log)
                print("a last line the node must not replace with the key's", flush=True)
                os._exit(3)
            if op == "whoami":
                return {"ok": True, "uid": os.getuid(), "cwd": os.getcwd(),
                        "env": {k: v for k, v in os.environ.items()},
                        "context": sorted(vars(self.context))}
        except (OSError, AccordError) as exc:
            return {"ok": False, "type": type(exc).__name__, "error": str(exc)}
        raise ValueError(op)
'''


def _app(folder: Path, app_id: str, **fields: Any) -> Path:
    folder.mkdir(parents=True)
    lines = [f'id = "{app_id}"', 'version = "1"', 'entry = "snoop"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in fields.items()]
    (folder / "accord-app.toml").write_text("\n".join(lines) + "\n")
    (folder / "snoop.py").write_text(textwrap.dedent(SNOOP))
    return folder


def _layers() -> dict[str, Any]:
    return sandbox.protections()


HERE = _layers()
NOTHING = HERE["user"] is None and HERE["landlock"] == 0
pytestmark = pytest.mark.skipif(
    NOTHING,
    reason="this machine offers neither a separate user (the node is not root) nor "
    "Landlock (Linux 5.13+): apps run as the node's user, unconfined (docs/security.md)",
)


@pytest.fixture(params=["auto", "user", "landlock"])
def layer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every layer this machine offers together, then each alone."""
    mode = str(request.param)
    if mode == "user" and HERE["user"] is None:
        pytest.skip("the node does not run as root: no separate user for apps here")
    if mode == "landlock" and HERE["landlock"] == 0:
        pytest.skip("this kernel has no Landlock")
    monkeypatch.setenv(sandbox.MODE_ENV, mode)
    return mode


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(mesh, ("phone", "nokia-x60"), ("fridge", "midea-fridge"))
    return {n.name: n for n in nodes}


async def _start(node: Node, folder: Path, app_id: str) -> AsyncControlClient:
    ctl = AsyncControlClient(node.home.socket_path)
    await ctl.call("app_install", path=str(folder))
    await ctl.call("app_run", app=app_id, on="self")
    return ctl


async def _ask(ctl: AsyncControlClient, app_id: str, **message: Any) -> dict[str, Any]:
    reply: dict[str, Any] = await ctl.call("app_send", app=app_id, message=message)
    return reply


async def test_an_app_cannot_read_the_identity_key_or_the_home(
    home: dict[str, Node], tmp_path: Path, layer: str
) -> None:
    phone = home["phone"]
    ctl = await _start(phone, _app(tmp_path / "snoop", "snoop"), "snoop")
    key = phone.home.path / "identity.key"
    assert key.exists()
    got = await _ask(ctl, "snoop", op="read", path=str(key))
    assert got["ok"] is False, "the app read the node's identity key"
    assert got["type"] == "PermissionError"
    for secret_place in (phone.home.path, phone.home.data_dir):
        listed = await _ask(ctl, "snoop", op="list", path=str(secret_place))
        assert listed["ok"] is False, listed
    me = await _ask(ctl, "snoop", op="whoami")
    if layer in ("auto", "user"):
        assert me["uid"] != os.getuid()  # a separate, unprivileged user
    # It was never told where the home is.
    assert str(phone.home.path) not in repr(me)
    assert not any(k.startswith("ACCORD_") for k in me["env"])
    environ = await _ask(ctl, "snoop", op="read", path="/proc/self/environ")
    if environ["ok"]:  # what the process started with, whatever it set since
        assert str(phone.home.path) not in bytes.fromhex(environ["data"]).decode()
        assert b"ACCORD_" not in bytes.fromhex(environ["data"])
    assert me["context"] == ["_client", "app_id", "socket", "stores"]
    # ...and it still works: its own folder is writable, Python imports.
    wrote = await _ask(ctl, "snoop", op="read", path=os.path.join(me["env"]["TMPDIR"], "x"))
    assert wrote["type"] == "FileNotFoundError"  # reachable, just empty


async def test_an_app_cannot_use_the_node_control_socket(
    home: dict[str, Node], tmp_path: Path, layer: str
) -> None:
    if layer == "landlock":
        pytest.skip(
            "Landlock (through ABI 7) does not restrict connecting to a named Unix "
            "socket: without a separate user, only not telling the app the path holds "
            "(checked in test_an_app_cannot_read_the_identity_key_or_the_home)"
        )
    phone = home["phone"]
    ctl = await _start(phone, _app(tmp_path / "snoop", "snoop"), "snoop")
    main = str(phone.home.socket_path)
    got = await _ask(ctl, "snoop", op="connect", path=main)
    assert got["ok"] is False, "the app connected to the node's control socket"
    got = await _ask(ctl, "snoop", op="control", path=main, method="trust_list")
    assert got["ok"] is False
    # Its own gate answers, but only what an app needs.
    devices = await _ask(ctl, "snoop", op="control", method="devices")
    assert devices["ok"] is True
    assert {d["name"] for d in devices["result"]} == {"phone", "fridge"}
    for method in ("status", "trust_list", "restrict", "pair_window", "kv_stores", "stop"):
        got = await _ask(ctl, "snoop", op="control", method=method)
        assert got["ok"] is False
        assert "unknown method" in got["error"], (method, got)
    fridge = home["fridge"].home.device_id
    for target in ("apps.list", "apps.run", "trust.members", "device.nonexistent"):
        got = await _ask(ctl, "snoop", op="control", method="call",
                         params={"device": fridge, "target": target})  # fmt: skip
        if target.startswith("device."):
            assert "PermissionDenied" not in got.get("error", ""), got
            continue
        assert got["ok"] is False
        assert "may not call" in got["error"], got
    info = await _ask(ctl, "snoop", op="control", method="call",
                      params={"device": fridge, "target": "sensors.read"})  # fmt: skip
    assert info["ok"] is True, info  # the super device works through the gate


async def test_only_the_app_itself_may_use_its_gate(
    home: dict[str, Node], tmp_path: Path, layer: str
) -> None:
    phone = home["phone"]
    await _start(phone, _app(tmp_path / "snoop", "snoop"), "snoop")
    [running] = phone.apps._running.values()
    gate = AsyncControlClient(running.box.socket)
    with pytest.raises(ControlError):  # this process is not the app: closed unanswered
        await gate.call("devices")


async def test_an_app_reaches_only_the_stores_its_manifest_names_at_its_level(
    home: dict[str, Node], tmp_path: Path, layer: str
) -> None:
    """The laundering attack: read an S3 store, write it to an S1 store that syncs to
    the fridge. Unnamed stores are refused; named ones keep the app's level: an S1
    app cannot read S3, an S3 app cannot write S1."""
    phone, fridge = home["phone"], home["fridge"]
    vault = phone.data.open("vault", label="S3")
    await vault.put("secret", SECRET)
    await phone.data.open("outbox").put("hello", b"from the phone")  # S1: the fridge has it
    await wait_until(lambda: "outbox" in fridge.data.stores.on_disk(), 10, "outbox on the fridge")
    low = _app(tmp_path / "low", "low", stores=["vault", "outbox", "mine"])
    high = _app(tmp_path / "high", "high", stores=["vault", "outbox"], state_label="S3")
    bare = _app(tmp_path / "bare", "bare")
    ctl = await _start(phone, low, "low")
    await _start(phone, high, "high")
    await _start(phone, bare, "bare")

    # Not named in the manifest: refused by the context and by the gate itself.
    got = await _ask(ctl, "bare", op="store", store="vault", key="secret")
    assert (got["ok"], got["type"]) == (False, "PermissionDenied")
    assert "add it to 'stores'" in got["error"]
    for method, params in [("kv_get", {"key": "secret"}), ("kv_ls", {}),
                           ("kv_put", {"key": "x", "value_b64": "eA=="})]:  # fmt: skip
        got = await _ask(ctl, "bare", op="control", method=method,
                         params={"store": "vault", **params})  # fmt: skip
        assert got["ok"] is False
        assert "PermissionDenied" in got["error"], got
    got = await _ask(ctl, "low", op="control", method="kv_get",
                     params={"store": "accord.apps", "key": "x"})  # fmt: skip
    assert "PermissionDenied" in got["error"]  # the node's own stores neither

    # S1 app: may not read up.
    got = await _ask(ctl, "low", op="store", store="vault", key="secret")
    assert (got["ok"], got["type"]) == (False, "LevelDenied"), got
    assert (await _ask(ctl, "low", op="store", store="outbox", key="hello"))["value"] == (
        "from the phone"
    )
    assert (await _ask(ctl, "low", op="store", store="mine", key="k", put="v"))["ok"]
    assert phone.data.open_existing("mine").label == "S1"  # created at the app's level

    # S3 app: reads S3, may not write down.
    got = await _ask(ctl, "high", op="store", store="vault", key="secret")
    assert got["value"] == SECRET.decode()
    got = await _ask(ctl, "high", op="store", store="outbox", key="leak", put=SECRET.decode())
    assert (got["ok"], got["type"]) == (False, "LevelDenied"), got
    got = await _ask(ctl, "high", op="control", method="kv_put",
                     params={"store": "outbox", "key": "leak",
                             "value_b64": base64.b64encode(SECRET).decode()})  # fmt: skip
    assert "LevelDenied" in got["error"]

    # Nothing of it reached the fridge.
    outbox = fridge.data.stores.get("outbox")
    assert all(SECRET not in e.value for e in outbox.scan(""))
    assert "vault" not in fridge.data.stores.on_disk()


@pytest.mark.parametrize("mode", ["auto", "off"])
async def test_the_node_does_not_read_a_link_an_app_puts_for_its_log(
    home: dict[str, Node], tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node reads an app's log with its own rights (the last line becomes the crash
    reason a caller sees): a link to the key in its place must not be followed, even
    with no sandbox layer at all (then the app may swap its log)."""
    monkeypatch.setenv(sandbox.MODE_ENV, mode)
    phone = home["phone"]
    ctl = await _start(phone, _app(tmp_path / "snoop", "snoop"), "snoop")
    key = (phone.home.path / "identity.key").read_bytes()
    lines = [line for line in key.splitlines() if len(line) > 8]
    outcome: dict[str, Any] | RemoteError
    try:
        outcome = await _ask(ctl, "snoop", op="swaplog", path=str(phone.home.path / "identity.key"))
    except RemoteError as died:
        outcome = died
    if isinstance(outcome, dict):  # the sandbox kept it from touching its log at all
        assert (outcome["ok"], outcome["type"]) == (False, "PermissionError"), outcome
        return
    # It swapped its log for a link to the key and died: the node must not follow it.
    assert not any(line.decode(errors="replace") in str(outcome) for line in lines)
    await wait_until(lambda: "snoop" in phone.apps.crashed, 10, "the crash report")
    crashed = phone.apps.crashed["snoop"]
    assert not any(line.decode(errors="replace") in crashed for line in lines)
    kept = phone.apps.folder / "logs" / "snoop.log"
    assert not kept.exists() or not any(line in kept.read_bytes() for line in lines)


def test_nothing_that_holds_the_home_is_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose home lies inside a folder on Python's path (odd, but possible):
    Landlock must not open that folder to apps."""
    home = tmp_path / "lib" / "home"
    home.mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [sys.path[0], str(tmp_path / "lib"), *sys.path[1:]])
    roots = sandbox.readable_roots(home)
    assert str(tmp_path / "lib") not in roots
    assert "/" not in roots
    assert not any(str(home).startswith(r + "/") for r in roots)
    assert os.path.realpath(os.__file__).rsplit("/", 1)[0] in roots  # the stdlib is


def test_the_sandbox_setting_is_checked() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(sandbox.MODE_ENV, "bogus")
        with pytest.raises(AccordError, match="names no sandbox layer bogus"):
            sandbox.protections()
        mp.setenv(sandbox.MODE_ENV, "off")
        assert sandbox.protections() == {"user": None, "landlock": 0, "asked": []}


async def test_a_crashed_or_stopped_app_leaves_no_folder_behind(
    home: dict[str, Node], tmp_path: Path
) -> None:
    phone = home["phone"]
    ctl = await _start(phone, _app(tmp_path / "snoop", "snoop"), "snoop")
    [running] = phone.apps._running.values()
    root = running.box.root
    assert root.is_dir()
    await ctl.call("app_stop", app="snoop")
    assert not root.exists()
    with pytest.raises(RemoteError):
        await _ask(ctl, "snoop", op="whoami")
