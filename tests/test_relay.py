"""``accord relay``: its Zenoh config, its access control against strangers (a real
relay process on 127.0.0.1), TLS, and ``accord up --relay``'s client-mode config."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zenoh
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from accord.bus import keys
from accord.bus.relay import ALLOWED_KEYS, Relay, relay_config
from accord.bus.settings import BusSettings, zenoh_config
from accord.sim.household import die_with_parent, free_port
from tests.helpers import accord, wait_for


def _get(conf: zenoh.Config, key: str) -> object:
    return json.loads(conf.get_json(key))


def test_relay_is_a_router_that_denies_all_but_accords_keys() -> None:
    conf = relay_config(["tcp/127.0.0.1:7447"])
    assert _get(conf, "mode") == "router"
    assert _get(conf, "scouting/multicast/enabled") is False
    acl = _get(conf, "access_control")
    assert isinstance(acl, dict)
    assert acl["enabled"] is True
    assert acl["default_permission"] == "deny"
    assert all(r["permission"] == "allow" for r in acl["rules"])
    allowed = [zenoh.KeyExpr(k) for r in acl["rules"] for k in r["key_exprs"]]
    assert not any(k.intersects(zenoh.KeyExpr("accord/v1/x")) for k in allowed)


def _every_key_accord_uses() -> list[str]:
    """Every key and key expression bus/keys.py builds, for one device id."""
    device = "a" * 26
    built = [
        value
        for name, value in vars(keys).items()
        if isinstance(value, str) and name.isupper() and "/" in value
    ]
    for name, fn in vars(keys).items():
        if callable(fn) and name.endswith(("_key", "_all")) and fn.__module__ == keys.__name__:
            args = (device, "service", "method") if name == "rpc_key" else (device,)
            built.append(fn(*args))
    return built


def test_every_key_accord_uses_passes_the_relay() -> None:
    allowed = [zenoh.KeyExpr(k) for k in ALLOWED_KEYS]
    prefixes = {"accord/v1", "accord/v1/presence", "accord/v1/announce", "accord/v1/details",
                "accord/v1/pair", "accord/v1/rpc"}  # fmt: skip
    for key in _every_key_accord_uses():
        if key in prefixes:
            continue  # a prefix the builders extend, never used as a key itself
        assert any(a.includes(zenoh.KeyExpr(key)) for a in allowed), key


def test_a_node_with_a_relay_is_its_client_and_listens_nowhere() -> None:
    relay = "tcp/127.0.0.1:7447"
    conf = zenoh_config(BusSettings(relay=(relay,), listen=("tcp/127.0.0.1:1",)))
    assert _get(conf, "mode") == "client"
    assert _get(conf, "connect/endpoints") == [relay]
    assert _get(conf, "listen/endpoints") == []
    assert _get(conf, "scouting/multicast/enabled") is False
    assert _get(zenoh_config(BusSettings()), "mode") == "peer"  # unchanged without one


def test_relay_links_have_a_long_lease_and_lan_links_keep_theirs() -> None:
    """A client starved of CPU for a second (100 nodes on 2 cores) must not be cut off
    by its relay, nor the relay by it; a crash still closes the link at once."""
    relayed = zenoh_config(BusSettings(relay=("tcp/127.0.0.1:7447",), lease_ms=1500))
    assert _get(relayed, "transport/link/tx/lease") == 10_000
    custom = BusSettings(relay=("tcp/127.0.0.1:7447",)).with_overrides(["relay_lease_ms=4000"])
    assert _get(zenoh_config(custom), "transport/link/tx/lease") == 4000
    assert _get(zenoh_config(BusSettings(lease_ms=1500)), "transport/link/tx/lease") == 1500
    assert _get(relay_config(["tcp/127.0.0.1:7447"]), "transport/link/tx/lease") == 10_000


def test_up_refuses_listen_with_relay() -> None:
    proc = accord("up", "--relay", "tcp/127.0.0.1:1", "--listen", "tcp/127.0.0.1:2")
    assert proc.returncode == 1
    assert "--listen has no effect with --relay" in proc.stderr


@pytest.fixture
def relay_process() -> Iterator[str]:
    """A real ``accord relay`` on a free loopback port; its endpoint."""
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "accord", "relay", "--listen", endpoint],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens
        assert line.startswith("accord relay listening on"), line
        yield endpoint
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _client(endpoint: str) -> zenoh.Session:
    conf = zenoh.Config()
    conf.insert_json5("mode", '"client"')
    conf.insert_json5("connect/endpoints", json.dumps([endpoint]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    return zenoh.open(conf)


def test_a_stranger_cannot_use_the_relay_as_a_general_broker(relay_process: str) -> None:
    sender, receiver = _client(relay_process), _client(relay_process)
    got: list[str] = []
    lock = threading.Lock()

    def record(sample: zenoh.Sample) -> None:
        with lock:
            got.append(str(sample.key_expr))

    def answer(query: zenoh.Query) -> None:
        query.reply(str(query.key_expr), b"answer")

    member_key = f"accord/v1/data/{'a' * 26}"
    entities: list[zenoh.Subscriber[None] | zenoh.Queryable[None]] = [
        receiver.declare_subscriber(key, zenoh.handlers.Callback(record, indirect=False))
        for key in ("other/**", "accord/v1/mailbox/**", member_key)
    ]
    entities += [
        receiver.declare_queryable(key, zenoh.handlers.Callback(answer, indirect=False))
        for key in ("other/q", "accord/v1/mailbox/q", f"accord/v1/rpc/{'a' * 26}/s/m")
    ]
    try:
        # Each put is retried until the Accord one arrives (subscriptions take a moment
        # to propagate). Puts from one session through one relay arrive in order, so
        # once the member key's put is in, an allowed put sent before it would be too.
        def probe_arrived() -> bool:
            sender.put("other/x", b"not for the relay")
            sender.put("accord/v1/mailbox/x", b"not in Accord's layout")
            sender.put(member_key, b"sealed in real life")
            with lock:
                return member_key in got

        wait_for(probe_arrived, 10, "a put on an Accord key to cross the relay")
        with lock:
            assert set(got) == {member_key}
        rpc = f"accord/v1/rpc/{'a' * 26}/s/m"
        assert [r.ok is not None for r in sender.get(rpc, timeout=5)] == [True]
        assert list(sender.get("other/q", timeout=1)) == []
        assert list(sender.get("accord/v1/mailbox/q", timeout=1)) == []
    finally:
        for entity in entities:
            entity.undeclare()  # type: ignore[no-untyped-call]
        sender.close()  # type: ignore[no-untyped-call]
        receiver.close()  # type: ignore[no-untyped-call]


def test_a_relay_on_a_busy_port_says_so(relay_process: str) -> None:
    proc = accord("relay", "--listen", relay_process, timeout=20)
    assert proc.returncode == 1
    assert "cannot start the relay" in proc.stderr


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a relay certificate it signed for localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def build(subject: str, issuer: str, public: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key, relay_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = build("accord test ca", "accord test ca", ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    cert = build("localhost", "accord test ca", relay_key.public_key()).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
    )
    paths = folder / "ca.pem", folder / "relay.pem", folder / "relay.key"
    paths[0].write_bytes(ca.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM))
    paths[1].write_bytes(cert.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM))
    paths[2].write_bytes(relay_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return paths


def test_a_tls_relay_carries_nodes_that_trust_its_ca_only(short_tmp: Path) -> None:
    ca, cert, key = _certificates(short_tmp)
    relay = f"tls/localhost:{free_port()}"
    trusting = BusSettings(relay=(relay,)).with_overrides(
        [f"zenoh.transport.link.tls.root_ca_certificate={json.dumps(str(ca))}"]
    )
    member_key = f"accord/v1/data/{'a' * 26}"
    with Relay([relay], tls=(cert, key)):
        with pytest.raises(zenoh.ZError):  # the system's CAs do not know the relay
            zenoh.open(zenoh_config(BusSettings(relay=(relay,))))
        sender, receiver = zenoh.open(zenoh_config(trusting)), zenoh.open(zenoh_config(trusting))
        got: list[bytes] = []

        def record(sample: zenoh.Sample) -> None:
            got.append(sample.payload.to_bytes())

        sub = receiver.declare_subscriber(
            member_key, zenoh.handlers.Callback(record, indirect=False)
        )
        try:

            def arrived() -> bool:
                sender.put(member_key, b"over tls")
                return bool(got)

            wait_for(arrived, 10, "a put to cross the TLS relay")
        finally:
            sub.undeclare()  # type: ignore[no-untyped-call]
            sender.close()  # type: ignore[no-untyped-call]
            receiver.close()  # type: ignore[no-untyped-call]


def test_sim_builds_a_household_that_reaches_itself_only_through_a_relay(
    short_tmp: Path,
) -> None:
    folder = short_tmp / "house"
    proc = accord("sim", "--devices", "3", "--relay", "--dir", str(folder), "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["profile"] for r in rows] == ["nokia-x60", "tablet", "laptop"]
    assert all(r["seen_by"] == 2 and r["circle_members"] == 3 and r["summary"] for r in rows)
    assert "accord relay listening on tcp/127.0.0.1:" in (folder / "relay.log").read_text()
    for name in ("nokia-x60", "tablet", "laptop"):
        assert not list((folder / name / "run").glob("*.sock")), "a node still runs"
