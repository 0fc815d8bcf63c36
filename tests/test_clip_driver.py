"""The host clipboard driver against fake ``wl-copy``/``wl-paste``/``xclip`` on PATH:
both directions on Wayland and X11, detection, a missing, failing or hanging tool
(typed error, then the simulated clipboard), and a node that keeps every item."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from accord.continuity.clipboard import driver
from accord.continuity.clipboard.driver import (
    HostClipboard,
    HostClipboardError,
    HostTool,
    SimClipboard,
    clipboard_driver,
)
from accord.continuity.errors import ClipboardError
from accord.control.client import ControlClient
from accord.node import Node
from tests.nodes import Mesh, household

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TEXT_MIME = "text/plain;charset=utf-8"

# Each fake keeps the clipboard in $FAKE_CLIP/{type,data}; FAKE_FAIL makes it fail as
# the real tool does without a display, FAKE_HANG makes it never answer.
COMMON = """#!/bin/sh
if [ -n "$FAKE_HANG" ]; then exec sleep 60; fi
"""
WL_COPY = (
    COMMON
    + """
if [ -n "$FAKE_FAIL" ]; then echo "Failed to connect to a Wayland server" >&2; exit 1; fi
[ "$1" = "--type" ] || exit 2
printf '%s' "$2" > "$FAKE_CLIP/type"
cat > "$FAKE_CLIP/data"
"""
)
WL_PASTE = (
    COMMON
    + """
if [ -n "$FAKE_FAIL" ]; then echo "Failed to connect to a Wayland server" >&2; exit 1; fi
[ -f "$FAKE_CLIP/type" ] || { echo "No selection" >&2; exit 1; }
if [ "$1" = "--list-types" ]; then cat "$FAKE_CLIP/type"; echo; exit 0; fi
if [ "$1 $2" = "--no-newline --type" ] && [ "$3" = "$(cat "$FAKE_CLIP/type")" ]; then
  cat "$FAKE_CLIP/data"; exit 0
fi
echo "No suitable type of content copied" >&2; exit 1
"""
)
XCLIP = (
    COMMON
    + """
if [ -n "$FAKE_FAIL" ]; then echo "Error: Can't open display: :0" >&2; exit 1; fi
[ "$1 $2" = "-selection clipboard" ] || exit 2
if [ "$3" = "-t" ] && [ "$5" = "-i" ]; then
  printf '%s' "$4" > "$FAKE_CLIP/type"; cat > "$FAKE_CLIP/data"
  sleep 2 <&- &  # like xclip: a child stays to serve the selection, holding our output
  exit 0
fi
if [ "$3 $4" = "-o -t" ]; then
  [ -f "$FAKE_CLIP/type" ] || { echo "Error: target $5 not available" >&2; exit 1; }
  if [ "$5" = "TARGETS" ]; then echo TARGETS; cat "$FAKE_CLIP/type"; echo; exit 0; fi
  if [ "$5" = "$(cat "$FAKE_CLIP/type")" ]; then cat "$FAKE_CLIP/data"; exit 0; fi
  echo "Error: target $5 not available" >&2; exit 1
fi
exit 2
"""
)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the fake tools (and sh, cat, sleep through /bin), and the
    folder the fakes keep the clipboard in."""
    bin_dir, store = tmp_path / "bin", tmp_path / "clip"
    bin_dir.mkdir()
    store.mkdir()
    for name, script in (("wl-copy", WL_COPY), ("wl-paste", WL_PASTE), ("xclip", XCLIP)):
        path = bin_dir / name
        path.write_text(script)
        path.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_CLIP", str(store))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_HANG", raising=False)
    return store


def _held(store: Path) -> tuple[str, bytes]:
    return (store / "type").read_text(), (store / "data").read_bytes()


@pytest.mark.parametrize("kind", ["wayland", "x11"])
async def test_both_directions(fakes: Path, kind: str) -> None:
    tool = HostTool(kind)
    await tool.set("text", "héllo\nworld".encode())
    assert _held(fakes) == (TEXT_MIME, "héllo\nworld".encode())
    assert await tool.get() == ("text", "héllo\nworld".encode())
    await tool.set("png", PNG)
    assert _held(fakes) == ("image/png", PNG)
    assert await tool.get() == ("png", PNG)
    (fakes / "type").write_text("application/x-unknown")
    with pytest.raises(ClipboardError, match="no text or image"):
        await tool.get()


def test_detection_follows_the_session_and_the_tools(
    fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("DISPLAY", ":0")
    detected = clipboard_driver("host")
    assert isinstance(detected, HostClipboard)
    assert (detected.tool.kind, detected.driver) == ("wayland", "host")
    monkeypatch.delenv("WAYLAND_DISPLAY")
    detected = clipboard_driver("host")
    assert isinstance(detected, HostClipboard)
    assert detected.tool.kind == "x11"
    assert isinstance(clipboard_driver("simulated"), SimClipboard)
    monkeypatch.delenv("DISPLAY")  # no session: simulated, tools or not
    assert isinstance(clipboard_driver("host"), SimClipboard)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("PATH", str(fakes))  # a session, but no tool installed
    assert isinstance(clipboard_driver("host"), SimClipboard)


@pytest.mark.parametrize("kind", ["wayland", "x11"])
async def test_a_failing_tool_is_a_typed_error_then_the_simulated_clipboard(
    fakes: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    board = HostClipboard(HostTool(kind))
    await board.set("text", b"first")
    assert board.driver == "host"
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(HostClipboardError, match=r"failed \(exit 1\): .*(Wayland|display)"):
        await board.set("text", b"second")
    assert board.driver == "simulated"
    assert board.error
    await board.set("text", b"third")  # no error twice: the simulated clipboard takes it
    assert await board.get() == ("text", b"third")
    assert _held(fakes)[1] == b"first"  # the broken tool is not run again


@pytest.mark.parametrize("kind", ["wayland", "x11"])
async def test_an_empty_host_clipboard_fails_the_copy_not_the_driver(
    fakes: Path, kind: str
) -> None:
    board = HostClipboard(HostTool(kind))
    with pytest.raises(HostClipboardError, match=r"exit 1\): .*(No selection|not available)"):
        await board.get()
    assert board.driver == "host"
    await board.set("text", b"now there is")
    assert _held(fakes) == (TEXT_MIME, b"now there is")
    assert await board.get() == ("text", b"now there is")


async def test_a_missing_tool_is_a_typed_error(fakes: Path) -> None:
    (fakes.parent / "bin" / "wl-paste").unlink()  # gone since it was detected
    board = HostClipboard(HostTool("wayland"))
    with pytest.raises(HostClipboardError, match="cannot run wl-paste"):
        await board.get()
    assert board.driver == "simulated"
    with pytest.raises(ClipboardError, match="empty"):
        await board.get()
    await board.set("text", b"kept")
    assert await board.get() == ("text", b"kept")


async def test_a_tool_that_never_answers_is_a_typed_error(
    fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "TIMEOUT_S", 0.3)
    monkeypatch.setenv("FAKE_HANG", "1")
    with pytest.raises(HostClipboardError, match="did not answer"):
        await HostTool("x11").get()


@pytest.fixture
async def two(mesh: Mesh) -> tuple[Node, Node]:
    laptop, phone = await household(mesh, ("laptop", "laptop"), ("phone", "nokia-x60"))
    return laptop, phone


async def test_a_node_copies_from_its_host_and_keeps_items_when_the_tool_breaks(
    fakes: Path, monkeypatch: pytest.MonkeyPatch, two: tuple[Node, Node]
) -> None:
    laptop, phone = two
    laptop.continuity.clip.driver = HostClipboard(HostTool("wayland"))
    control = ControlClient(laptop.home.path / "run" / "control.sock", timeout=15.0)
    (fakes / "type").write_text(TEXT_MIME)
    (fakes / "data").write_bytes(b"from the laptop's own clipboard")
    copied = await asyncio.to_thread(control.call, "clip_copy", host=True)
    assert copied["item"]["kind"] == "text"
    assert "warning" not in copied
    _item, chunks = await phone.continuity.clip.paste(None)
    assert b"".join([c async for c in chunks]) == b"from the laptop's own clipboard"
    # The tool breaks: the copy still happens and is announced, with a warning.
    monkeypatch.setenv("FAKE_FAIL", "1")
    copied = await asyncio.to_thread(control.call, "clip_copy", text="after the break")
    assert "wl-copy failed" in copied["warning"]
    assert copied["announced_to"] == ["phone"]
    _item, chunks = await phone.continuity.clip.paste(None)
    assert b"".join([c async for c in chunks]) == b"after the break"
    assert laptop.continuity.status()["clipboard"] == "simulated"
