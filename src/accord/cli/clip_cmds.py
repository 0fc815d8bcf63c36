"""`accord clip`: the universal clipboard (copy here, paste on another device)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from accord.cli.options import HomeOpt, JsonOpt, control_client, home_path
from accord.errors import AccordError

out = Console()
app = typer.Typer(help="The universal clipboard: copy on one device, paste on another.")
MAX_CLIP = 64 * 1024 * 1024  # accord.continuity.clipboard.messages.MAX_CLIP
INLINE = 4 * 1024 * 1024  # larger stdin goes to the node as a file (control line limit)


@app.command("copy")
def copy(
    text: str | None = typer.Argument(None, help="Text to copy."),
    file: Path | None = typer.Option(None, "--file", help="Copy a file (PNG/JPEG: an image)."),
    stdin: bool = typer.Option(False, "--stdin", help="Copy what comes on standard input."),
    host: bool = typer.Option(
        False, "--host", help="Copy what this computer's own clipboard holds (text or image)."
    ),
    sensitive: bool = typer.Option(
        False, "--sensitive", help="Label it S3: only devices that may hold S3 ever see it."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Copy text, an image or a file; the circle hears of it, the bytes move on paste."""
    if (text is not None) + (file is not None) + stdin + host != 1:
        raise AccordError("copy exactly one of TEXT, --file FILE, --stdin or --host")
    client = control_client(home, 30.0)
    params: dict[str, Any] = {"sensitive": sensitive}
    spill: Path | None = None
    if text is not None:
        params["text"] = text
    elif host:
        params["host"] = True
    elif file is not None:
        if not file.is_file():
            raise AccordError(f"no such file: {file}")
        params["path"] = str(file.absolute())
    else:
        data = sys.stdin.buffer.read(MAX_CLIP + 1)
        if len(data) > MAX_CLIP:
            raise AccordError("standard input is over the 64 MiB a copy holds")
        if len(data) <= INLINE:
            params["data_b64"] = base64.b64encode(data).decode()
        else:
            fd, name = tempfile.mkstemp(dir=home_path(home) / "run", prefix="clip-")
            spill = Path(name)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            params["path"] = name
    try:
        result = client.call("clip_copy", **params)
    finally:
        if spill is not None:
            spill.unlink(missing_ok=True)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    item, to = result["item"], result["announced_to"]
    where = ", ".join(to) if to else "no other device"
    out.print(f"copied {item['kind']} ({item['size']} bytes); announced to {where}", markup=False)
    if result.get("warning"):
        Console(stderr=True).print(f"warning: {result['warning']}", markup=False)


@app.command("paste")
def paste(
    output: Path | None = typer.Option(None, "--output", "-o", help="Save it to this file."),
    source: str | None = typer.Option(
        None, "--from", help="The newest copy of this device (default: the newest of any)."
    ),
    home: Path | None = HomeOpt,
) -> None:
    """Paste the newest copy in the circle (it is pulled from where it was copied)."""
    client = control_client(home, 30.0)
    chunks: list[bytes] = []
    item: dict[str, Any] = {}
    for event in client.stream("clip_paste", device=source or ""):
        if "item" in event:
            item = event["item"]
            continue
        try:
            chunks.append(base64.b64decode(event["data_b64"], validate=True))
        except (binascii.Error, KeyError, TypeError):
            raise AccordError("the node sent a garbled clipboard chunk") from None
    data = b"".join(chunks)
    if output is not None:
        partial = output.with_name(output.name + ".part")
        try:
            partial.write_bytes(data)
            os.replace(partial, output)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise AccordError(f"cannot save to {output}: {exc.strerror or exc}") from None
        return
    if item.get("kind") != "text" and sys.stdout.isatty():
        raise AccordError(f"the clipboard holds a {item.get('kind')}; save it with -o FILE")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@app.command("watch")
def watch(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Show copies as the circle announces them (Ctrl-C stops)."""
    with contextlib.suppress(KeyboardInterrupt):
        for event in control_client(home).stream("clip_watch"):
            if as_json:
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
                continue
            item = event["item"]
            label = " sensitive" if item["label"] == "S3" else ""
            name = f" {item['name']}" if item["name"] else ""
            out.print(
                f"{event['kind']}: {item['kind']}{name} ({item['size']} bytes{label}) "
                f"from {item['origin']}",
                markup=False,
                highlight=False,
            )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="clip")
