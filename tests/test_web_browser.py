"""The control center in a real browser (Debian's Chromium, driven by Playwright)
against a real household: every page renders without console errors, devices come
and go live, dragging an app moves it, the PIN shown pairs a new device, the fridge
chart follows an open door, and a node that stops is said in words and recovered.

One household, one ``accord web`` and one browser for the module (start-up is most
of the cost); the tests run in order and leave the household as they found it,
except the last two, which stop nodes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from accord.control.client import ControlClient
from accord.sim.household import Household, SimDevice, free_port
from tests.conftest import SharedProcesses
from tests.helpers import accord, accord_json, device, running_household, wait_for, wait_seen

pytestmark = pytest.mark.slow

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if shutil.which(p)), None
)
if CHROMIUM is None and not os.environ.get("CI"):  # in CI a missing browser is a failure
    pytest.skip("no Chromium here: `make test` installs Debian's", allow_module_level=True)

from playwright.sync_api import ConsoleMessage, Page, Position, expect, sync_playwright  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PAGES = ["household", "pairing", "apps", "data", "hardware", "continuity", "rules", "log"]
GRIP: Position = {"x": 12, "y": 10}  # where a person grabs an app card: its title
SHOTS = os.environ.get("ACCORD_WEB_SHOTS")  # a folder: save screenshots of the main pages


@pytest.fixture(autouse=True)
def _no_leaked_tasks() -> None:
    """Replaces conftest's asyncio task check here: Playwright's sync API runs its own
    event loop in this thread, where an asyncio fixture cannot start another, and
    these tests start no tasks of their own (the process and thread checks stay)."""


@dataclass
class Center:
    house: Household
    page: Page
    url: str
    errors: list[str]
    folder: Path

    def dev(self, profile: str) -> SimDevice:
        return device(self.house, profile)

    def ctl(self, profile: str, timeout: float = 30.0) -> ControlClient:
        return ControlClient(self.dev(profile).home / "run" / "control.sock", timeout=timeout)

    def show(self, name: str) -> None:
        self.page.click(f"#tabs button[data-page={name}]")
        expect(self.page.locator(f"#page-{name}")).to_be_visible()

    def card(self, profile: str) -> Any:
        return self.page.locator(f'.device[data-device-id="{self.dev(profile).device_id}"]')


def _start_web(home: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "accord", "web", "--home", str(home), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "control center: URL"
    assert line.startswith("control center: http://127.0.0.1:"), line
    return proc, line.split()[-1]


@pytest.fixture(scope="module")
def center(shared_processes: SharedProcesses) -> Iterator[Center]:
    profiles = ["nokia-x60", "tablet", "midea-fridge", "tv"]
    for house in running_household(profiles, "acc-web-", shared=shared_processes):
        yield from _browse(house, shared_processes)


def _browse(house: Household, shared_processes: SharedProcesses) -> Iterator[Center]:
    """``accord web`` on the phone's home, and a browser on its page."""
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    web, url = _start_web(device(house, "nokia-x60").home)
    with sync_playwright() as pw:
        ours = {p.pid for p in me.children()} - before  # the web server, Playwright
        undo = shared_processes.add(lambda: ours)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            errors: list[str] = []

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    errors.append(msg.text)

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            yield Center(house, page, url, errors, house.folder.parent)
        finally:
            browser.close()
            web.send_signal(signal.SIGTERM)
            web.wait(10)
            if web.stdout is not None:
                web.stdout.close()
            undo()


def unexpected(errors: list[str]) -> list[str]:
    """Console errors other than the browser's own note of a refusal (a 409 from a
    move the node refused, or a 503 while the node was down): those are tested as
    what the page says, in words."""
    said = ("status of 409 (Conflict)", "status of 503 (Service Unavailable)")
    return [e for e in errors if not e.endswith(said)]


def _shot(c: Center, name: str) -> None:
    if SHOTS:
        c.page.screenshot(path=str(Path(SHOTS) / f"web-{name}.png"))


def test_every_page_renders_every_device_live_without_console_errors(center: Center) -> None:
    c = center
    for profile in ("nokia-x60", "tablet", "midea-fridge", "tv"):
        expect(c.card(profile)).to_have_attribute("data-online", "yes")
    expect(c.card("nokia-x60").locator(".standing")).to_have_text("this device")
    expect(c.card("tablet").locator(".standing")).to_have_text("member")
    expect(c.card("midea-fridge")).to_contain_text("SL1")
    expect(c.card("nokia-x60").locator(".battery")).to_contain_text("%")
    _shot(c, "household")
    for name in PAGES:
        c.show(name)
    c.show("household")
    assert unexpected(c.errors) == []


def test_dragging_notes_from_the_phone_to_the_tablet_moves_it(center: Center) -> None:
    c = center
    phone, tablet = c.dev("nokia-x60"), c.dev("tablet")
    installed = c.ctl("nokia-x60", 60).call("app_install", path=str(EXAMPLES / "notes"), on="all")
    assert "Tablet" in installed["installed"], installed
    c.ctl("nokia-x60").call("app_run", app="notes", on=phone.device_id, params={"text": "hi"})
    c.show("apps")
    card = c.page.locator(f'.column[data-device-id="{phone.device_id}"] .app[data-app-id=notes]')
    expect(card).to_be_visible()
    _shot(c, "apps")
    target = c.page.locator(f'.column[data-device-id="{tablet.device_id}"]')
    card.drag_to(target, source_position=GRIP)  # by its title: not its menu or button
    moved = target.locator(".app[data-app-id=notes]")
    expect(moved).to_be_visible(timeout=20_000)
    expect(moved).not_to_have_class("card app moving", timeout=20_000)
    running = accord_json("ps", "--home", str(phone.home))["running"]
    assert [(r["app_id"], r["device"]) for r in running] == [("notes", "Tablet")]
    expect(c.page.locator("#log")).to_contain_text("move notes to Tablet: done")
    assert unexpected(c.errors) == []


def test_a_refused_move_is_said_in_words(center: Center) -> None:
    c = center  # the fridge has no display: notes cannot run there
    fridge = c.dev("midea-fridge")
    card = c.page.locator(".app[data-app-id=notes]")
    card.drag_to(
        c.page.locator(f'.column[data-device-id="{fridge.device_id}"]'), source_position=GRIP
    )
    toast = c.page.locator(".toast.error")
    expect(toast).to_be_visible(timeout=20_000)
    assert "notes" in toast.first.inner_text() or "display" in toast.first.inner_text()
    expect(
        c.page.locator(f'.column[data-device-id="{c.dev("tablet").device_id}"] .app')
    ).to_be_visible()


def test_the_fridge_chart_moves_when_the_door_opens(center: Center) -> None:
    c = center
    fridge = c.dev("midea-fridge")
    c.show("hardware")
    cabinet = c.page.locator('.fridge .cabinet[data-cabinet="fridge"]')
    expect(cabinet).to_have_attribute("data-door", "closed", timeout=10_000)
    expect(cabinet.locator("input[type=number]")).to_have_attribute("min", "1")
    line = cabinet.locator("polyline.temperature")
    before = line.get_attribute("points")
    start = float(cabinet.locator(".temp").inner_text().split()[0])
    args = {"door": "fridge", "open": True}
    c.ctl("nokia-x60").call("call", device=fridge.device_id, target="sim.door", args=args)
    try:
        expect(cabinet).to_have_attribute("data-door", "open", timeout=5_000)
        wait_for(
            lambda: float(cabinet.locator(".temp").inner_text().split()[0]) > start,
            15,
            "the fridge to warm with its door open",
        )
        assert line.get_attribute("points") != before
        expect(cabinet.locator(".door")).to_have_text("door open")
        assert cabinet.locator("rect.door-open").count() > 0
        _shot(c, "hardware")
    finally:
        args = {"door": "fridge", "open": False}
        c.ctl("nokia-x60").call("call", device=fridge.device_id, target="sim.door", args=args)
    # A setpoint outside the allowed range is refused on the page, in words.
    cabinet.locator("input[type=number]").fill("12")
    cabinet.locator("button[type=submit]").click()
    expect(c.page.locator(".toast.error").last).to_contain_text("from 1 to 8")
    assert unexpected(c.errors) == []


def test_the_pin_shown_pairs_a_new_device(center: Center) -> None:
    c = center
    phone = c.dev("nokia-x60")
    laptop = c.folder / "laptop"
    assert accord("init", "--home", str(laptop), "--profile", "laptop").returncode == 0
    up = [sys.executable, "-m", "accord", "up", "--home", str(laptop), "--no-multicast"]
    up += ["--listen", f"tcp/127.0.0.1:{free_port()}", "--connect", phone.endpoint]
    with open(laptop / "node.log", "wb") as log:
        node = subprocess.Popen(up, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        client = ControlClient(laptop / "run" / "control.sock", timeout=20)
        wait_for(lambda: _answers(client), 20, "the laptop's node to start")
        wait_seen(laptop, phone.device_id, 10, "the laptop to see the phone")
        c.show("pairing")
        c.page.click("#pair-open")
        pin = c.page.locator("#pair-pin")
        expect(pin).to_have_text(_six_digits(), timeout=10_000)
        _shot(c, "pairing")
        joined = client.call("pair_join", device=phone.device_id, pin=pin.inner_text())
        status = c.page.locator("#pair-status")
        name = client.call("status")["name"]
        expect(status).to_contain_text(f"Paired with {name}", timeout=10_000)
        expect(status.locator(".code")).to_have_text(joined["code"])
        c.show("household")
        card = c.page.locator(f'.device[data-name="{name}"]')
        expect(card.locator(".standing")).to_have_text("member", timeout=10_000)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
    assert unexpected(c.errors) == []


def _answers(client: ControlClient) -> bool:
    try:
        client.call("status")
    except Exception:
        return False
    return True


def _six_digits() -> Any:
    import re

    return re.compile(r"^\d{6}$")


def test_a_killed_device_goes_grey_within_2_s_and_back_when_it_returns(center: Center) -> None:
    c = center
    tv = c.dev("tv")
    c.show("household")
    expect(c.card("tv")).to_have_attribute("data-online", "yes")
    assert tv.proc is not None
    killed = time.monotonic()
    tv.proc.kill()
    tv.proc.wait()
    expect(c.card("tv")).to_have_attribute("data-online", "no", timeout=2_000)
    assert time.monotonic() - killed < 2.5  # 2 s, and the browser's own turn
    expect(c.card("tv")).to_have_class("card device offline")
    c.house.restart(tv)
    expect(c.card("tv")).to_have_attribute("data-online", "yes", timeout=15_000)
    assert unexpected(c.errors) == []


def test_the_page_says_when_its_node_stops_and_recovers_when_it_returns(center: Center) -> None:
    c = center
    phone = c.dev("nokia-x60")
    assert phone.proc is not None
    phone.proc.kill()
    phone.proc.wait()
    banner = c.page.locator("#banner")
    expect(banner).to_be_visible(timeout=5_000)
    expect(banner).to_contain_text("no node is running")
    expect(banner).to_contain_text("recovers by itself")
    c.house.restart(phone)
    expect(banner).to_be_hidden(timeout=15_000)
    expect(c.card("tablet")).to_have_attribute("data-online", "yes", timeout=15_000)
    assert unexpected(c.errors) == []
