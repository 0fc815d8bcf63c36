"""Tables and time formatting for the CLI."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table


def ago(ts: float, now: float | None = None) -> str:
    delta = max(0.0, (now or time.time()) - ts)
    if delta < 2:
        return "now"
    if delta < 120:
        return f"{delta:.0f} s ago"
    if delta < 7200:
        return f"{delta / 60:.0f} min ago"
    if delta < 172800:
        return f"{delta / 3600:.0f} h ago"
    return f"{delta / 86400:.0f} d ago"


def devices_table(records: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "Name",
        "Type",
        "Vendor / model",
        "Id",
        "Trust",
        "Online",
        "Last seen",
        "Capabilities",
    ):
        table.add_column(col, overflow="fold")
    now = time.time()
    for r in records:
        name = r["name"] + (" (this device)" if r.get("is_self") else "")
        online = "[green]online[/]" if r["online"] else "[dim]offline[/]"
        standing = r.get("standing", "stranger")
        trust = {
            "self": "this device",
            "member": "[green]member[/]",
            "revoked": "[red]revoked[/]",
        }.get(standing, "announced")
        if standing == "stranger" and r.get("pairing"):
            trust += " [cyan](pairing open)[/]"
        table.add_row(
            name,
            r["type"],
            f"{r['vendor']} {r['model']}".strip() or "-",
            r["device_id"][:10],
            trust,
            online,
            ago(r["last_seen"], now),
            r.get("summary") or ", ".join(r.get("capabilities", [])),
        )
    return table


def status_table(s: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("Device", f"{s['name']} ({s['vendor']} {s['model']}, {s['type']})"),
        ("Id", s["device_id"]),
        ("Security level", s["security_level"]),
        ("Hardware", s["summary"]),
        ("Home", s["home"]),
        ("Process", f"pid {s['pid']}, up {s['uptime_s']:.0f} s"),
        ("Devices", f"{s['devices_online']} online of {s['devices_known']} known"),
        ("Zenoh", f"{s['zenoh_peers']} peers, lease {s['lease_ms']} ms"),
        ("Listen", ", ".join(s["listen"]) or "(default)"),
        ("Connect", ", ".join(s["connect"]) or "(none)"),
        ("Multicast", "on" if s["multicast"] else "off"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table
