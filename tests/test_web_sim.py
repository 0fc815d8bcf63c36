"""``accord sim --web`` (what ``make demo`` runs) prints the control center's
address, the address answers, and the whole household, server included, stops."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from tests.helpers import wait_for


def test_sim_web_prints_a_working_address_and_stops_cleanly(short_tmp: Path) -> None:
    args = ["--devices", "tv", "--web", "--dir", str(short_tmp / "h"), "--duration", "30"]
    sim = subprocess.Popen(
        [sys.executable, "-m", "accord", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert sim.stdout is not None
    try:
        url = ""
        for line in sim.stdout:
            if line.startswith("Control center: "):
                url = line.split()[-1]
                break
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1"), url
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=5)
        conn.request("GET", f"/?{parts.query}")
        response = conn.getresponse()
        assert response.status == 302
        assert "HttpOnly" in response.getheader("Set-Cookie", "")
        conn.close()
        children = psutil.Process(sim.pid).children(recursive=True)
        assert any("web" in p.cmdline() for p in children)
    finally:
        sim.terminate()  # what Ctrl-C does: the sim stops every node and the server
        out, _ = sim.communicate(timeout=20)
    assert sim.returncode == 0, out
    assert "household stopped; no node left running" in out
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                             for p in children), 5, "the household and server to exit")  # fmt: skip
