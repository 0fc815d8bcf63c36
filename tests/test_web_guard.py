"""The control center's three locks, without a browser or a node: a request without
the token, with a foreign Host header (DNS rebinding), or changing something without
the custom header is refused; the token becomes an HttpOnly, SameSite=Strict cookie.

The server runs in this process against a home with no node: the page must say so
(503 with words), which also shows that the guarded request got through."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from accord.web.server import Served, serve


@pytest_asyncio.fixture
async def served(short_tmp: Path) -> AsyncIterator[Served]:
    server = await serve(short_tmp / "run" / "control.sock", str(short_tmp), port=0)
    try:
        yield server
    finally:
        await server.close()


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


async def ask(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(_request, port, method, path, headers, body)


def _token(served: Served) -> str:
    return urlsplit(served.url).query.removeprefix("token=")


async def test_the_url_is_loopback_with_a_fresh_token(served: Served, short_tmp: Path) -> None:
    parts = urlsplit(served.url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", served.port)
    assert len(_token(served)) >= 32
    other = await serve(short_tmp / "run" / "control.sock", str(short_tmp), port=0)
    try:
        assert _token(other) != _token(served)
    finally:
        await other.close()


async def test_no_token_or_a_wrong_one_is_refused(served: Served) -> None:
    host = {"Host": f"127.0.0.1:{served.port}"}
    for path in ("/", "/static/core.js", "/events", "/?token=wrong"):
        status, _, body = await ask(served.port, "GET", path, host)
        assert status == 403, path
        assert b"token" in body
    status, _, _ = await ask(served.port, "GET", "/", {**host, "Cookie": "accord_token=wrong"})
    assert status == 403


async def test_the_token_becomes_a_strict_httponly_cookie(served: Served) -> None:
    host = {"Host": f"127.0.0.1:{served.port}"}
    status, headers, _ = await ask(served.port, "GET", f"/?token={_token(served)}", host)
    assert status == 302
    assert headers["Location"] == "/"  # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert f"accord_token={_token(served)}" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    status, headers, body = await ask(
        served.port, "GET", "/", {**host, "Cookie": f"accord_token={_token(served)}"}
    )
    assert status == 200
    assert b"<title>Accord control center</title>" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "attacker.test", ""])
async def test_a_foreign_host_header_is_refused_even_with_the_token(
    served: Served, host: str
) -> None:
    status, _, body = await ask(
        served.port, "GET", f"/?token={_token(served)}", {"Host": host.format(port=served.port)}
    )
    assert status == 403
    assert b"loopback" in body


async def test_localhost_is_the_same_server(served: Served) -> None:
    cookie = {"Cookie": f"accord_token={_token(served)}"}
    status, _, _ = await ask(
        served.port, "GET", "/", {"Host": f"localhost:{served.port}", **cookie}
    )
    assert status == 200


async def test_changes_need_the_custom_header_and_json(served: Served) -> None:
    base = {"Host": f"127.0.0.1:{served.port}", "Cookie": f"accord_token={_token(served)}"}
    json_type = {"Content-Type": "application/json"}
    # What a cross-site form can send: no custom header, a form body.
    form = {**base, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = await ask(served.port, "POST", "/api/app_stop", form, b"app=notes")
    assert status == 403
    assert b"X-Accord" in body
    status, _, _ = await ask(served.port, "POST", "/api/app_stop", {**base, **json_type}, b"{}")
    assert status == 403
    with_header = {**base, "X-Accord": "1"}
    status, _, body = await ask(served.port, "POST", "/api/app_stop", with_header, b"app=notes")
    assert status == 403
    assert b"JSON" in body
    # Through every lock: the node itself is not running, and the answer says so.
    status, _, body = await ask(
        served.port, "POST", "/api/status", {**with_header, **json_type}, b"{}"
    )
    assert status == 503
    assert b"no node is running" in body


async def test_only_listed_methods_and_hardware_calls_pass(served: Served) -> None:
    headers = {
        "Host": f"127.0.0.1:{served.port}",
        "Cookie": f"accord_token={_token(served)}",
        "X-Accord": "1",
        "Content-Type": "application/json",
    }
    status, _, _ = await ask(served.port, "POST", "/api/stop", headers, b"{}")
    assert status == 404
    status, _, _ = await ask(served.port, "POST", "/api/trust_revoke", headers, b"{}")
    assert status == 404
    body = b'{"device": "Tablet", "target": "apps.run"}'
    status, _, _ = await ask(served.port, "POST", "/api/call", headers, body)
    assert status == 403
    body = b'{"path": "/etc/passwd"}'
    status, _, _ = await ask(served.port, "POST", "/api/clip_copy", headers, body)
    assert status == 403
