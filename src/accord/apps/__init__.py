"""Apps: manifests, signed bundles, placement and the developer's Ability class.

This package is the pure core (no network, no node): it decides what an app is,
whether a bundle may run, and where it should run.
"""

from __future__ import annotations

from accord.apps.ability import MAX_STATE, Ability, find_ability, state_bytes
from accord.apps.bundle import (
    Bundle,
    build_bundle,
    decode_bundle,
    encode_bundle,
    extract_bundle,
    verify_bundle,
)
from accord.apps.errors import (
    AppError,
    BundleError,
    ManifestError,
    NoPlacement,
    RequirementsNotMet,
    TamperedBundle,
    UntrustedBundle,
)
from accord.apps.manifest import MANIFEST_NAME, AppManifest, load_manifest, parse_manifest
from accord.apps.placement import (
    Candidate,
    choose,
    failover_successor,
    missing,
    rank,
    score,
)

__all__ = [
    "MANIFEST_NAME",
    "MAX_STATE",
    "Ability",
    "AppError",
    "AppManifest",
    "Bundle",
    "BundleError",
    "Candidate",
    "ManifestError",
    "NoPlacement",
    "RequirementsNotMet",
    "TamperedBundle",
    "UntrustedBundle",
    "build_bundle",
    "choose",
    "decode_bundle",
    "encode_bundle",
    "extract_bundle",
    "failover_successor",
    "find_ability",
    "load_manifest",
    "missing",
    "parse_manifest",
    "rank",
    "score",
    "state_bytes",
    "verify_bundle",
]
