"""The test helpers themselves: a wait for "device gone" must not pass because the
node asked (the observer) is down or silent."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import NoAnswer, online_ids, wait_for, wait_gone, wait_seen

OTHER = "d" * 26
ME = "e" * 26


@contextmanager
def fake_node(home: Path, *, answer: bool) -> Iterator[None]:
    """A control socket on ``home`` that answers ``devices`` once per connection
    (``answer`` False: it accepts and never replies, like a hung node)."""
    path = home / "run" / "control.sock"
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if not answer:
                held.append(conn)
                continue
            with conn, conn.makefile("rb") as reader:
                request = json.loads(reader.readline())
                rows = [{"device_id": d, "online": d == ME} for d in (ME, OTHER)]
                conn.sendall(json.dumps({"id": request["id"], "result": rows}).encode() + b"\n")

    thread = threading.Thread(target=serve, name="fake-node")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_a_node_that_answers_is_read(short_tmp: Path) -> None:
    with fake_node(short_tmp, answer=True):
        assert online_ids(short_tmp) == {ME}
        wait_gone(short_tmp, OTHER, 5, "the other device offline")  # it is: passes at once
        wait_seen(short_tmp, ME, 5, "itself online")


def test_a_node_that_is_not_running_sees_nothing_gone(short_tmp: Path) -> None:
    with pytest.raises(NoAnswer, match="did not answer"):
        online_ids(short_tmp)
    with pytest.raises(AssertionError, match=r"timed out .* did not answer"):
        wait_gone(short_tmp, OTHER, 0.3, "the other device offline")


def test_a_node_that_does_not_answer_in_time_sees_nothing_gone(short_tmp: Path) -> None:
    with fake_node(short_tmp, answer=False):
        with pytest.raises(NoAnswer, match="within 2 s"):
            online_ids(short_tmp)
        with pytest.raises(AssertionError, match=r"timed out .* did not answer"):
            wait_gone(short_tmp, OTHER, 0.5, "the other device offline")


def test_wait_for_fails_with_the_last_answer() -> None:
    with pytest.raises(AssertionError, match=r"waiting for nothing \(last: 0\)"):
        wait_for(lambda: 0, 0.1, "nothing")
