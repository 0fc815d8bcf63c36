"""The hardware commands' mistakes a user can make, each answered with one clear line
before anything is sent: where the photo goes, what resolution, what size of image."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import msgspec
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


def test_the_cli_knows_the_displays_limits() -> None:
    from accord.cli.hardware_cmds import IMAGE_LIMIT, IMAGE_LIMIT_TEXT, MAX_SHOW_TEXT, MAX_URL
    from accord.hardware.messages import MAX_TEXT, ShowParams
    from accord.hardware.simulated import MAX_IMAGE_BYTES
    from accord.rpc.messages import MAX_PARAMS

    assert IMAGE_LIMIT == MAX_IMAGE_BYTES
    assert f"{MAX_IMAGE_BYTES // 1024} KiB" == IMAGE_LIMIT_TEXT
    # from the CLI an image travels as base64 text in one call's parameters
    assert len(base64.b64encode(bytes(MAX_IMAGE_BYTES))) + 1024 < MAX_PARAMS
    assert MAX_SHOW_TEXT == MAX_TEXT
    url = msgspec.inspect.type_info(ShowParams).fields[2]  # type: ignore[attr-defined]
    assert (url.name, url.type.max_length) == ("url", MAX_URL)
    helped = accord("show", "--help")
    assert helped.returncode == 0, helped.stderr
    assert f"at most {IMAGE_LIMIT_TEXT}" in " ".join(helped.stdout.split())


def test_the_display_refuses_an_oversized_image() -> None:
    from accord.errors import HardwareError
    from accord.hardware.simulated import image_type

    jpeg, limit = b"\xff\xd8\xff", 640 * 1024
    assert image_type(jpeg + bytes(limit - 3)) == "image/jpeg"
    with pytest.raises(HardwareError, match=f"at most {limit} bytes"):
        image_type(jpeg + bytes(limit - 2))


@pytest.mark.parametrize("size", [640 * 1024 + 1, 800_000, 5_000_000, 12_000_000])
def test_show_refuses_an_oversized_image_before_sending(tmp_path: Path, size: int) -> None:
    image = tmp_path / "big.jpg"
    image.write_bytes(b"\xff\xd8\xff" + bytes(size - 3))
    home = tmp_path / "home"  # no node: the check must come before the node is asked
    line = one_error_line(accord("show", "TV", "--image", str(image), "--home", str(home)))
    assert f"is {size} bytes; an image to show is at most 640 KiB (655360 bytes)" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--image", "{tmp}/notes.txt"), "is not a JPEG or PNG image"),
        (("--image", "{tmp}/missing.jpg"), "cannot read"),
        (("x" * 4097,), "the text is 4097 characters; a display shows at most 4096"),
        (("",), "the text to show is empty"),
        (("--url", "ftp://example.com/"), "a url to show starts with http:// or https://"),
        (("--url", "https://example.com/" + "x" * 2048), "at most 2048"),
    ],
)
def test_show_checks_what_it_sends(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    home = tmp_path / "home"
    given = [a.format(tmp=tmp_path) for a in args]
    assert says in one_error_line(accord("show", "TV", *given, "--home", str(home)))
