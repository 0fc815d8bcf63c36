"""The ``accord`` command.

Start-up matters: every command pays for what this package imports, so the command
modules import only typer, rich and ``accord.errors`` at the top, and each command
imports what it needs (the node, Zenoh, the crypto stack) inside its function.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
import typer.core
import typer.main
from rich.console import Console

from accord.cli import (
    app_cmds,
    clip_cmds,
    hardware_cmds,
    kv_cmds,
    node_cmds,
    notify_cmds,
    permission_cmds,
    relay_cmds,
    rule_cmds,
    send_cmds,
    sim_cmd,
    trust_cmds,
    web_cmds,
)
from accord.errors import AccordError

app = typer.Typer(
    name="accord",
    help="Accord: the devices of a home become one super device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, like most command-line tools: it fits a narrow terminal, needs no
    # Markdown renderer at start-up, and keeps help text free of markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
node_cmds.register(app)
sim_cmd.register(app)
trust_cmds.register(app)
hardware_cmds.register(app)
permission_cmds.register(app)
kv_cmds.register(app)
app_cmds.register(app)
send_cmds.register(app)
clip_cmds.register(app)
notify_cmds.register(app)
rule_cmds.register(app)
web_cmds.register(app)
relay_cmds.register(app)

err = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from accord import __version__

        sys.stdout.write(f"accord {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, show_default=False, help="More logging (-vv: debug)."
    ),
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_show_version,
        help="Show the version and exit.",
    ),
) -> None:
    import logging

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# Metavars for values whose option name says more than their type does. A command
# may set its own (``typer.Option(..., metavar="X")``); these fill in the rest.
_METAVARS = {
    "connect": "ENDPOINT",
    "device": "DEVICE",
    "duration": "SECONDS",
    "interval": "SECONDS",
    "listen": "ENDPOINT",
    "on": "DEVICE",
    "param": "NAME=VALUE",
    "pin": "PIN",
    "relay": "ENDPOINT",
    "resolution": "WxH",
    "setting": "NAME=VALUE",
    "timeout": "SECONDS",
    "to": "DEVICE",
}


class _Argument(typer.core.TyperArgument):
    """An argument shown as ``DEVICE`` / ``[ARGS]`` in usage lines, with no type tag."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1:
            name += "..."
        return name

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _metavar(param: Any) -> str:
    """What a value of ``param`` is called in help: a name a reader understands."""
    if param.param_type_name == "argument":
        return str(param.name).upper()
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""  # a flag takes no value, so help shows none
    name = str(param.name)
    if name in _METAVARS:
        return _METAVARS[name]
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is int:
        return "N"
    if annotation is float:
        return "NUMBER"
    if annotation is Path:
        return "PATH"
    return name.upper()


def _tidy(command: Any) -> None:
    """Give every parameter of ``command`` and its subcommands a plain metavar, so
    help reads ``--home PATH``, ``--json`` and ``accord call DEVICE TARGET [ARGS]``
    instead of ``--home <path>``, ``--json <bool>`` and ``{device} {target}``."""
    for param in command.params:
        if param.metavar is None:
            param.metavar = _metavar(param)
        if type(param) is typer.core.TyperArgument:
            param.__class__ = _Argument
    for sub in getattr(command, "commands", {}).values():
        _tidy(sub)


def command() -> Any:
    """The click command behind ``app``, with tidy help."""
    cmd = typer.main.get_command(app)
    _tidy(cmd)
    return cmd


def main() -> None:
    try:
        command()(prog_name="accord")
    except AccordError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
