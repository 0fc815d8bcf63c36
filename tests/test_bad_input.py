"""Bad input from the user gets one clear line and a non-zero exit; bad input from a
peer gets a logged warning and never crashes the node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import msgspec
import pytest
import zenoh

from accord.bus import keys
from accord.bus.settings import BusSettings, zenoh_config
from accord.device.identity import Identity
from accord.profile import load_builtin
from accord.sim.household import free_port
from accord.wire.messages import PROTOCOL_VERSION, PublicAnnouncement, encode
from tests.helpers import accord, online_ids, wait_for


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), lines
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_unknown_profile_name(short_tmp: Path) -> None:
    proc = accord("init", "--home", str(short_tmp / "h"), "--profile", "nokia-x99")
    _one_line_error(proc, "unknown profile", "nokia-x60")
    assert not (short_tmp / "h").exists()


def test_malformed_profile_file(short_tmp: Path) -> None:
    bad = short_tmp / "bad.toml"
    bad.write_text('name = "x"\nvendor = [unclosed\n')
    proc = accord("init", "--home", str(short_tmp / "h"), "--profile-file", str(bad))
    _one_line_error(proc, str(bad), "malformed TOML")


def test_invalid_profile_names_file_and_field(short_tmp: Path) -> None:
    text = load_builtin("tablet")
    bad = short_tmp / "bad.toml"
    raw = msgspec.to_builtins(text)
    raw["hardware"]["battery"]["capacity_mah"] = -5
    import tomli_w

    bad.write_text(tomli_w.dumps(raw))
    proc = accord("init", "--home", str(short_tmp / "h"), "--profile-file", str(bad))
    _one_line_error(proc, str(bad), "$.hardware.battery.capacity_mah")


def test_existing_home_needs_force(short_tmp: Path) -> None:
    home = str(short_tmp / "h")
    assert accord("init", "--home", home, "--profile", "tv").returncode == 0
    _one_line_error(accord("init", "--home", home, "--profile", "tv"), "--force")
    assert accord("init", "--home", home, "--profile", "tv", "--force").returncode == 0


def test_home_not_writable(short_tmp: Path) -> None:
    blocker = short_tmp / "file"
    blocker.write_text("not a folder")
    _one_line_error(
        accord("init", "--home", str(blocker / "h"), "--profile", "tv"), "cannot create"
    )


def test_up_without_home(short_tmp: Path) -> None:
    _one_line_error(accord("up", "--home", str(short_tmp / "nothing")), "accord init")


def test_commands_without_running_node(short_tmp: Path) -> None:
    home = str(short_tmp / "h")
    accord("init", "--home", home, "--profile", "tv")
    _one_line_error(accord("devices", "--home", home), "no node is running", "accord up")


def test_env_home_replaces_flag(short_tmp: Path) -> None:
    home = str(short_tmp / "envhome")
    proc = accord("init", "--profile", "laptop", env={"ACCORD_HOME": home})
    assert proc.returncode == 0, proc.stderr
    assert (Path(home) / "device.toml").exists()


@pytest.fixture
def running(short_tmp: Path) -> Iterator[tuple[Path, int]]:
    """One node running on 127.0.0.1, as a real process."""
    home = short_tmp / "n1"
    assert accord("init", "--home", str(home), "--profile", "nokia-x60").returncode == 0
    port = free_port()
    cmd = [sys.executable, "-m", "accord", "up", "--home", str(home), "--no-multicast"]
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--listen", f"tcp/127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        wait_for(lambda: online_ids(home), 15.0, "node to start")
        yield home, port
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, (home / "node.log").read_text()


def test_second_node_on_same_home_refuses(running: tuple[Path, int]) -> None:
    home, _ = running
    _one_line_error(
        accord("up", "--home", str(home), "--no-multicast", "--listen", "tcp/127.0.0.1:0"),
        "already running",
    )


def test_port_in_use(running: tuple[Path, int], short_tmp: Path) -> None:
    _, port = running
    other = short_tmp / "n2"
    accord("init", "--home", str(other), "--profile", "tv")
    proc = accord("up", "--home", str(other), "--no-multicast", "--listen", f"tcp/127.0.0.1:{port}")
    _one_line_error(proc, "already in use")


def test_unreachable_connect(short_tmp: Path) -> None:
    home = short_tmp / "n3"
    accord("init", "--home", str(home), "--profile", "tv")
    proc = accord(
        "up",
        "--home",
        str(home),
        "--no-multicast",
        "--listen",
        "tcp/127.0.0.1:0",
        "--connect",
        f"tcp/127.0.0.1:{free_port()}",
        "--set",
        "connect_timeout_ms=300",
    )
    _one_line_error(proc, "cannot reach")


def test_unknown_setting(short_tmp: Path) -> None:
    home = short_tmp / "n4"
    accord("init", "--home", str(home), "--profile", "tv")
    _one_line_error(accord("up", "--home", str(home), "--set", "lease=5"), "unknown setting")


def _contains(path: Path, text: str) -> bool:
    return text in path.read_text()


def test_peer_garbage_never_crashes_the_node(running: tuple[Path, int]) -> None:
    home, port = running
    settings = BusSettings(
        connect=(f"tcp/127.0.0.1:{port}",), multicast=False, listen=("tcp/127.0.0.1:0",)
    )
    session = zenoh.open(zenoh_config(settings))
    entities: list[object] = []
    try:
        forger = Identity.generate()
        victim = Identity.generate()
        # 1. tokens under Accord's prefix that are not device ids
        for bad in ("NOT-AN-ID", "a" * 26 + "/extra", "\u00e9" * 26):
            entities.append(session.liveliness().declare_token(f"{keys.PRESENCE_PREFIX}/{bad}"))
        # 2. a well-formed id whose announcement is garbage
        junk_id = forger.device_id
        entities.append(session.liveliness().declare_token(keys.presence_key(junk_id)))
        entities.append(
            session.declare_queryable(
                keys.announce_key(junk_id), lambda q: q.reply(q.key_expr, b"\xc1\xff garbage")
            )
        )
        # 3. an announcement that claims an id its key does not own
        forged = PublicAnnouncement(
            v=PROTOCOL_VERSION,
            device_id=victim.device_id,
            name="Forged",
            type="tv",
            public_key=forger.public_bytes,
        )
        entities.append(session.liveliness().declare_token(keys.presence_key(victim.device_id)))
        entities.append(
            session.declare_queryable(
                keys.announce_key(victim.device_id), lambda q: q.reply(q.key_expr, encode(forged))
            )
        )
        # 4. garbage published and queried on the node's own keys
        for i in range(50):
            session.put(f"{keys.ROOT}/announce/{i}", bytes([i]) * i)
            session.put(f"{keys.ROOT}/presence/x{i}", b"\x00")
        replies = list(
            session.get(f"{keys.ROOT}/announce/**", payload=b"\xff" * 10000, timeout=2.0)
        )
        assert replies, "the node should still answer announcement queries"
        first = replies[0].ok
        assert first is not None
        node_id = str(first.key_expr).rsplit("/", 1)[1]
        # 5. junk on its members-only keys gets silence; on its pairing key, a typed
        # refusal (docs/protocol.md, "Errors on the wire")
        for key in (keys.rpc_key(node_id, "device", "info"), keys.details_key(node_id),
                    keys.channel_key(node_id), keys.session_key(node_id)):  # fmt: skip
            assert list(session.get(key, payload=b"\x01\x01junk", timeout=1.0)) == [], key
        (refusal,) = list(session.get(keys.pair_key(node_id), payload=b"\xc1", timeout=2.0))
        assert refusal.ok is not None
        assert msgspec.msgpack.decode(refusal.ok.payload.to_bytes()) == {
            "ok": False,
            "error": "malformed pairing request",
            "error_type": "Malformed",
        }
        log = home / "node.log"
        for warning in (
            "malformed presence key",
            "bad announcement",
            "does not match its public key",
            "dropped an RPC query",
        ):
            wait_for(partial(_contains, log, warning), 5.0, f"warning {warning!r}")
        seen = online_ids(home)
        assert junk_id not in seen
        assert victim.device_id not in seen
        assert len(seen) == 1  # only itself
        # the node still serves its control API normally
        proc = accord("devices", "--home", str(home), "--json")
        assert proc.returncode == 0
        assert len(json.loads(proc.stdout)) == 1
    finally:
        session.close()  # type: ignore[no-untyped-call]


def test_up_with_unwritable_run_folder(short_tmp: Path) -> None:
    """Tests run as root, which ignores modes; a file where a folder must be is the
    portable way to make part of the home unwritable."""
    home = short_tmp / "h"
    accord("init", "--home", str(home), "--profile", "tv")
    shutil.rmtree(home / "run")
    (home / "run").write_text("in the way")
    _one_line_error(accord("up", "--home", str(home), "--no-multicast"), "cannot write")


def test_up_with_unwritable_data_folder(short_tmp: Path) -> None:
    home = short_tmp / "h"
    accord("init", "--home", str(home), "--profile", "tv")
    shutil.rmtree(home / "data")
    (home / "data").write_text("in the way")
    proc = accord("up", "--home", str(home), "--no-multicast", "--listen", "tcp/127.0.0.1:0")
    _one_line_error(proc, "cannot open")
    assert not (home / "run" / "control.sock").exists()
