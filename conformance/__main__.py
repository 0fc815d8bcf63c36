"""``python -m conformance --connect tcp/HOST:PORT [--pin PIN] [--json]``."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from conformance.runner import NAMES, run
from conformance.steps import Options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    p.add_argument("--connect", action="append", default=[], help="a node's Zenoh endpoint")
    p.add_argument("--pin", help="the PIN of a pairing window open on the node")
    p.add_argument("--device", help="the device id to test (default: the one discovered)")
    p.add_argument(
        "--revoke-cmd",
        help="shell command that makes the node revoke us; {id} is our device id",
    )
    p.add_argument(
        "--expect-kv",
        action="append",
        default=[],
        help="STORE/KEY=VALUE the node holds (checked by the kv read step)",
    )
    p.add_argument(
        "--only",
        help=f"comma-separated steps to run (discover always runs): {', '.join(NAMES)}",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="per-query timeout (s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--self-test", action="store_true", help="check crypto against test vectors")
    p.add_argument("--vectors", help="the vectors folder for --self-test (default: docs/vectors)")
    args = p.parse_args(argv)
    if args.self_test:
        from conformance.selftest import self_test

        report = self_test(Path(args.vectors) if args.vectors else None)
    else:
        if not args.connect:
            p.error("--connect is required")
        only = [s.strip() for s in args.only.split(",")] if args.only else []
        unknown = set(only) - set(NAMES)
        if unknown:
            p.error(f"unknown steps {sorted(unknown)}; steps: {', '.join(NAMES)}")
        revoke = None
        if args.revoke_cmd:
            template = str(args.revoke_cmd)

            def revoke(device_id: str) -> None:
                cmd = shlex.split(template.replace("{id}", device_id))
                # its words go to stderr: stdout is the report (JSON with --json)
                subprocess.run(
                    cmd, check=True, timeout=30, stdin=subprocess.DEVNULL, stdout=sys.stderr
                )

        opt = Options(
            connect=args.connect,
            pin=args.pin,
            device=args.device,
            timeout=args.timeout,
            revoke=revoke,
            expect_kv=args.expect_kv,
            only=only,
        )
        report = run(opt)
    if args.json:
        print(report.to_json())
    else:
        report.print_table()
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
