"""``accord web``: the control center, a web page for the household."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from accord.cli.options import HomeOpt, home_path


def web(
    home: Path | None = HomeOpt,
    port: int = typer.Option(
        7480, "--port", "-p", metavar="PORT", help="Port on 127.0.0.1 (0: any free one)."
    ),
    open_browser: bool = typer.Option(
        False, "--open", help="Open the page in this machine's web browser."
    ),
) -> None:
    """Serve the control center on 127.0.0.1 and print its address (with a fresh token)."""
    import asyncio  # here, not at the top: `accord --help` must start fast

    asyncio.run(_serve(home_path(home), port, open_browser))


async def _serve(home: Path, port: int, open_browser: bool) -> None:
    import asyncio

    from accord.cli.stopping import stop_on_signals
    from accord.device.home import SOCKET_NAME
    from accord.web.server import serve

    served = await serve(home / "run" / SOCKET_NAME, str(home), port)
    try:
        # One line a script can read (the URL is the last word), then the hint.
        sys.stdout.write(f"control center: {served.url}\n")
        sys.stdout.write("Open it in a browser on this machine; Ctrl-C stops the server.\n")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(served.url)
        stop = asyncio.Event()
        restore = stop_on_signals(asyncio.get_running_loop(), stop.set)
        try:
            await stop.wait()
        finally:
            restore()
    finally:
        await served.close()


def register(app: typer.Typer) -> None:
    app.command()(web)
