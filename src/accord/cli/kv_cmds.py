"""`accord kv`: the replicated key-value stores of the running node."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError, ValueTooLarge

out = Console()
# A store value's limit: accord.data.limits.MAX_VALUE_BYTES (not imported here, so the
# command starts fast; tests/test_cli_kv.py keeps the two equal).
VALUE_LIMIT = 4 * 1024 * 1024
VALUE_LIMIT_TEXT = "4 MiB"
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
    """List this device's stores: kind, label, keys, and the members they sync with;
    any that conflict with the circle's store of their name; and the circle's stores
    this device does not hold."""
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
    _print_identity(result)


def _print_identity(result: dict[str, Any]) -> None:
    """Under `kv stores`: our stores that conflict with the circle's, members that hold
    another store of one of our names, and the circle's stores not on this device."""
    for s in result["stores"]:
        if s.get("conflict"):
            out.print(Text(f"{s['name']}: {s['conflict']}", style="yellow"), soft_wrap=True)
        for o in s.get("others") or ():
            line = (
                f"{s['name']}: {o['device_name']} holds another store of this name "
                f"({o['kind']}, {o['label']}, {o['merge']}): not synced with it"
            )
            out.print(Text(line, style="yellow"), soft_wrap=True)
    elsewhere = result.get("elsewhere") or []
    if not elsewhere:
        return
    table = Table(title="in the circle, not on this device", title_justify="left")
    for col in ("Store", "Kind", "Label", "Merge", "Declared by", "Here"):
        table.add_column(col)
    for e in elsewhere:
        here = "syncs when a holder is online" if e["may_hold"] else "may not be held here"
        table.add_row(
            e["name"], e["kind"], e["label"], e["merge"], e["declared_by_name"], Text(here)
        )
    out.print(table)


def _too_large(size: int | str) -> ValueTooLarge:
    return ValueTooLarge(
        f"the value is {size} bytes, over the {VALUE_LIMIT_TEXT} ({VALUE_LIMIT} byte) limit "
        "of a store value: split it over several keys"
    )


def _read_value(value: str) -> bytes:
    """VALUE is text, ``@file`` for a file's bytes, ``@-`` for standard input; more
    than VALUE_LIMIT bytes is refused before it is read in full."""
    if value.startswith("@@"):
        data = value[1:].encode()
    elif value == "@-":
        data = sys.stdin.buffer.read(VALUE_LIMIT + 1)
        if len(data) > VALUE_LIMIT:
            raise _too_large("more than " + str(VALUE_LIMIT))
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > VALUE_LIMIT:
                    raise _too_large(size)
                data = f.read(VALUE_LIMIT + 1)
        except OSError as exc:
            raise AccordError(f"cannot read {path}: {exc.strerror}") from exc
    else:
        data = value.encode()
    if len(data) > VALUE_LIMIT:
        raise _too_large(len(data))
    return data


@app.command("put")
def put(
    store: str = StoreArg,
    key: str = KeyArg,
    value: str = typer.Argument(
        ...,
        help="Text, @FILE for a file's bytes, @- for stdin (@@ for a literal @); "
        f"at most {VALUE_LIMIT_TEXT}.",
    ),
    kind: str | None = typer.Option(
        None,
        "--kind",
        help="For a new store: shared or per-device (default: the circle's, else shared).",
    ),
    label: str | None = typer.Option(
        None, "--label", help="For a new store: data label S1..S4 (default: the circle's, else S1)."
    ),
    merge: str | None = typer.Option(
        None,
        "--merge",
        help="For a new store: counter or set-union (default: the circle's, else "
        "last-writer-wins).",
    ),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write a key (creating the store if it is new). On disk when this returns.

    A value is at most 4 MiB; a key at most 1 KiB of UTF-8. A store's name, kind,
    label and merge are the circle's: a new store takes the settings of the circle's
    store of that name, and other settings, or a label this device may not hold, are
    refused."""
    data = _read_value(value)
    client = control_client(home)
    result = client.call(
        "kv_put",
        store=store,
        key=key,
        value_b64=base64.b64encode(data).decode(),
        kind=kind,
        label=label,
        merge=merge,
    )
    from accord.cli.trust_cmds import removed_message

    removed = removed_message(client)  # then nobody receives it
    if as_json:
        _json({**result, "local_only": True} if removed else result)
    else:
        where = " on this device only" if removed else ""
        out.print(
            f"{store}/{key}: {result['bytes']} bytes written{where}", markup=False, highlight=False
        )
    if removed:
        Console(stderr=True).print(Text(removed, style="bold yellow"))


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
    _warn_conflict(result)
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
        out.print(f"{store}/{key}: deleted", markup=False, highlight=False)
    else:
        out.print(f"{store}/{key}: was not there", markup=False, highlight=False)


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
    table = Table(title=Text(f"{store} {prefix}".strip()), title_justify="left")
    per_device = any("device" in e for e in result["entries"])
    if per_device:
        table.add_column("Device")
    table.add_column("Key")
    table.add_column("Bytes", justify="right")
    if values:
        table.add_column("Value")
    for e in result["entries"]:
        cells = [Text(e.get("device_name") or e["device"][:10])] if per_device else []
        cells += [Text(e["key"]), Text(str(e["bytes"]))]
        if values:
            cells.append(_preview(e))
        table.add_row(*cells)
    out.print(table)
    if result["truncated"]:
        out.print("[yellow]more keys than shown: narrow it with a prefix[/]")
    _warn_conflict(result)


def _warn_conflict(result: dict[str, Any]) -> None:
    """On stderr: this device's store lost to the circle's store of its name."""
    if result.get("conflict"):
        Console(stderr=True).print(
            Text("warning: " + result["conflict"], style="yellow"), soft_wrap=True
        )


def _preview(entry: dict[str, Any], width: int = 80) -> Text:
    """A value as one line of at most ``width`` characters: its text, control
    characters escaped, or its size if it is binary."""
    text = entry.get("text")
    if text is None and "value_b64" in entry:
        with contextlib.suppress(UnicodeDecodeError):
            text = base64.b64decode(entry["value_b64"]).decode("utf-8")
    if text is None:
        return Text(f"(binary, {entry.get('bytes', '?')} bytes)", style="dim")
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[: width + 1])
    return Text(shown[:width] + ("…" if len(shown) > width else ""))


def _change_line(event: dict[str, Any], change: dict[str, Any]) -> Text:
    """``12:03:04.123  Nokia X60  todo = buy milk``, or ``... todo (deleted)`` in red."""
    at = float(change.get("at") or time.time())
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    who = change.get("origin_name") or change["origin"][:10]
    line = Text()
    line.append(stamp, style="dim")
    line.append(f"  {who:<16}  ", style="cyan")
    if change.get("device"):  # a per-device store: whose namespace the key is in
        owner = change.get("device_name") or change["device"][:10]
        line.append(f"{owner}: ", style="dim")
    line.append(change["key"], style="bold")
    if change.get("op") == "delete" or change.get("deleted"):
        line.append(" (deleted)", style="bold red")
    else:
        line.append(" = ")
        line.append_text(_preview(change))
    if event.get("source") == "catch-up":
        line.append("  (caught up)", style="dim")
    return line


@app.command("watch")
def watch(
    store: str = StoreArg,
    prefix: str = typer.Argument("", help="Only keys starting with this."),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print changes as they happen, here or on any member (Ctrl-C stops).

    Each line shows when the change was written, by which device, and the key's new
    value or (deleted). With --json, one change set per line; each change has op
    "put" or "delete", at (seconds), origin and origin_name."""
    client = control_client(home, timeout=3600)
    for event in client.stream("kv_watch", store=store, prefix=prefix):
        if as_json:
            _json(event)
            sys.stdout.flush()
            continue
        for change in event["changes"]:
            out.print(_change_line(event, change), highlight=False, soft_wrap=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="kv")
