"""Commands that use another device's hardware: capture, show, sensors, setpoint."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError, RemoteError

out = Console()
err = Console(stderr=True)
DeviceArg = typer.Argument(..., help="A circle member: name, id or id prefix.")
MAX_SIDE = 65535  # the largest side a JPEG can have
# What a display takes: accord.hardware.simulated.MAX_IMAGE_BYTES and the limits of
# accord.hardware.messages.ShowParams (not imported here, so the command starts fast;
# tests/test_cli_hardware_errors.py keeps them equal).
IMAGE_LIMIT = 640 * 1024
IMAGE_LIMIT_TEXT = "640 KiB"
MAX_SHOW_TEXT = 4096
MAX_URL = 2048

# What each hardware service needs (capability names, as profiles list them), and
# how to say so: "Laptop has no sensors; devices with sensors: Midea Refrigerator".
NEEDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "camera": (("camera",), "camera", "a camera"),
    "display": (("display",), "display", "a display"),
    "sensors": (("sensors", "door-sensor"), "sensors", "sensors"),
    "thermostat": (("temperature-control",), "temperature control", "temperature control"),
}


def _call(home: Path | None, device: str, target: str, args: Any, timeout: float = 10.0) -> Any:
    client = control_client(home, timeout + 5)
    with _needs(home, device, target):
        return client.call("call", device=device, target=target, args=args, timeout=timeout)


def _stream(
    home: Path | None, device: str, target: str, args: Any, timeout: float
) -> Iterator[Any]:
    client = control_client(home, 15.0)
    items = client.stream("stream", device=device, target=target, args=args, timeout=timeout)
    with _needs(home, device, target):
        yield from items


@contextlib.contextmanager
def _needs(home: Path | None, device: str, target: str) -> Iterator[None]:
    """Say which hardware the device lacks, and who has it, instead of listing the
    methods it does serve."""
    try:
        yield
    except RemoteError as exc:
        service = target.partition(".")[0]
        unknown = exc.remote_type == "UnknownMethod" or (
            exc.remote_type == "RemoteError" and exc.remote_message.startswith("UnknownMethod:")
        )
        if not unknown or service not in NEEDS:
            raise
        raise AccordError(_lacks(home, device, service)) from None


def _lacks(home: Path | None, device: str, service: str) -> str:
    caps, thing, having = NEEDS[service]
    client = control_client(home, 5.0)
    name, device_id = device, ""
    with contextlib.suppress(AccordError):  # the name as the device gives it, if it answers
        info = client.call("call", device=device, target="device.info", args=None, timeout=3.0)
        name, device_id = str(info["name"]), str(info["device_id"])
    try:
        records = client.call("devices")
    except AccordError:
        records = []
    others = sorted(
        r["name"]
        for r in records
        if r.get("online")
        and r.get("standing") in ("self", "member")
        and r.get("device_id") != device_id
        and any(c in r.get("capabilities", []) for c in caps)
    )
    if not others:
        return f"{name} has no {thing}, and no other device in the circle has {having}"
    return f"{name} has no {thing}; devices with {having}: {', '.join(others)}"


def _resolution(text: str | None) -> tuple[int, int]:
    """WIDTHxHEIGHT in pixels; None for the camera's full resolution."""
    if text is None:
        return 0, 0
    m = re.fullmatch(r"\s*([-+]?\d+)\s*[xX]\s*([-+]?\d+)\s*", text)
    if m is None:
        raise AccordError(f"--resolution is WIDTHxHEIGHT in pixels, e.g. 4000x3000, not {text!r}")
    # (more than 9 digits is huge anyway, and int() refuses thousands of them)
    width, height = (int(side) if len(side) <= 9 else MAX_SIDE + 1 for side in (m[1], m[2]))
    full = "leave out --resolution for the camera's full resolution"
    if width < 1 or height < 1:
        raise AccordError(f"--resolution {text.strip()}: each side is at least 1 pixel ({full})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise AccordError(
            f"--resolution {text.strip()}: each side is at most {MAX_SIDE} pixels ({full})"
        )
    return width, height


def _check_output(output: Path) -> None:
    """Fail before capturing if the photo could not be saved at ``output``."""
    folder = output.parent
    where = f"cannot save the photo to {output}"
    if output.is_dir():
        raise AccordError(f"{where}: it is a folder; name a file, e.g. {output / 'photo.jpg'}")
    if output.exists() and not output.is_file():  # a device or pipe would be replaced
        raise AccordError(f"{where}: it is not a regular file")
    if not folder.exists():
        raise AccordError(f"{where}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise AccordError(f"{where}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AccordError(f"{where}: the folder {folder} is not writable")


def capture(
    device: str = DeviceArg,
    output: Path = typer.Option(..., "--output", "-o", help="Where to save the JPEG."),
    resolution: str | None = typer.Option(
        None, "--resolution", "-r", help="WIDTHxHEIGHT (default: the camera's full resolution)."
    ),
    camera: str | None = typer.Option(
        None,
        "--camera",
        help="Which camera: rear, front, external (default: the rear one, or the only one).",
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Take a photo with a device's camera and save it, with a progress bar."""
    width, height = _resolution(resolution)
    _check_output(output)
    args = {"camera": camera or "", "width": width, "height": height}  # "": the main camera
    partial = output.with_name(output.name + ".part")
    started = time.monotonic()
    header: dict[str, Any] | None = None
    written = 0
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,  # no bar (nor blank line) in logs
    )
    try:
        with partial.open("wb") as f, progress:
            task = progress.add_task(f"capturing on {device}", total=None)
            for item in _stream(home, device, "camera.capture", args, 30.0):
                if isinstance(item, dict):
                    header = item
                    progress.update(task, total=item["total_bytes"])
                    continue
                try:
                    chunk = base64.b64decode(item, validate=True)
                except (binascii.Error, TypeError):
                    raise AccordError("the node sent a garbled capture chunk") from None
                f.write(chunk)
                written += len(chunk)
                progress.update(task, completed=written)
        if header is None or written != header["total_bytes"]:
            raise AccordError(f"the capture ended after {written} bytes; try again")
        os.replace(partial, output)
    except OSError as exc:  # the disk filled up, the folder went away...
        raise AccordError(f"cannot save the photo to {output}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    seconds = time.monotonic() - started
    summary = {
        "path": str(output),
        "width": header["width"],
        "height": header["height"],
        "bytes": written,
        "seconds": round(seconds, 3),
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    out.print(
        f"saved {output} ({header['width']}x{header['height']}, {written / 1e6:.1f} MB) "
        f"in {seconds:.1f} s",
        highlight=False,
        markup=False,
    )


def show(
    device: str = DeviceArg,
    text: str | None = typer.Argument(
        None, help=f"Text to show (at most {MAX_SHOW_TEXT} characters)."
    ),
    image: Path | None = typer.Option(
        None, "--image", help=f"A JPEG or PNG file to show (at most {IMAGE_LIMIT_TEXT})."
    ),
    url: str | None = typer.Option(
        None, "--url", help=f"A web page to show (http or https, at most {MAX_URL} characters)."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show text, an image or a web page on a device's display."""
    given = [x for x in (text, image, url) if x is not None]
    if len(given) != 1:
        raise AccordError("give exactly one of TEXT, --image FILE or --url URL")
    args: dict[str, Any]
    if image is not None:
        args = {"image": base64.b64encode(_read_image(image)).decode()}
    elif text is not None:
        if not text:
            raise AccordError("the text to show is empty")
        if len(text) > MAX_SHOW_TEXT:
            raise AccordError(
                f"the text is {len(text)} characters; a display shows at most {MAX_SHOW_TEXT}"
            )
        args = {"text": text}
    else:
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise AccordError(f"a url to show starts with http:// or https://, not {url!r}")
        if len(url) > MAX_URL:
            raise AccordError(f"the url is {len(url)} characters; at most {MAX_URL}")
        args = {"url": url}
    shown = _call(home, device, "display.show", args)
    if as_json:
        shown.pop("image", None)
        sys.stdout.write(json.dumps(shown) + "\n")
        return
    what = shown.get("text") or shown.get("url") or f"an image ({shown.get('image_type')})"
    out.print(f"{device} shows: {what}", highlight=False, markup=False)


def _read_image(path: Path) -> bytes:
    """The bytes of a JPEG or PNG file within the display's limit, checked before
    anything is sent (and before a huge file is read)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > IMAGE_LIMIT:
                raise AccordError(
                    f"{path} is {size} bytes; an image to show is at most {IMAGE_LIMIT_TEXT} "
                    f"({IMAGE_LIMIT} bytes): scale it down or save it at a lower quality"
                )
            data = f.read(IMAGE_LIMIT + 1)
    except OSError as exc:
        raise AccordError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > IMAGE_LIMIT:  # grew while we read it
        raise AccordError(f"{path} is over the {IMAGE_LIMIT_TEXT} limit of an image to show")
    if not data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        raise AccordError(f"{path} is not a JPEG or PNG image")
    return data


def sensors(
    device: str = DeviceArg,
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep showing changes."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between readings."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Read a device's sensors: cabinet temperatures, doors and other readings."""
    if not watch:
        reading = _call(home, device, "sensors.read", None)
        if as_json:
            sys.stdout.write(json.dumps(reading) + "\n")
        else:
            out.print(sensors_table(device, reading))
        return
    args = {"interval_s": interval, "changes_only": True}
    items = _stream(home, device, "sensors.watch", args, 3600.0)
    if as_json:
        for reading in items:
            sys.stdout.write(json.dumps(reading) + "\n")
            sys.stdout.flush()
        return
    with Live(console=out, auto_refresh=False) as live:
        for reading in items:
            live.update(sensors_table(device, reading), refresh=True)


def sensors_table(device: str, reading: dict[str, Any]) -> Table:
    table = Table(title=Text(f"{device} sensors"), title_justify="left")
    for col in ("Sensor", "Reading", "Setpoint", "Door", "Compressor"):
        table.add_column(col)
    doors = reading.get("doors", {})
    for cab in reading.get("cabinets", []):
        name = cab["name"]
        door = doors.get(name)
        table.add_row(
            Text(name),
            f"{cab['temperature_c']:.1f} °C",
            f"{cab['setpoint_c']:g} °C",
            "[bold red]open[/]" if door else ("closed" if door is not None else ""),
            "on" if cab["compressor_on"] else "off",
        )
    cabinets = {c["name"] for c in reading.get("cabinets", [])}
    for door, is_open in doors.items():
        if door not in cabinets:
            state = "[bold red]open[/]" if is_open else "closed"
            table.add_row(Text(f"door {door}"), "", "", state, "")
    for kind, value in reading.get("values", {}).items():
        table.add_row(Text(kind), f"{value:g}", "", "", "")
    return table


def setpoint(
    device: str = DeviceArg,
    cabinet: str = typer.Argument(..., help="Cabinet name, e.g. fridge or freezer."),
    celsius: float = typer.Argument(..., help="Target temperature in °C (negatives allowed)."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Set a refrigerator cabinet's temperature within its allowed range."""
    result = _call(home, device, "thermostat.set", {"cabinet": cabinet, "celsius": celsius})
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(
        f"{device} {result['cabinet']}: setpoint {result['setpoint_c']:g} °C "
        f"(allowed {result['min_c']:g}..{result['max_c']:g} °C)",
        highlight=False,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    for fn in (capture, show, sensors):
        app.command()(fn)
    # negative temperatures must not be taken for options
    app.command(context_settings={"ignore_unknown_options": True})(setpoint)
