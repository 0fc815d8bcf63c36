"""The public API is exactly what ``__all__`` names, and every name exists."""

from __future__ import annotations

import subprocess
import sys

import accord


def test_all_names_exist_and_are_sorted() -> None:
    for name in accord.__all__:
        assert hasattr(accord, name), name
    assert list(accord.__all__) == sorted(accord.__all__)


def test_public_names_not_in_all_are_modules_or_private() -> None:
    import types

    extra = [
        n
        for n, v in vars(accord).items()
        if not n.startswith("_") and n not in accord.__all__ and not isinstance(v, types.ModuleType)
    ]
    assert extra == []


def test_every_error_has_the_one_root() -> None:
    errors = [getattr(accord, n) for n in accord.__all__ if n.endswith(("Error", "Running"))]
    errors.append(accord.DeviceUnavailable)
    assert all(issubclass(e, accord.AccordError) for e in errors)


def test_python_dash_m_accord_shows_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "accord", "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    for command in ("init", "up", "devices", "status", "sim"):
        assert command in proc.stdout


def test_every_public_name_is_imported_lazily() -> None:
    """``__all__`` and the table that ``accord.__getattr__`` loads from agree."""
    assert set(accord.__all__) == {*accord._WHERE, "__version__"}
