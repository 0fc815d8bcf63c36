"""What the benchmarks share: the machine they ran on, their arguments, ``main`` around a
run in a temporary folder, the JSON file, tables, percentiles and process helpers.

Imported as ``from common import ...``: a benchmark run as ``python benchmarks/x.py``
has this folder on ``sys.path``, and mypy's ``mypy_path`` includes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, JustifyMethod
from rich.table import Table

from accord.control.client import ControlClient
from accord.device.home import SOCKET_NAME
from accord.errors import AccordError

if TYPE_CHECKING:
    from accord.node import Node

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NUMBER_LIST = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


class BenchError(Exception):
    """The benchmark cannot go on; ``run_main`` prints the message and returns 1."""


# -- the machine -------------------------------------------------------------------


def machine(*dists: str) -> dict[str, Any]:
    """Platform, CPU, load and the versions of eclipse-zenoh, accord and ``dists``."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }
    for dist in ("eclipse-zenoh", "accord", *dists):
        key = "zenoh" if dist == "eclipse-zenoh" else dist
        try:
            info[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[key] = None
    return info


def result_header(name: str, info: dict[str, Any], argv: Sequence[str]) -> dict[str, Any]:
    """The first fields of every result file: which benchmark, when, how, where."""
    return {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([f"benchmarks/{name}.py", *argv]),
        "machine": info,
    }


# -- arguments and main ------------------------------------------------------------------


class BenchParser(argparse.ArgumentParser):
    """The parser of benchmark ``name``, described by the first paragraph of its
    docstring. It must have ``--quick`` and ``--json-out``; :meth:`count` adds the
    options whose default depends on ``--quick``."""

    def __init__(self, name: str, doc: str | None) -> None:
        super().__init__(description=doc.split("\n\n")[0] if doc else "")
        self.name = name
        self.counts: dict[str, tuple[int, int]] = {}

    def count(self, flag: str, text: str, full: int, quick: int) -> None:
        """An int option, help ``TEXT (FULL)``; unset, ``full`` (``quick`` with --quick)."""
        action = self.add_argument(flag, type=int, default=None, help=f"{text} ({full})")
        self.counts[action.dest] = (full, quick)

    def parse(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """Parse ``argv`` (None: the command line; kept as ``args.argv`` for the result),
        fill in the counts, and ``--json-out`` if unset: ``results/NAME.json``
        (``NAME-quick.json`` with ``--quick``)."""
        raw = sys.argv[1:] if argv is None else list(argv)
        args = self.parse_args(raw)
        args.argv = raw
        for dest, (full, quick) in self.counts.items():
            if getattr(args, dest) is None:
                setattr(args, dest, quick if args.quick else full)
        if args.json_out is None:
            name = f"{self.name}-quick" if args.quick else self.name
            args.json_out = RESULTS_DIR / f"{name}.json"
        return args

    def smallest_count(self, args: argparse.Namespace) -> int:
        return min(int(getattr(args, dest)) for dest in self.counts)


def run_main(
    body: Callable[[Console, Path], int | Coroutine[Any, Any, int]],
    *,
    prefix: str,
    width: int,
    keep: bool = False,
    interrupted: str = "interrupted",
) -> int:
    """Run ``body(console, root)`` (a coroutine under ``asyncio.run``) in a fresh
    temporary folder, removed afterwards unless ``keep``; the process's exit code."""
    console = Console()
    if not console.is_terminal:  # keep the tables readable in logs and pipes
        console = Console(width=width)
    # A short root: a node's control socket path must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        result = body(console, root)
        return result if isinstance(result, int) else asyncio.run(result)
    except (BenchError, AccordError) as exc:
        console.print(f"[red]{exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print(f"[red]{interrupted}")
        return 130
    finally:
        if keep:
            console.print(f"kept {root}", highlight=False)
        else:
            shutil.rmtree(root, ignore_errors=True)


# -- the result file -----------------------------------------------------------------------


def write_results(
    path: Path,
    data: dict[str, Any],
    console: Console,
    seconds: float,
    *,
    one_line_numbers: bool = False,
) -> None:
    """Write ``data`` as indented JSON (with ``one_line_numbers``, every list of numbers,
    such as the samples, on one line) and say so."""
    text = json.dumps(data, indent=2)
    if one_line_numbers:
        text = NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    console.print(f"wrote {path} ({seconds:.0f} s)", highlight=False)


# -- percentiles and summaries -------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pct_index(samples: list[float], q: float) -> float:
    """The sample at index ``round(q% of (n - 1))`` in sorted order (q in 0..100)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(
    samples: list[float], digits: int = 1, *, p90: bool = False
) -> dict[str, float | int | None]:
    """n, p50 (with ``p90``, p90 by :func:`pct_index`), max and min, in ms."""
    if not samples:
        empty: dict[str, float | int | None] = {"n": 0, "p50_ms": None}
        if p90:
            empty["p90_ms"] = None
        return {**empty, "max_ms": None, "min_ms": None}
    out: dict[str, float | int | None] = {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), digits),
    }
    if p90:
        out["p90_ms"] = round(pct_index(samples, 90), digits)
    out["max_ms"] = round(max(samples), digits)
    out["min_ms"] = round(min(samples), digits)
    return out


def summary_us(samples: list[float]) -> dict[str, float | None]:
    """p50, p99 (nearest rank), min and max in µs; None for each without samples."""
    if not samples:
        return {"p50_us": None, "p99_us": None, "min_us": None, "max_us": None}
    return {
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(pct(samples, 99), 1),
        "min_us": round(min(samples), 1),
        "max_us": round(max(samples), 1),
    }


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """``a / b`` rounded; None unless both are there and not zero."""
    return round(a / b, digits) if a and b else None


# -- tables --------------------------------------------------------------------------------


def new_table(
    title: str,
    columns: Iterable[str],
    *,
    left: Iterable[str] = (),
    center: Iterable[str] = (),
    caption: str | None = None,
) -> Table:
    """A table with these columns, right-justified unless named in ``left`` or ``center``."""
    left, center = set(left), set(center)
    table = Table(title=title, caption=caption)
    for col in columns:
        justify: JustifyMethod = "left" if col in left else "center" if col in center else "right"
        table.add_column(col, justify=justify)
    return table


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_x(value: float | None, digits: int = 2) -> str:
    """A ratio as ``1.23x``; ``-`` when missing or zero."""
    return fmt(value, digits) + "x" if value else "-"


def verdict(ok: bool) -> str:
    return "[green]yes" if ok else "[red]no"


# -- processes and nodes -------------------------------------------------------------------


def endpoint(port: int) -> str:
    return f"tcp/127.0.0.1:{port}"


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (children run in their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def control_client(home: Path, timeout: float) -> ControlClient:
    """A client of the control socket of the node whose home is ``home``."""
    return ControlClient(home / "run" / SOCKET_NAME, timeout=timeout)


def sees(node: Node, device_id: str, *, details: bool = False) -> bool:
    """``node`` has ``device_id`` online (and, with ``details``, knows its profile)."""
    assert node.directory is not None
    rec = node.directory.get(device_id)
    return rec is not None and rec.online and (rec.profile is not None or not details)


async def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, step: float = 0.01
) -> None:
    """Poll ``cond()`` every ``step`` s; BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(step)
