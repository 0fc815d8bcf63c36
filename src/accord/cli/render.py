"""Tables and time formatting for the CLI."""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text


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
    """One line per device; fits 80 columns. Only "Has" gives up width, its cells cut
    with an ellipsis rather than wrapped (``--json`` has everything, whole)."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column("Name", no_wrap=True, overflow="ellipsis", max_width=20)
    for header in ("Type", "Id", "Trust", "Seen"):
        table.add_column(header, no_wrap=True)
    table.add_column("Has")
    now = time.time()
    for r in records:
        standing = "self" if r.get("is_self") else r.get("standing", "stranger")
        trust = {
            "self": "this device",
            "member": "[green]member[/]",
            "revoked": "[red]revoked[/]",
        }.get(standing, "[cyan]pairing open[/]" if r.get("pairing") else "announced")
        seen = "[green]online[/]" if r["online"] else f"[dim]{ago(r['last_seen'], now)}[/]"
        has = r.get("summary") or ", ".join(r.get("capabilities", [])) or "-"
        table.add_row(
            Text(r["name"]),
            r["type"],
            r["device_id"][:10],
            trust,
            seen,
            Text(has, no_wrap=True, overflow="ellipsis"),
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
