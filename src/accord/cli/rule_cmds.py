"""`accord rule`: automations the circle runs (add, ls, show, rm, enable, disable,
trace, test)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli.options import HomeOpt, JsonOpt, control_client
from accord.errors import AccordError

out = Console()
rule_app = typer.Typer(help="Automations: triggers, conditions and actions run by the circle.")


def _source(file: Path) -> str:
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccordError(f"cannot read {file}: {exc}") from None


def _check(file: Path) -> str:
    """The file's text, checked here first so errors need no running node."""
    from accord.rules.parse import parse_rule

    source = _source(file)
    parse_rule(source, str(file))
    return source


def _print(result: Any, as_json: bool) -> bool:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    return as_json


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""


@rule_app.command("add")
def add(
    file: Path = typer.Argument(..., help="A rule file (TOML).", metavar="FILE"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add a rule to the circle, or replace the rule of that name (you become its author)."""
    source = _check(file)
    result = control_client(home).call("rule_add", source=source, file=str(file))
    if not _print(result, as_json):
        out.print(f"added {result['name']}; run by {result['runner'] or 'nobody yet'}",
                  markup=False, highlight=False)  # fmt: skip


@rule_app.command("ls")
def ls(home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """The circle's rules, who wrote and who runs each, and their last run."""
    result = control_client(home).call("rule_ls")
    if _print(result, as_json):
        return
    table = Table(title="rules", title_justify="left")
    for col in ("Name", "Enabled", "Author", "Runner", "Triggers", "Last run"):
        table.add_column(col)
    for r in result["rules"]:
        last = r["last_run"]
        table.add_row(r["name"], "yes" if r["enabled"] else "no", r["author"], r["runner"],
                      "; ".join(r["triggers"]),
                      f"{_when(last['started'])} {last['outcome']}" if last else "")  # fmt: skip
    out.print(table)


@rule_app.command("show")
def show(
    name: str = typer.Argument(..., metavar="NAME"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A rule's file, author, runner and pending state."""
    result = control_client(home).call("rule_show", name=name)
    if _print(result, as_json):
        return
    for key in ("name", "enabled", "author", "runner", "mode", "version"):
        out.print(f"{key}: {result[key]}", markup=False, highlight=False)
    for index, p in result["pending"].items():
        state = "fired" if p["fired"] else f"fires at {_when(p['deadline'])}"
        out.print(f"trigger {index}: holding since {_when(p['since'])}, {state}",
                  markup=False, highlight=False)  # fmt: skip
    out.print("\n" + result["source"], markup=False, highlight=False)


@rule_app.command("rm")
def rm(name: str = typer.Argument(..., metavar="NAME"), home: Path | None = HomeOpt) -> None:
    """Remove a rule from the circle."""
    control_client(home).call("rule_rm", name=name)
    out.print(f"removed {name}", markup=False, highlight=False)


@rule_app.command("enable")
def enable(name: str = typer.Argument(..., metavar="NAME"), home: Path | None = HomeOpt) -> None:
    """Enable a rule (you become its author)."""
    control_client(home).call("rule_enable", name=name, enabled=True)
    out.print(f"enabled {name}", markup=False, highlight=False)


@rule_app.command("disable")
def disable(name: str = typer.Argument(..., metavar="NAME"), home: Path | None = HomeOpt) -> None:
    """Disable a rule; it stays in the circle."""
    control_client(home).call("rule_enable", name=name, enabled=False)
    out.print(f"disabled {name}", markup=False, highlight=False)


@rule_app.command("trace")
def trace(
    name: str = typer.Argument(..., metavar="NAME"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The rule's last runs: trigger, conditions, each action's result and timing."""
    result = control_client(home).call("rule_trace", name=name)
    if _print(result, as_json):
        return
    if not result["traces"]:
        out.print(f"{name} has not run yet", markup=False, highlight=False)
    for t in result["traces"]:
        took = f"{t['ended'] - t['started']:.3f} s" if t["ended"] else "running"
        out.print(f"{_when(t['started'])} {t['outcome']} on {t['runner']} ({took})",
                  markup=False, highlight=False)  # fmt: skip
        trigger = {k: v for k, v in t["trigger"].items() if k not in ("index",)}
        out.print(f"  trigger: {json.dumps(trigger)}", markup=False, highlight=False)
        for c in t["conditions"]:
            out.print(f"  condition {c['what']}: {c['ok']}", markup=False, highlight=False)
        for a in t["actions"]:
            took = f"{a['ended'] - a['started']:.3f} s" if a["ended"] else "running"
            state = "ok" if a["ok"] else (a["error"] or "running")
            where = f" on {a['device']}" if a["device"] else ""
            out.print(f"  {a['what']}{where}: {state} ({took})", markup=False, highlight=False)
        if t["resumed_by"]:
            out.print(f"  resumed by {', '.join(t['resumed_by'])}", markup=False,
                      highlight=False)  # fmt: skip


@rule_app.command("test")
def check_file(
    file: Path = typer.Argument(..., help="A rule file (TOML).", metavar="FILE"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check a rule file and say what it would do now; nothing is added or run."""
    source = _check(file)
    result = control_client(home).call("rule_test", source=source, file=str(file))
    if _print(result, as_json):
        return
    out.print(f"{file}: valid; would be run by {result['runner']}", markup=False,
              highlight=False)  # fmt: skip
    for device, name in result["devices"].items():
        out.print(f"  {device!r} is {name}", markup=False, highlight=False)
    for problem in result["problems"]:
        out.print(f"  problem: {problem}", markup=False, highlight=False)
    for t in result["triggers"]:
        out.print(f"  when {t}", markup=False, highlight=False)
    for c in result["conditions"]:
        out.print(f"  if {c['what']} (now: {c['now']})", markup=False, highlight=False)
    for a in result["actions"]:
        out.print(f"  do {a}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="rule")
