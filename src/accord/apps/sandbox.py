"""What an app process may touch: a folder of its own, a socket of its own, nothing else.

The node never gives an ability its home (identity key, circle state, stores, the
control socket). Each run gets a fresh folder outside the home::

    <tmp>/accord-app-XXXXXXXX/     the node's; the app's user may only pass through
        code/                      a copy of the installed app (read only)
        tmp/                       the app's TMPDIR and HOME (read-write)
        app.log                    its output (kept in the home when the run ends)
        ctl.sock                   its gate (accord.apps.gate): SuperDevice calls and
                                   the stores its manifest names, nothing more

and the host process confines itself before it imports a line of the app, with
every layer this machine offers (``ACCORD_APP_SANDBOX``: ``auto``, the default;
``off``; or a comma-separated list of ``user`` and ``landlock``):

* **user**: when the node runs as root, the app runs as an unprivileged user
  (``ACCORD_APP_USER``, default ``nobody``): the key file is mode 0600 in a 0700
  home and the control socket 0600 in a 0700 folder, so neither opens for it, and it
  has no capabilities. Python and Accord may live in a folder that user cannot
  reach (e.g. under /root): the host opens those folders first and imports through
  ``/proc/self/fd/N``, so only what was already the interpreter's is reachable.
* **landlock** (Linux 5.13+): the process may then read only Python's and the
  system's libraries, a few files of /etc that name resolution and TLS need, and its
  own ``code/``; write only its ``tmp/`` and /dev/null; on ABI 6+ it cannot signal
  or reach the abstract Unix sockets of processes outside its sandbox. Landlock
  does not cover connecting to a named Unix socket: without the separate user, an
  app that guesses the path of the node's control socket can connect to it.

With neither (not root, no Landlock), the app runs as the node's user: it is not
given the home's path or the control socket, but it could read the key file if it
found it. :func:`protections` says which layers hold here.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from accord.apps.errors import AppError

log = logging.getLogger(__name__)

MODE_ENV: Final = "ACCORD_APP_SANDBOX"
USER_ENV: Final = "ACCORD_APP_USER"
LAYERS: Final = ("user", "landlock")
SOCKET: Final = "ctl.sock"

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every
# architecture.
_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1
_PR_SET_NO_NEW_PRIVS: Final = 38
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_ETC_FILES: Final = ("resolv.conf", "hosts", "nsswitch.conf", "localtime", "gai.conf",
                     "host.conf", "services", "protocols", "mime.types")  # fmt: skip
_ETC_DIRS: Final = ("ssl", "ca-certificates", "pki")
_SYSTEM_DIRS: Final = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_DEVICES: Final = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers, 0 if none (or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        abi = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))  # fmt: skip
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def app_user() -> tuple[str, int, int] | None:
    """The unprivileged user apps run as when the node is root (name, uid, gid), or
    None when the node is not root (then it cannot switch users) or the user is
    missing."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    name = os.environ.get(USER_ENV) or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    return name, entry.pw_uid, entry.pw_gid


def _wanted() -> set[str]:
    raw = (os.environ.get(MODE_ENV) or "auto").strip().lower()
    if raw == "auto":
        return set(LAYERS)
    if raw in ("off", "none", ""):
        return set()
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = wanted - set(LAYERS)
    if unknown:
        raise AppError(
            f"{MODE_ENV}={raw!r} names no sandbox layer {', '.join(sorted(unknown))}; use "
            "auto, off, or a comma-separated list of: user, landlock"
        )
    return wanted


def protections() -> dict[str, Any]:
    """Which layers hold for apps started now: ``user`` (the name, or None),
    ``landlock`` (the ABI used, 0 if none) and ``asked`` (from ``ACCORD_APP_SANDBOX``)."""
    wanted = _wanted()
    user = app_user() if "user" in wanted else None
    abi = landlock_abi() if "landlock" in wanted else 0
    explicit = (os.environ.get(MODE_ENV) or "auto").strip().lower() not in ("auto",)
    if explicit and "user" in wanted and user is None:
        raise AppError(
            f"{MODE_ENV} asks for a separate user, but the node does not run as root (or "
            f"the user {os.environ.get(USER_ENV) or 'nobody'} does not exist)"
        )
    if explicit and "landlock" in wanted and abi == 0:
        raise AppError(f"{MODE_ENV} asks for Landlock, which this kernel does not offer")
    return {"user": user[0] if user else None, "landlock": abi, "asked": sorted(wanted)}


@dataclass
class Sandbox:
    """One run's folder (node side). :meth:`plan` is what the host needs to confine."""

    root: Path
    uid: int | None
    gid: int | None
    landlock: int
    read: list[str]
    """What the app may read besides its code (see :func:`readable_roots`)."""

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def socket(self) -> Path:
        return self.root / SOCKET

    @property
    def log(self) -> Path:
        """The app's stdout and stderr while it runs (opened by the host before it
        confines itself; the node keeps it in the home when the run ends)."""
        return self.root / "app.log"

    def plan(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "landlock": self.landlock,
                "code": str(self.code), "tmp": str(self.tmp), "read": self.read}  # fmt: skip

    def give(self, path: Path) -> None:
        """Hand ``path`` (the gate's socket) to the app's user."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _base() -> str:
    base = tempfile.gettempdir()
    # A Unix socket path has at most 107 bytes: keep ours well under it.
    return base if len(base) <= 60 else "/tmp"  # noqa: S108


def prepare(app_dir: Path, home: Path) -> Sandbox:
    """Make a run's folder: a readable copy of the app, a private tmp, for the app's user.
    Nothing that holds ``home`` is made readable (the app is not told ``home``)."""
    wanted = _wanted()
    user = app_user() if "user" in wanted else None
    abi = landlock_abi() if "landlock" in wanted else 0
    root = Path(tempfile.mkdtemp(prefix="accord-app-", dir=_base()))
    read = readable_roots(home)
    box = Sandbox(root, user[1] if user else None, user[2] if user else None, abi, read)
    try:
        shutil.copytree(app_dir, box.code, symlinks=False)
        for folder, _dirs, files in os.walk(box.code):
            os.chmod(folder, 0o755)  # noqa: S103 (read-only for the app's user: its code)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        box.tmp.mkdir(mode=0o700)
        box.log.touch(mode=0o600)
        if box.uid is not None and box.gid is not None:
            os.chown(box.tmp, box.uid, box.gid)
            # The app's user may pass through the run's folder, not list or change it:
            # its log, socket and code stay where the node put them.
            os.chmod(root, 0o711)  # noqa: S103 (no read or write for others)
    except BaseException:
        box.remove()
        raise
    return box


def read_log(path: Path, limit: int) -> bytes:
    """The last ``limit`` bytes of a run's log: a regular file only, not a link or a
    pipe the app may have put in its place (the node reads it with its own rights)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b""
        f.seek(max(0, info.st_size - limit))
        return f.read(limit)


# --- in the host process, before the app's code is imported ------------------------------


def _open_path(path: str) -> int | None:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None


_warned: set[str] = set()


def _holds(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def readable_roots(home: Path) -> list[str]:
    """Folders (and files) an app may read (computed by the node, whose interpreter and
    paths the host shares): Python's (``sys.path`` but for the node's own script
    folder, the prefixes), the system's libraries, a few /etc files. Never "/", and
    none that holds ``home`` (logged: then only a separate user keeps the app out)."""
    entries = [*sys.path[1:], sys.prefix, sys.base_prefix, sys.exec_prefix, *_SYSTEM_DIRS]
    roots = [os.path.realpath(e) for e in entries if e and os.path.isdir(e)]
    roots += [os.path.join("/etc", name) for name in _ETC_FILES + _ETC_DIRS]
    real_home = os.path.realpath(home)
    out = []
    for root in roots:
        if root == "/" or not os.path.exists(root) or root in out:
            continue
        if _holds(root, real_home):
            if root not in _warned:
                _warned.add(root)
                log.warning("not letting apps read %s: it holds the node's home", root)
            continue
        out.append(root)
    return out


def _fs_mask(abi: int) -> int:
    mask = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        mask |= _REFER
    if abi >= 3:
        mask |= _TRUNCATE
    if abi >= 5:
        mask |= _IOCTL_DEV
    return mask


def _file_rights(mask: int) -> int:
    return mask & (_EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV)


class _Landlock:
    def __init__(self, abi: int) -> None:
        self.libc = _libc()
        self.mask = _fs_mask(abi)
        scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
        attr = _RulesetAttr(self.mask, 0, scoped)
        size = ctypes.c_size_t(ctypes.sizeof(attr))
        fd = self.libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, ctypes.c_uint32(0))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
        self.fd = int(fd)

    def allow(self, fd: int, rights: int) -> None:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        access = rights & self.mask if is_dir else _file_rights(rights & self.mask)
        attr = _PathBeneathAttr(access, fd)
        if self.libc.syscall(_SYS_ADD_RULE, ctypes.c_int(self.fd),
                             ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(attr),
                             ctypes.c_uint32(0)) < 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), "landlock_add_rule failed")

    def restrict(self) -> None:
        if self.libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if self.libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(self.fd), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
        os.close(self.fd)


def confine(plan: dict[str, Any]) -> dict[str, Any]:
    """Confine this process as ``plan`` (from :meth:`Sandbox.plan`) says; returns what
    holds. Run before importing the app; irreversible."""
    code, tmp = str(plan["code"]), str(plan["tmp"])
    here = os.getcwd()
    sys.path[:] = [p for p in sys.path if p and p != "/" and os.path.realpath(p) != here]
    os.chdir(tmp)
    os.environ.update(TMPDIR=tmp, HOME=tmp)
    tempfile.tempdir = tmp
    os.umask(0o077)
    abi = int(plan.get("landlock") or 0)
    uid, gid = plan.get("uid"), plan.get("gid")
    roots = [*[str(r) for r in plan.get("read") or []], code]
    fds = {root: fd for root in roots if (fd := _open_path(root)) is not None}
    landlock = _Landlock(abi) if abi else None
    if landlock is not None:
        for fd in fds.values():
            landlock.allow(fd, _EXECUTE | _READ_FILE | _READ_DIR)
        for path, rights in [(tmp, landlock.mask), *((d, _READ_FILE | _WRITE_FILE | _TRUNCATE)
                                                     for d in _DEVICES),
                             (f"/proc/{os.getpid()}", _READ_FILE | _READ_DIR)]:  # fmt: skip
            fd = _open_path(path)
            if fd is not None:
                landlock.allow(fd, rights)
                os.close(fd)
    if uid is not None and gid is not None:
        _reach_through(fds)
        os.setgroups([])
        os.setresgid(int(gid), int(gid), int(gid))
        os.setresuid(int(uid), int(uid), int(uid))
        if os.getuid() != int(uid) or os.geteuid() != int(uid):
            raise AppError("could not switch to the app's user")
    else:
        for fd in fds.values():
            os.close(fd)
    if landlock is not None:
        landlock.restrict()
    return {"uid": os.getuid(), "landlock": abi}


def _reach_through(fds: dict[str, int]) -> None:
    """Import through ``/proc/self/fd/N`` (opened while we could) so that the app's
    user reaches Python's folders even under a home it may not enter."""

    def remap(path: str) -> str:
        real = os.path.realpath(path)
        best = max((r for r in fds if real == r or real.startswith(r + os.sep)),
                   key=len, default=None)  # fmt: skip
        if best is None:
            return path
        return f"/proc/self/fd/{fds[best]}" + real[len(best) :]

    sys.path[:] = [remap(p) for p in sys.path]
    for module in list(sys.modules.values()):
        where = getattr(module, "__path__", None)
        if isinstance(where, list):
            where[:] = [remap(p) for p in where]
    sys.path_importer_cache.clear()
