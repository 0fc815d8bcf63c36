"""The ``accord`` command."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from accord.cli import (
    app_cmds,
    hardware_cmds,
    kv_cmds,
    node_cmds,
    permission_cmds,
    sim_cmd,
    trust_cmds,
)
from accord.errors import AccordError

app = typer.Typer(
    name="accord",
    help="Accord: the devices of a home become one super device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
node_cmds.register(app)
sim_cmd.register(app)
trust_cmds.register(app)
hardware_cmds.register(app)
permission_cmds.register(app)
kv_cmds.register(app)
app_cmds.register(app)

err = Console(stderr=True)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-vv: debug)."
    ),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    try:
        app()
    except AccordError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
