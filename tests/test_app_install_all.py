"""`accord app install --on all` in a circle where one device cannot run the app
(the refrigerator has no display): it is skipped with the reason and the command
succeeds; it fails if no device could install the app, or if a capable device
failed for another reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from accord.apps.bundle import Bundle
from accord.apps.errors import AppError
from accord.node import Node
from tests.nodes import Mesh, accord_async, household

NOTES = Path(__file__).parent.parent / "examples" / "notes"  # requires a display


@pytest.fixture
async def home(mesh: Mesh) -> dict[str, Node]:
    nodes = await household(
        mesh, ("phone", "nokia-x60"), ("tablet", "tablet"), ("fridge", "midea-fridge")
    )
    return {n.name: n for n in nodes}


async def _install(node: Node, app: Path, *on: str) -> tuple[int, dict[str, Any], str]:
    where = [a for d in on for a in ("--on", d)]
    code, out, err = await accord_async(
        "app", "install", str(app), *where, "--json", "--home", str(node.home.path)
    )
    return code, json.loads(out), err


async def test_a_device_that_cannot_run_the_app_is_skipped(home: dict[str, Node]) -> None:
    code, result, err = await _install(home["phone"], NOTES, "all")
    assert code == 0, (result, err)
    assert result["ok"] is True
    assert sorted(result["installed"]) == ["phone", "tablet"]
    assert result["failed"] == []
    [skipped] = result["skipped"]
    assert skipped["device"] == "fridge"
    assert skipped["device_id"] == home["fridge"].home.device_id
    assert "lacks display" in skipped["reason"]
    assert result["devices"]["fridge"]["status"] == "skipped"
    for name in ("phone", "tablet"):
        assert home[name].apps.bundle("notes").content_hash == result["hash"]
    with pytest.raises(AppError):
        home["fridge"].apps.bundle("notes")

    # The table says so too, in words, and the exit status is still 0.
    code, out, err = await accord_async(
        "app", "install", str(NOTES), "--on", "all", "--home", str(home["phone"].home.path)
    )
    assert code == 0, err
    assert "skipped" in out
    assert "lacks display" in out


async def test_the_builder_that_cannot_run_the_app_still_hands_it_out(
    home: dict[str, Node],
) -> None:
    # The SL1 fridge may install apps on the phone and tablet only where their owners
    # allow it (test_apps_authority.py has the refusals).
    for name in ("phone", "tablet"):
        code, out, err = await accord_async(
            "permissions", "allow", "apps", "fridge", "--home", str(home[name].home.path)
        )
        assert code == 0, (out, err)
    code, result, err = await _install(home["fridge"], NOTES, "all")
    assert code == 0, (result, err)
    assert sorted(result["installed"]) == ["phone", "tablet"]
    assert [s["device"] for s in result["skipped"]] == ["fridge"]
    assert home["tablet"].apps.bundle("notes").content_hash == result["hash"]


async def test_a_device_named_on_purpose_that_cannot_run_it_fails(
    home: dict[str, Node],
) -> None:
    code, result, _ = await _install(home["phone"], NOTES, "fridge")
    assert code == 1
    assert result["installed"] == []
    assert result["skipped"] == []
    assert "lacks display" in result["failed"][0]["error"]


async def test_it_fails_when_no_device_can_run_the_app(
    home: dict[str, Node], tmp_path: Path
) -> None:
    app = tmp_path / "needs-all"
    shutil.copytree(NOTES, app)
    manifest = (app / "accord-app.toml").read_text()
    (app / "accord-app.toml").write_text(
        manifest.replace('requires = ["display"]', 'requires = ["display", "door-sensor"]')
    )
    code, result, err = await _install(home["phone"], app, "all")
    assert code == 1
    assert result["ok"] is False
    assert result["installed"] == []
    assert result["failed"] == []
    assert sorted(s["device"] for s in result["skipped"]) == ["fridge", "phone", "tablet"]
    assert "no device could install it" in err


async def test_it_fails_when_a_capable_device_fails_otherwise(home: dict[str, Node]) -> None:
    async def full(bundle: Bundle) -> dict[str, Any]:
        raise AppError("no space left for apps")

    home["tablet"].apps.install = full  # type: ignore[method-assign]
    code, result, _ = await _install(home["phone"], NOTES, "all")
    assert code == 1
    assert result["ok"] is False
    assert result["installed"] == ["phone"]
    assert [s["device"] for s in result["skipped"]] == ["fridge"]
    [failed] = result["failed"]
    assert failed["device"] == "tablet"
    assert "no space left" in failed["error"]


async def test_remove_on_all_skips_the_devices_without_the_app(home: dict[str, Node]) -> None:
    code, _, err = await _install(home["phone"], NOTES, "all")
    assert code == 0, err
    phone = str(home["phone"].home.path)
    code, out, err = await accord_async(
        "app", "remove", "notes", "--on", "all", "--json", "--home", phone
    )
    assert code == 0, (out, err)
    result = json.loads(out)
    assert sorted(result["removed"]) == ["phone", "tablet"]
    assert [(s["device"], s["reason"]) for s in result["skipped"]] == [
        ("fridge", "notes is not installed there")
    ]
    assert result["failed"] == []
    code, out, _ = await accord_async(
        "app", "remove", "notes", "--on", "all", "--json", "--home", phone
    )
    assert code == 1  # installed nowhere: nothing was removed
    assert json.loads(out)["removed"] == []
