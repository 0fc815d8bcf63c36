"""``--self-test``: this client's crypto and encodings against docs/vectors/*.json.

Each vector file is one step; a step fails at the first value that differs. The
vectors write bytes as hex strings; which fields are bytes is known from the spec's
tables (the JSON does not say), so each check converts exactly those."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from conformance.report import Report, StepFailed
from conformance.selftest_crypto import (
    check_announcement_vectors,
    check_channel,
    check_identity,
    check_pairing,
    check_seal,
    check_spake2,
)
from conformance.selftest_messages import (
    check_data,
    check_encodings,
    check_members,
    check_rpc,
    check_signatures,
    is_encoding_file,
)
from conformance.vectorio import vectors_dir

CHECKS: dict[str, Callable[[dict[str, Any], Path], str]] = {
    "identity": check_identity,
    "announcement": check_announcement_vectors,
    "spake2": check_spake2,
    "pairing": check_pairing,
    "channel": check_channel,
    "seal": check_seal,
    "rpc": check_rpc,
    "members": check_members,
    "details": check_encodings,
    "data": check_data,
    "signatures": check_signatures,
}


def self_test(vdir: Path | None = None) -> Report:
    vdir = vdir or vectors_dir()
    report = Report(node=f"vectors in {vdir}")
    files = sorted(vdir.glob("*.json"))
    if not files:
        report.run("vectors", partial(_missing, vdir))
    for path in files:
        data = json.loads(path.read_text())
        check = CHECKS.get(path.stem) or (check_encodings if is_encoding_file(data) else None)
        if check is None:
            report.run(f"vectors/{path.name}", partial(_unknown, path))
        else:
            report.run(f"vectors/{path.name}", partial(check, data, vdir))
    return report


def _missing(vdir: Path) -> str:
    raise StepFailed(f"no vectors: {vdir}/*.json")


def _unknown(path: Path) -> str:
    raise StepFailed(f"{path.name}: no check in this client for this file (add one)")
