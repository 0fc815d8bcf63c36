"""The device home: one folder per device holding its profile, identity and data.

Layout::

    HOME/profile.toml     the device profile (validated at every start)
    HOME/device.toml      device id and display name
    HOME/identity.key     Ed25519 private key, mode 0600
    HOME/data/            persistent state (the device directory, later the stores)
    HOME/run/             node.lock and control.sock while a node runs
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from accord.errors import HomeError, NodeAlreadyRunning, ProfileError
from accord.profile import Profile, builtin_text, load_profile, parse_profile

if TYPE_CHECKING:  # imported where used: the CLI's clients need paths, not keys
    from accord.device.identity import Identity

HOME_ENV = "ACCORD_HOME"
SOCKET_NAME = "control.sock"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path on Linux, less the final NUL


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("accord"))


def resolve_home(home: Path | None) -> Path:
    return (home or default_home()).expanduser().absolute()


@dataclass(frozen=True, slots=True)
class Home:
    path: Path
    profile: Profile
    identity: Identity
    name: str

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / SOCKET_NAME


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\U{ord(c):08x}" for c in escaped)
    return f'"{escaped}"'


def init_home(
    path: Path,
    *,
    profile_name: str | None = None,
    profile_file: Path | None = None,
    name: str | None = None,
    force: bool = False,
) -> Home:
    """Create a device home. Refuses to overwrite an existing one unless ``force``."""
    if (profile_name is None) == (profile_file is None):
        raise ProfileError("give exactly one of --profile NAME or --profile-file FILE")
    if profile_file is not None:
        text = _read_text(profile_file)
        profile = parse_profile(text, str(profile_file))
    else:
        assert profile_name is not None
        text = builtin_text(profile_name)
        profile = parse_profile(text, f"built-in profile {profile_name!r}")
    if name is not None and not (0 < len(name) <= 200 and name.isprintable()):
        raise HomeError("--name must be 1 to 200 printable characters")

    if (path / "device.toml").exists():
        if not force:
            raise HomeError(f"{path} already holds a device home; pass --force to replace it")
        _refuse_if_running(path)
        for sub in ("data", "run"):
            shutil.rmtree(path / sub, ignore_errors=True)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        (path / "data").mkdir(exist_ok=True, mode=0o700)
        (path / "run").mkdir(exist_ok=True, mode=0o700)
        from accord.device.identity import Identity

        identity = Identity.generate()
        identity.save(path / "identity.key")
        (path / "profile.toml").write_text(text)
        display = name or profile.name
        (path / "device.toml").write_text(
            f"device_id = {_toml_string(identity.device_id)}\nname = {_toml_string(display)}\n"
        )
    except OSError as exc:
        raise HomeError(f"cannot create device home {path}: {exc.strerror}") from exc
    return Home(path, profile, identity, display)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from exc


def open_home(path: Path) -> Home:
    """Load and validate a home created by :func:`init_home`."""
    device_file = path / "device.toml"
    if not device_file.exists():
        raise HomeError(
            f"{path} is not a device home; create one with: accord init --home {path} "
            "--profile nokia-x60"
        )
    try:
        meta = tomllib.loads(device_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HomeError(f"{device_file}: cannot read: {exc}") from exc
    profile = load_profile(path / "profile.toml")
    from accord.device.identity import Identity

    identity = Identity.load(path / "identity.key")
    if meta.get("device_id") != identity.device_id:
        raise HomeError(
            f"{device_file}: device_id does not match identity.key; "
            "the home is damaged, re-create it with accord init --force"
        )
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise HomeError(f"{device_file}: missing name")
    return Home(path, profile, identity, name)


class HomeLock:
    """An exclusive lock on a home, held while a node runs on it.

    ``flock`` is released by the kernel when the process dies, even on SIGKILL,
    so a crashed node never leaves a stale lock behind.
    """

    def __init__(self, home: Home) -> None:
        self._path = home.run_dir / "node.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HomeError(f"cannot write to {self._path.parent}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise NodeAlreadyRunning(
                f"a node is already running on {self._path.parent.parent} (pid {pid}); "
                "stop it first, or use another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _refuse_if_running(path: Path) -> None:
    lock = path / "run" / "node.lock"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise NodeAlreadyRunning(f"a node is running on {path}; stop it before --force") from None
    finally:
        os.close(fd)


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise HomeError(
            f"the home path is too long for a control socket ({path}); "
            "use a shorter --home (at most ~90 characters)"
        )
