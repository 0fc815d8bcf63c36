"""The device home: init, open, refusals, and the exclusive node lock."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.device.home import Home, HomeLock, init_home, open_home, resolve_home
from accord.device.identity import Identity, device_id_for
from accord.errors import HomeError, NodeAlreadyRunning, ProfileError
from accord.profile import builtin_names, builtin_text, load_builtin


@pytest.fixture
def home_path(short_tmp: Path) -> Path:
    return short_tmp / "h"


@pytest.fixture
def locks() -> Iterator[list[HomeLock]]:
    """Locks made by a test; all released at its end."""
    made: list[HomeLock] = []
    yield made
    for lock in made:
        lock.release()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_layout(home_path: Path) -> None:
    home = init_home(home_path, profile_name="nokia-x60")
    assert home.path == home_path
    assert (home_path / "profile.toml").read_text() == builtin_text("nokia-x60")
    assert (home_path / "device.toml").is_file()
    key = home_path / "identity.key"
    assert key.is_file()
    assert _mode(key) == 0o600
    assert len(key.read_bytes()) == 32
    assert home.data_dir == home_path / "data"
    assert home.run_dir == home_path / "run"
    assert home.data_dir.is_dir()
    assert home.run_dir.is_dir()
    assert home.socket_path == home_path / "run" / "control.sock"
    assert _mode(home_path) == 0o700
    assert home.profile == load_builtin("nokia-x60")
    assert home.name == "Nokia X60"


def test_device_id_is_derived_from_the_key(home_path: Path) -> None:
    home = init_home(home_path, profile_name="tv")
    identity = Identity.load(home_path / "identity.key")
    assert home.device_id == identity.device_id == device_id_for(identity.public_bytes)
    meta = tomllib.loads((home_path / "device.toml").read_text())
    assert meta == {"device_id": home.device_id, "name": "Living-room TV"}


def test_open_home_is_stable(home_path: Path) -> None:
    created = init_home(home_path, profile_name="midea-fridge", name="Kitchen fridge")
    opened = open_home(home_path)
    again = open_home(home_path)
    assert opened.device_id == again.device_id == created.device_id
    assert opened.name == "Kitchen fridge"
    assert opened.profile == created.profile == load_builtin("midea-fridge")
    assert opened.identity.public_bytes == created.identity.public_bytes


@pytest.mark.parametrize(
    "name", ['Quote " and \\ backslash', "Ünïcödé 🧊", "Kid's room: TV #2 [up]"]
)
def test_names_round_trip(home_path: Path, name: str) -> None:
    init_home(home_path, profile_name="tv", name=name)
    assert open_home(home_path).name == name


def test_profile_name_with_astral_non_printable_round_trips(
    short_tmp: Path, home_path: Path
) -> None:
    profile_file = short_tmp / "tv.toml"
    profile_file.write_text(
        builtin_text("tv").replace('name = "Living-room TV"', 'name = "TV \\U000E0001 one"')
    )
    created = init_home(home_path, profile_file=profile_file)
    assert created.name == "TV \U000e0001 one"
    assert open_home(home_path).name == created.name


def test_init_from_profile_file(short_tmp: Path, home_path: Path) -> None:
    profile_file = short_tmp / "robot.toml"
    profile_file.write_text(
        builtin_text("tv").replace('type = "tv"', 'type = "x-acme-robot"'), encoding="utf-8"
    )
    home = init_home(home_path, profile_file=profile_file)
    assert home.profile.type == "x-acme-robot"
    assert open_home(home_path).profile.type == "x-acme-robot"


def test_init_needs_exactly_one_profile_source(short_tmp: Path, home_path: Path) -> None:
    with pytest.raises(ProfileError, match="exactly one"):
        init_home(home_path)
    with pytest.raises(ProfileError, match="exactly one"):
        init_home(home_path, profile_name="tv", profile_file=short_tmp / "x.toml")
    assert not home_path.exists()


@pytest.mark.parametrize("name", ["", "x" * 201, "tab\there", "new\nline"])
def test_init_refuses_bad_names(home_path: Path, name: str) -> None:
    with pytest.raises(HomeError, match="--name"):
        init_home(home_path, profile_name="tv", name=name)
    assert not home_path.exists()


def test_init_refuses_an_existing_home(home_path: Path) -> None:
    first = init_home(home_path, profile_name="tv")
    with pytest.raises(HomeError, match="--force") as info:
        init_home(home_path, profile_name="laptop")
    assert str(home_path) in str(info.value)
    opened = open_home(home_path)
    assert opened.device_id == first.device_id
    assert opened.profile == load_builtin("tv")


def test_init_force_replaces(home_path: Path) -> None:
    first = init_home(home_path, profile_name="tv")
    (home_path / "data" / "directory.db").write_bytes(b"old state")
    second = init_home(home_path, profile_name="laptop", force=True)
    assert second.device_id != first.device_id
    opened = open_home(home_path)
    assert opened.device_id == second.device_id
    assert opened.profile == load_builtin("laptop")
    assert not (home_path / "data" / "directory.db").exists()
    assert _mode(home_path / "identity.key") == 0o600


def test_init_force_refuses_while_a_node_runs(home_path: Path, locks: list[HomeLock]) -> None:
    first = init_home(home_path, profile_name="tv")
    lock = HomeLock(first)
    locks.append(lock)
    lock.acquire()
    with pytest.raises(NodeAlreadyRunning):
        init_home(home_path, profile_name="tv", force=True)
    assert open_home(home_path).device_id == first.device_id


def test_unknown_profile_lists_builtins(home_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        init_home(home_path, profile_name="nokia-x99")
    message = str(info.value)
    assert "nokia-x99" in message
    for name in builtin_names():
        assert name in message
    assert not home_path.exists()


def test_init_with_invalid_profile_file(short_tmp: Path, home_path: Path) -> None:
    bad = short_tmp / "bad.toml"
    bad.write_text(builtin_text("tv").replace('security_level = "SL2"', 'security_level = "SL9"'))
    with pytest.raises(ProfileError) as info:
        init_home(home_path, profile_file=bad)
    assert str(bad) in str(info.value)
    assert "$.security_level" in str(info.value)
    assert not home_path.exists()


def test_init_with_missing_profile_file(short_tmp: Path, home_path: Path) -> None:
    missing = short_tmp / "missing.toml"
    with pytest.raises(ProfileError, match="cannot read profile") as info:
        init_home(home_path, profile_file=missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o007])
def test_open_refuses_a_key_readable_by_others(home_path: Path, mode: int) -> None:
    init_home(home_path, profile_name="tv")
    key = home_path / "identity.key"
    key.chmod(mode)
    with pytest.raises(HomeError) as info:
        open_home(home_path)
    message = str(info.value)
    assert "chmod 600" in message
    assert str(key) in message
    key.chmod(0o600)
    assert open_home(home_path).name == "Living-room TV"


def test_open_a_non_home_folder(short_tmp: Path) -> None:
    with pytest.raises(HomeError, match="accord init") as info:
        open_home(short_tmp)
    assert "not a device home" in str(info.value)
    with pytest.raises(HomeError, match="accord init"):
        open_home(short_tmp / "does-not-exist")


def test_open_a_damaged_home(home_path: Path) -> None:
    init_home(home_path, profile_name="tv")
    other = Identity.generate()
    other.save(home_path / "identity.key")
    with pytest.raises(HomeError, match="does not match"):
        open_home(home_path)


def test_open_with_a_truncated_key(home_path: Path) -> None:
    init_home(home_path, profile_name="tv")
    (home_path / "identity.key").write_bytes(b"short")
    with pytest.raises(HomeError, match="32 bytes"):
        open_home(home_path)


def test_open_with_an_invalid_profile(home_path: Path) -> None:
    init_home(home_path, profile_name="tv")
    profile = home_path / "profile.toml"
    profile.write_text(profile.read_text().replace('power = "mains"', "power = 5"))
    with pytest.raises(ProfileError) as info:
        open_home(home_path)
    assert str(profile) in str(info.value)
    assert "$.power" in str(info.value)


def test_open_with_a_malformed_device_file(home_path: Path) -> None:
    init_home(home_path, profile_name="tv")
    (home_path / "device.toml").write_text("device_id = [")
    with pytest.raises(HomeError, match=r"device\.toml"):
        open_home(home_path)


def test_lock_is_exclusive(home_path: Path, locks: list[HomeLock]) -> None:
    home = init_home(home_path, profile_name="tv")
    first, second = HomeLock(home), HomeLock(open_home(home_path))
    locks.extend([first, second])
    first.acquire()
    assert (home.run_dir / "node.lock").read_text() == str(os.getpid())
    with pytest.raises(NodeAlreadyRunning) as info:
        second.acquire()
    assert str(os.getpid()) in str(info.value)
    assert str(home_path) in str(info.value)
    first.release()
    first.release()  # idempotent
    second.acquire()
    with pytest.raises(NodeAlreadyRunning):
        first.acquire()
    second.release()
    first.acquire()


def test_lock_recreates_a_missing_run_folder(home_path: Path, locks: list[HomeLock]) -> None:
    home = init_home(home_path, profile_name="tv")
    home.run_dir.rmdir()
    lock = HomeLock(home)
    locks.append(lock)
    lock.acquire()
    assert (home.run_dir / "node.lock").exists()


def test_lock_in_an_unwritable_place(short_tmp: Path) -> None:
    blocker = short_tmp / "file"
    blocker.write_text("not a folder")
    home = Home(blocker / "h", load_builtin("tv"), Identity.generate(), "TV")
    with pytest.raises(HomeError, match="cannot write"):
        HomeLock(home).acquire()


def test_init_into_an_unwritable_place(short_tmp: Path) -> None:
    blocker = short_tmp / "file"
    blocker.write_text("not a folder")
    target = blocker / "h"
    with pytest.raises(HomeError) as info:
        init_home(target, profile_name="tv")
    message = str(info.value)
    assert "cannot create device home" in message
    assert str(target) in message
    assert blocker.read_text() == "not a folder"


def test_resolve_home_uses_the_environment(short_tmp: Path) -> None:
    # conftest points ACCORD_HOME at a folder under short_tmp.
    assert resolve_home(None) == short_tmp / "default-home"
    assert resolve_home(Path("relative")) == Path.cwd() / "relative"
