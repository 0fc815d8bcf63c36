"""Reading docs/vectors: hex, comparisons, round trips, the fixed identities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.crypto import Identity
from conformance.messages import pack, unpack
from conformance.report import StepFailed


def vectors_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "docs" / "vectors"
    return here if here.is_dir() else Path("docs/vectors")


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def same(what: str, got: Any, want: Any) -> None:
    if got != want:
        g = got.hex() if isinstance(got, bytes) else repr(got)
        w = want.hex() if isinstance(want, bytes) else repr(want)
        raise StepFailed(f"{what}: got {g[:80]}, vector says {w[:80]}")


def jsonish(value: Any) -> Any:
    """A decoded MessagePack value as the vectors write it (bytes as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonish(v) for v in value]
    return value


def roundtrip(name: str, encoded_hex: str, fields: Any) -> Any:
    """Decode the vector's bytes, compare with its fields, and re-encode to the same
    bytes (our encoder keeps map order and picks the shortest forms)."""
    encoded = h(encoded_hex)
    decoded = unpack(encoded)
    same(f"{name}: decoded fields", jsonish(decoded), fields)
    same(f"{name}: re-encoded", pack(decoded), encoded)
    return decoded


def identities(vdir: Path) -> dict[str, Identity]:
    out = {}
    for v in json.loads((vdir / "identity.json").read_text())["vectors"]:
        me = Identity.from_seed(h(v["seed"]))
        out[v["name"]] = out[me.device_id] = me
    return out
