"""``accord relay``: carry sealed Accord traffic between sites (see accord.bus.relay)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def relay(
    listen: list[str] = typer.Option(
        [], "--listen", "-l", help="Endpoint to listen on (default tcp/[::]:7447); repeatable."
    ),
    tls: tuple[Path, Path] | None = typer.Option(
        None,
        "--tls",
        metavar="CERT KEY",
        help="PEM certificate and private key for tls/ endpoints.",
    ),
    connect: list[str] = typer.Option(
        [], "--connect", "-c", help="Another relay to link with (routers route between them)."
    ),
) -> None:
    """Run a relay until Ctrl-C or SIGTERM: nodes at different sites reach each other
    through it (accord up --relay ENDPOINT). Only the keys of Accord pass, and
    member traffic stays sealed end to end: the relay cannot read it."""
    import signal
    import threading

    from accord.bus.relay import Relay

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Relay(listen, connect=connect, tls=tls) as running:
        # One line on stdout once it listens: scripts (and accord sim) wait for it.
        sys.stdout.write(f"accord relay listening on {', '.join(running.listen)}\n")
        sys.stdout.flush()
        stop.wait()
    sys.stderr.write("relay stopped\n")


def register(app: typer.Typer) -> None:
    app.command()(relay)
