"""`accord kv`: the replicated key-value stores of the running node."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError

out = Console()
app = typer.Typer(
    help="Replicated key-value stores, synced across the circle.",
    no_args_is_help=True,
)
StoreArg = typer.Argument(..., help="Store name: 1-64 of a-z, 0-9, '.', '_', '-'.")
KeyArg = typer.Argument(..., help="Key (at most 1 KiB of UTF-8).")
DeviceOpt = typer.Option(
    None, "--device", help="Per-device stores: whose namespace (a member, or 'self')."
)


def _json(result: Any) -> None:
    sys.stdout.write(json.dumps(result) + "\n")


@app.command("stores")
def stores(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List this device's stores: kind, label, keys, and the members they sync with."""
    result = control_client(home).call("kv_stores")
    if as_json:
        _json(result)
        return
    table = Table(title="stores on this device", title_justify="left")
    for col in ("Store", "Kind", "Label", "Merge", "Keys", "Tombstones", "Synced with (online)"):
        table.add_column(col)
    for s in result["stores"]:
        table.add_row(
            s["name"],
            s["kind"],
            s["label"],
            s["merge"],
            str(s["keys"]),
            str(s["tombstones"]),
            str(len(s["shared_with"])),
        )
    out.print(table)


def _read_value(value: str) -> bytes:
    """VALUE is text, ``@file`` for a file's bytes, ``@-`` for standard input."""
    if value.startswith("@@"):
        return value[1:].encode()
    if value == "@-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise AccordError(f"cannot read {path}: {exc.strerror}") from exc
    return value.encode()


@app.command("put")
def put(
    store: str = StoreArg,
    key: str = KeyArg,
    value: str = typer.Argument(
        ..., help="Text, @FILE for a file's bytes, @- for stdin (@@ for a literal @)."
    ),
    kind: str = typer.Option("shared", "--kind", help="For a new store: shared or per-device."),
    label: str = typer.Option("S1", "--label", help="For a new store: data label S1..S4."),
    merge: str = typer.Option(
        "", "--merge", help="For a new store: counter or set-union (default last-writer-wins)."
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write a key (creating the store if it is new). On disk when this returns."""
    data = _read_value(value)
    result = control_client(home).call(
        "kv_put",
        store=store,
        key=key,
        value_b64=base64.b64encode(data).decode(),
        kind=kind,
        label=label,
        merge=merge,
    )
    if as_json:
        _json(result)
    else:
        out.print(f"{store}/{key}: {result['bytes']} bytes written")


@app.command("get")
def get(
    store: str = StoreArg,
    key: str = KeyArg,
    device: str | None = DeviceOpt,
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print a key's value (raw bytes, so it can be redirected to a file)."""
    result = control_client(home).call("kv_get", store=store, key=key, device=device)
    if as_json:
        _json(result)
        return
    if not result["found"]:
        raise AccordError(f"no key {key!r} in store {store!r}; see: accord kv ls {store}")
    data = base64.b64decode(result["value_b64"])
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty() and not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


@app.command("del")
def delete(
    store: str = StoreArg,
    key: str = KeyArg,
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete a key (everywhere: the delete wins over older writes)."""
    result = control_client(home).call("kv_del", store=store, key=key)
    if as_json:
        _json(result)
    elif result["existed"]:
        out.print(f"{store}/{key}: deleted")
    else:
        out.print(f"{store}/{key}: was not there")


@app.command("ls")
def ls(
    store: str = StoreArg,
    prefix: str = typer.Argument("", help="Only keys starting with this."),
    device: str | None = DeviceOpt,
    values: bool = typer.Option(False, "--values", help="Show values too."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List a store's keys."""
    result = control_client(home).call(
        "kv_ls", store=store, prefix=prefix, device=device, values=values or as_json
    )
    if as_json:
        _json(result)
        return
    table = Table(title=f"{store} {prefix}".strip(), title_justify="left")
    per_device = any("device" in e for e in result["entries"])
    if per_device:
        table.add_column("Device")
    table.add_column("Key")
    table.add_column("Bytes", justify="right")
    if values:
        table.add_column("Value")
    for e in result["entries"]:
        cells = [e["device"][:10]] if per_device else []
        cells += [e["key"], str(e["bytes"])]
        if values:
            cells.append(e.get("text", "(binary)")[:80])
        table.add_row(*cells)
    out.print(table)
    if result["truncated"]:
        out.print("[yellow]more keys than shown: narrow it with a prefix[/]")


@app.command("watch")
def watch(
    store: str = StoreArg,
    prefix: str = typer.Argument("", help="Only keys starting with this."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print changes as they happen, here or on any member (Ctrl-C stops)."""
    client = control_client(home, timeout=3600)
    for event in client.stream("kv_watch", store=store, prefix=prefix):
        if as_json:
            _json(event)
            sys.stdout.flush()
            continue
        for c in event["changes"]:
            what = "deleted" if c["deleted"] else c.get("text", "(binary)")[:80]
            out.print(f"{event['source']:>8} {c['origin'][:10]} {c['key']} = {what}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="kv")
