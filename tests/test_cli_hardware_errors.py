"""The hardware commands' mistakes a user can make, each answered with one clear line
before anything is sent: where the photo goes, what resolution, what size of image."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import accord


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line a failed command printed (no traceback)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing/x.jpg", "the folder {tmp}/missing does not exist"),
        ("file.txt/x.jpg", "{tmp}/file.txt is not a folder"),
        (".", "it is a folder"),
        ("fifo", "it is not a regular file"),
        pytest.param(
            "locked/x.jpg",
            "the folder {tmp}/locked is not writable",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere"),
        ),
    ],
)
def test_capture_checks_where_the_photo_goes_before_capturing(
    tmp_path: Path, where: str, says: str
) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "locked").mkdir(mode=0o500)
    # no node runs on this home: the check must come before the node is asked
    home = tmp_path / "home"
    proc = accord("capture", "Phone", "-o", str(tmp_path / where), "--home", str(home))
    line = one_error_line(proc)
    assert says.format(tmp=tmp_path) in line
    assert not list(tmp_path.glob("**/*.part"))


@pytest.mark.parametrize(
    ("resolution", "says"),
    [
        ("0x0", "each side is at least 1 pixel"),
        ("1600x0", "each side is at least 1 pixel"),
        ("-5x3", "each side is at least 1 pixel"),
        ("70000x10", "each side is at most 65535 pixels"),
        ("123456789012345678901234567890x1", "each side is at most 65535 pixels"),
        ("4000", "is WIDTHxHEIGHT in pixels"),
        ("bigxbig", "is WIDTHxHEIGHT in pixels"),
        ("4000x3000x2", "is WIDTHxHEIGHT in pixels"),
    ],
)
def test_capture_rejects_a_nonsense_resolution_before_capturing(
    tmp_path: Path, resolution: str, says: str
) -> None:
    home = tmp_path / "home"  # no node: the check must come before the node is asked
    proc = accord(
        "capture", "Phone", "-o", str(tmp_path / "x.jpg"), f"--resolution={resolution}",
        "--home", str(home),
    )  # fmt: skip
    assert says in one_error_line(proc)
