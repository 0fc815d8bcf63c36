"""Seal and open cost per message, beside the raw AEAD floor, in the same run.

    .venv/bin/python benchmarks/seal.py [--json-out PATH] [--quick]

The floor is ChaCha20-Poly1305 encrypt + decrypt with a fixed key and a counter
nonce: what any sealed frame must pay. The ratio is Accord's framing, key lookup
and replay window on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from rich.console import Console
from rich.table import Table

from accord.wire.seal import Kind, Opener, Sealer, StreamId
from common import machine

KEY_EXPR = "accord/v1/rpc/abcdefghijklmnopqrstuvwxyz/camera.capture"
SIZES = (64, 4096, 4 * 1024 * 1024)  # the last: one big RPC stream item


def _per_op_us(fn: object, n: int, repeats: int) -> list[float]:
    assert callable(fn)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return samples


def bench_size(size: int, n: int, repeats: int) -> dict[str, float]:
    payload = os.urandom(size)
    root = os.urandom(32)
    sender = os.urandom(16)
    sid = StreamId(Kind.BROADCAST, sender, 1, 1)

    def accord_run(count: int) -> None:
        sealer = Sealer(root, sid)
        opener = Opener(lambda _sid: root)
        for _ in range(count):
            opener.open(KEY_EXPR, sealer.seal(KEY_EXPR, payload))

    def in_place_run(count: int) -> None:
        sealer = Sealer(root, sid)
        opener = Opener(lambda _sid: root)
        for _ in range(count):
            opener.open(KEY_EXPR, sealer.seal_buffer(KEY_EXPR, payload))

    aead = ChaCha20Poly1305(os.urandom(32))
    aad = KEY_EXPR.encode()

    def raw_run(count: int) -> None:
        for i in range(count):
            nonce = i.to_bytes(12, "big")
            aead.decrypt(nonce, aead.encrypt(nonce, payload, aad), aad)

    accord = _per_op_us(accord_run, n, repeats)
    in_place = _per_op_us(in_place_run, n, repeats)
    raw = _per_op_us(raw_run, n, repeats)
    return {
        "size": size,
        "accord_us_p50": statistics.median(accord),
        "accord_us_min": min(accord),
        "seal_buffer_us_p50": statistics.median(in_place),
        "raw_us_p50": statistics.median(raw),
        "raw_us_min": min(raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/seal.json"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats = (2000, 5) if args.quick else (20000, 15)
    # Big items take the same CPU time per repeat as a 4 KiB one, not n times 4 MiB.
    rows = [bench_size(size, max(20, n * 4096 // max(size, 4096)), repeats) for size in SIZES]
    table = Table(title="seal + open, per message (µs; p50 over repeats)")
    columns = (
        "payload",
        "accord seal+open",
        "seal_buffer+open",
        "raw AEAD enc+dec",
        "ratio",
        "added",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['size']} B",
            f"{r['accord_us_p50']:.2f}",
            f"{r['seal_buffer_us_p50']:.2f}",
            f"{r['raw_us_p50']:.2f}",
            f"{r['accord_us_p50'] / r['raw_us_p50']:.2f}x",
            f"{r['accord_us_p50'] - r['raw_us_p50']:.2f}",
        )
    Console().print(table)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "seal",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine("cryptography"),
        "messages_per_repeat": n,
        "repeats": repeats,
        "rows": rows,
    }
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
