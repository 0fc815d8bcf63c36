"""``accord devices`` prints one line per device that fits an 80-column terminal."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from accord.cli.render import devices_table
from accord.profile import load_builtin


def _records() -> list[dict[str, Any]]:
    records = []
    now = time.time()
    for i, profile in enumerate(("nokia-x60", "tablet", "laptop", "tv", "midea-fridge")):
        p = load_builtin(profile)
        records.append(
            {
                "name": p.name,
                "type": p.type,
                "vendor": p.vendor,
                "model": p.model,
                "device_id": f"{i}abcdefghijklmnopqrstuvwxy",
                "online": profile != "tv",
                "last_seen": now - 300,
                "standing": {"laptop": "self", "tablet": "stranger"}.get(profile, "member"),
                "is_self": profile == "laptop",
                "pairing": profile == "tablet",
                "summary": p.summary(),
                "capabilities": p.capabilities(),
            }
        )
    return records


def _render(width: int) -> list[str]:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(devices_table(_records()))
    return console.export_text(styles=False).rstrip("\n").split("\n")


def test_devices_table_fits_80_columns_one_line_per_device() -> None:
    records = _records()
    lines = _render(80)
    assert max(len(ln) for ln in lines) <= 80
    header = next(ln for ln in lines if ln.startswith("Name"))
    body = [ln for ln in lines[lines.index(header) + 2 :] if ln.strip()]
    assert len(body) == len(records)  # nothing wrapped onto a second line
    columns = ("Name", "Type", "Id", "Trust", "Seen", "Has")
    at = {c: header.index(c) for c in columns}
    expected = {
        "Nokia X60": ("phone", "0abcdefghi", "member", "online"),
        "Tablet": ("tablet", "1abcdefghi", "pairing open", "online"),
        "Laptop": ("laptop", "2abcdefghi", "this device", "online"),
        "Living-room TV": ("tv", "3abcdefghi", "member", "5 min ago"),
        "Midea Refrigerator": ("refrigerator", "4abcdefghi", "member", "online"),
    }
    for line, r in zip(body, records, strict=True):
        values = (r["name"], *expected[r["name"]], r["summary"][:4])
        for column, value in zip(columns, values, strict=True):
            assert line[at[column] :].startswith(value), (column, line)
    wide = _render(140)
    assert any(records[0]["summary"] in ln for ln in wide)  # whole when there is room
