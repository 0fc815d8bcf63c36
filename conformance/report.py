"""Step results and how they are shown: a rich table or JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


class StepFailed(Exception):
    """A step's check failed; the message says what the node did instead."""


class Skipped(Exception):
    """A step could not run (an earlier step it needs failed, or no input given)."""


@dataclass
class Result:
    step: str
    status: str  # "pass" | "fail" | "skip"
    reason: str
    seconds: float


@dataclass
class Report:
    node: str = ""
    results: list[Result] = field(default_factory=list)

    def run(self, step: str, check: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            reason = check()
            status = "pass"
        except Skipped as exc:
            status, reason = "skip", str(exc)
        except StepFailed as exc:
            status, reason = "fail", str(exc)
        except Exception as exc:  # a client-side surprise is a failed step, not a crash
            status, reason = "fail", f"{type(exc).__name__}: {exc}"
        self.results.append(Result(step, status, reason, time.monotonic() - started))
        return status == "pass"

    @property
    def passed(self) -> bool:
        return all(r.status == "pass" for r in self.results)

    def to_json(self) -> str:
        return json.dumps(
            {
                "node": self.node,
                "passed": self.passed,
                "steps": [asdict(r) for r in self.results],
            },
            indent=2,
        )

    def print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Accord conformance: {self.node or 'no node'}")
        table.add_column("step")
        table.add_column("result")
        table.add_column("s", justify="right")
        table.add_column("reason")
        colour = {"pass": "green", "fail": "red", "skip": "yellow"}
        for r in self.results:
            table.add_row(
                r.step, f"[{colour[r.status]}]{r.status}[/]", f"{r.seconds:.2f}", r.reason
            )
        Console().print(table)
