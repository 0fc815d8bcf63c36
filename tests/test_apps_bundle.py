"""App bundles: the same folder gives the same bytes; only a member's untouched bundle
verifies; extraction never writes outside its folder, whoever signed the zip."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from accord.apps import (
    MANIFEST_NAME,
    Bundle,
    BundleError,
    ManifestError,
    TamperedBundle,
    UntrustedBundle,
    build_bundle,
    decode_bundle,
    encode_bundle,
    extract_bundle,
    parse_manifest,
    verify_bundle,
)
from accord.apps import bundle as bundle_mod
from accord.apps.bundle import MARKER, signed_message
from accord.device.identity import Identity

MANIFEST = 'id = "com.example.notes"\nversion = "1.0.0"\nentry = "notes"\n'
NOW = 1_700_000_000.0

KeyLookup = Callable[[str], "bytes | None"]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "notes-app"
    (folder / "notes").mkdir(parents=True)
    (folder / MANIFEST_NAME).write_text(MANIFEST)
    (folder / "notes" / "__init__.py").write_text("from accord.apps import Ability\n")
    (folder / "notes" / "data.bin").write_bytes(bytes(range(256)) * 10)
    # Never bundled:
    (folder / "notes" / "__pycache__").mkdir()
    (folder / "notes" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (folder / "stale.pyc").write_bytes(b"\0")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / ".env").write_text("SECRET=1\n")
    return folder


@pytest.fixture
def me() -> Identity:
    return Identity.generate()


def members(*identities: Identity) -> KeyLookup:
    keys = {i.device_id: i.public_bytes for i in identities}
    return keys.get


def names(bundle: Bundle) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(bundle.zip)).namelist()


def signed(identity: Identity, data: bytes, manifest_text: str = MANIFEST) -> Bundle:
    """A properly hashed and signed bundle around arbitrary zip bytes."""
    manifest = parse_manifest(manifest_text, "test")
    content_hash = hashlib.sha256(data).hexdigest()
    message = signed_message(content_hash, manifest.id, manifest.version, NOW)
    return Bundle(
        manifest=manifest,
        zip=data,
        content_hash=content_hash,
        signer=identity.device_id,
        signature=identity.sign(message),
        built_at=NOW,
    )


def crafted_zip(*entries: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(MANIFEST_NAME, MANIFEST)
            for name, data in entries:
                zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


# --- building ----------------------------------------------------------------------------


def test_build_is_deterministic(app: Path, me: Identity, tmp_path: Path) -> None:
    first = build_bundle(app, me, now=NOW)
    assert build_bundle(app, me, now=NOW) == first
    # Another copy, other timestamps and permissions: still the same bytes.
    copy = tmp_path / "elsewhere"
    shutil.copytree(app, copy)
    for path in copy.rglob("*"):
        os.utime(path, (12345, 12345))
    (copy / "notes" / "data.bin").chmod(0o755)
    again = build_bundle(copy, Identity.generate(), now=NOW + 60)
    assert again.zip == first.zip
    assert again.content_hash == first.content_hash == hashlib.sha256(first.zip).hexdigest()


def test_build_contents_and_fields(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    assert names(b) == [MANIFEST_NAME, "notes/__init__.py", "notes/data.bin"]
    assert b.signer == me.device_id
    assert b.built_at == NOW
    assert b.manifest.id == "com.example.notes"
    for info in zipfile.ZipFile(io.BytesIO(b.zip)).infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.external_attr >> 16 == 0o100644


def test_build_needs_a_valid_manifest(app: Path, me: Identity) -> None:
    (app / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match=f"has no {MANIFEST_NAME}"):
        build_bundle(app, me, now=NOW)
    (app / MANIFEST_NAME).write_text(MANIFEST + "bogus = 1\n")
    with pytest.raises(ManifestError, match="unknown key 'bogus'"):
        build_bundle(app, me, now=NOW)


def test_symlink_inside_is_followed(app: Path, me: Identity) -> None:
    (app / "alias.py").symlink_to(app / "notes" / "__init__.py")
    (app / "linked").symlink_to(app / "notes", target_is_directory=True)
    b = build_bundle(app, me, now=NOW)
    assert "alias.py" in names(b)
    assert "linked/data.bin" in names(b)


def test_symlink_escaping_the_folder_is_refused(app: Path, me: Identity, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    (app / "leak.txt").symlink_to(secret)
    with pytest.raises(BundleError, match="outside the app folder"):
        build_bundle(app, me, now=NOW)
    (app / "leak.txt").unlink()
    (app / "notes" / "up").symlink_to(Path(".."), target_is_directory=True)
    with pytest.raises(BundleError, match="symlink loop"):
        build_bundle(app, me, now=NOW)
    (app / "notes" / "up").unlink()
    (app / "home").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BundleError, match="outside the app folder"):
        build_bundle(app, me, now=NOW)


def test_broken_symlink_is_refused(app: Path, me: Identity) -> None:
    (app / "gone.py").symlink_to(app / "nowhere.py")
    with pytest.raises(BundleError, match="broken or looping symlink"):
        build_bundle(app, me, now=NOW)


def test_build_limits(app: Path, me: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_mod, "MAX_FILES", 2)
    with pytest.raises(BundleError, match="more than 2 files"):
        build_bundle(app, me, now=NOW)
    monkeypatch.setattr(bundle_mod, "MAX_FILES", 10)
    monkeypatch.setattr(bundle_mod, "MAX_BYTES", 1000)
    with pytest.raises(BundleError, match=r"more than 1000 bytes \(\d+\+ so far\)"):
        build_bundle(app, me, now=NOW)


# --- wire --------------------------------------------------------------------------------


def test_encode_decode_round_trip(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    assert decode_bundle(encode_bundle(b)) == b


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", msgspec.msgpack.encode({"manifest": 1}), b"\x93\x01\x02\x03"]
)
def test_decode_garbage(data: bytes) -> None:
    with pytest.raises(BundleError, match="not a valid app bundle"):
        decode_bundle(data)


def test_decode_checks_the_schema(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    short_sig = msgspec.structs.replace(b, signature=b"\0" * 10)
    with pytest.raises(BundleError, match="signature"):
        decode_bundle(encode_bundle(short_sig))


# --- verifying ---------------------------------------------------------------------------


def test_verify_ok(app: Path, me: Identity) -> None:
    b = decode_bundle(encode_bundle(build_bundle(app, me, now=NOW)))
    verify_bundle(b, members(me, Identity.generate()))


def test_tampered_zip_byte(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    flipped = bytearray(b.zip)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(TamperedBundle, match="does not match its content hash"):
        verify_bundle(msgspec.structs.replace(b, zip=bytes(flipped)), members(me))


def test_tampered_zip_with_recomputed_hash(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    other = crafted_zip(("notes/__init__.py", b"import os; os.system('evil')"))
    forged = msgspec.structs.replace(b, zip=other, content_hash=hashlib.sha256(other).hexdigest())
    with pytest.raises(TamperedBundle, match="signature is not"):
        verify_bundle(forged, members(me))


def test_manifest_swapped(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    # Same id and version (so the signature holds), other requirements: caught by content.
    swapped = msgspec.structs.replace(
        b, manifest=msgspec.structs.replace(b.manifest, requires=["camera"])
    )
    with pytest.raises(TamperedBundle, match="manifest sent with the bundle differs"):
        verify_bundle(swapped, members(me))
    # Another version: the signature no longer holds.
    bumped = msgspec.structs.replace(b, manifest=msgspec.structs.replace(b.manifest, version="9.9"))
    with pytest.raises(TamperedBundle, match="signature"):
        verify_bundle(bumped, members(me))


def test_built_at_is_signed(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    with pytest.raises(TamperedBundle, match="signature"):
        verify_bundle(msgspec.structs.replace(b, built_at=NOW + 1), members(me))


def test_unknown_signer(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    with pytest.raises(UntrustedBundle, match=f"signed by {me.device_id}, who is not a member"):
        verify_bundle(b, members(Identity.generate()))


def test_signed_by_another_identity_claiming_signer(app: Path, me: Identity) -> None:
    mallory = Identity.generate()
    b = build_bundle(app, mallory, now=NOW)
    claimed = msgspec.structs.replace(b, signer=me.device_id)
    with pytest.raises(TamperedBundle, match=f"not {me.device_id}'s"):
        verify_bundle(claimed, members(me, mallory))


def test_key_on_record_must_match_the_id(app: Path, me: Identity) -> None:
    b = build_bundle(app, me, now=NOW)
    wrong_key = Identity.generate().public_bytes
    with pytest.raises(UntrustedBundle, match="is not its key"):
        verify_bundle(b, lambda _id: wrong_key)


def test_signed_message_fields_cannot_be_confused() -> None:
    h = "0" * 64
    assert signed_message(h, "ab", "1", 0.0) != signed_message(h, "a", "b1", 0.0)
    assert signed_message(h, "a", "1", 0.0).startswith(b"accord/v1/app-bundle")


# --- unsafe zips (properly signed: only the path checks catch them) ----------------------

UNSAFE = [
    "../evil",
    "notes/../../evil",
    "/tmp/evil",
    "\\evil",
    "a\\..\\..\\evil",
    "C:/evil",
    "a//evil",
    "./evil",
    MARKER,
    "notes/.hidden",
    "x" * 1100,
]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_paths_are_refused(name: str, me: Identity, tmp_path: Path) -> None:
    b = signed(me, crafted_zip((name, b"pwned")))
    assert name in names(b)
    with pytest.raises(BundleError, match="unsafe path"):
        verify_bundle(b, members(me))
    dest = tmp_path / "apps" / "notes"
    dest.parent.mkdir()
    with pytest.raises(BundleError, match="unsafe path"):
        extract_bundle(b, dest)
    assert not (tmp_path / "evil").exists()
    assert not list(dest.parent.iterdir())  # nothing written, not even a temp folder


def test_failed_extraction_leaves_nothing(me: Identity, tmp_path: Path) -> None:
    b = signed(me, crafted_zip(("a", b"file"), ("a/b", b"under a file")))
    verify_bundle(b, members(me))  # nothing wrong with the names themselves
    dest = tmp_path / "apps" / "notes"
    with pytest.raises(BundleError, match="cannot extract"):
        extract_bundle(b, dest)
    assert not list(dest.parent.iterdir())


def test_duplicate_entries_are_refused(me: Identity, tmp_path: Path) -> None:
    b = signed(me, crafted_zip(("notes.py", b"a"), ("notes.py", b"b")))
    with pytest.raises(BundleError, match="appears twice"):
        extract_bundle(b, tmp_path / "out")


def test_signed_garbage_is_refused(me: Identity) -> None:
    with pytest.raises(BundleError, match="not a readable zip"):
        verify_bundle(signed(me, b"not a zip at all"), members(me))


def test_zip_without_manifest(me: Identity) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.py", "")
    with pytest.raises(BundleError, match=f"no {MANIFEST_NAME}"):
        verify_bundle(signed(me, buf.getvalue()), members(me))


# --- extracting --------------------------------------------------------------------------


def test_extract(app: Path, me: Identity, tmp_path: Path) -> None:
    b = build_bundle(app, me, now=NOW)
    dest = tmp_path / "apps" / "com.example.notes"
    assert extract_bundle(b, dest) == dest
    assert (dest / MANIFEST_NAME).read_text() == MANIFEST
    assert (dest / "notes" / "data.bin").read_bytes() == (app / "notes" / "data.bin").read_bytes()
    assert (dest / MARKER).read_text() == b.content_hash
    assert not (dest / ".env").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["com.example.notes"]


def test_extract_reuses_same_hash(app: Path, me: Identity, tmp_path: Path) -> None:
    b = build_bundle(app, me, now=NOW)
    dest = extract_bundle(b, tmp_path / "out")
    (dest / "notes" / "data.bin").write_bytes(b"local edit")
    assert extract_bundle(b, dest) == dest
    assert (dest / "notes" / "data.bin").read_bytes() == b"local edit"


def test_extract_replaces_another_version(app: Path, me: Identity, tmp_path: Path) -> None:
    dest = extract_bundle(build_bundle(app, me, now=NOW), tmp_path / "out")
    (app / "notes" / "data.bin").unlink()
    (app / "notes" / "new.py").write_text("")
    b2 = build_bundle(app, me, now=NOW)
    extract_bundle(b2, dest)
    assert not (dest / "notes" / "data.bin").exists()
    assert (dest / "notes" / "new.py").exists()
    assert (dest / MARKER).read_text() == b2.content_hash
    leftovers = [p.name for p in tmp_path.iterdir() if "out" in p.name and p.name != "out"]
    assert leftovers == []  # neither the temp folder nor the old version remains


def test_extract_checks_the_hash(app: Path, me: Identity, tmp_path: Path) -> None:
    b = build_bundle(app, me, now=NOW)
    bad = msgspec.structs.replace(b, content_hash="0" * 64)
    with pytest.raises(TamperedBundle):
        extract_bundle(bad, tmp_path / "out")


def test_extract_onto_a_file(app: Path, me: Identity, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(BundleError, match="is not a folder"):
        extract_bundle(build_bundle(app, me, now=NOW), tmp_path / "out")


def test_extract_limits(
    app: Path, me: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = build_bundle(app, me, now=NOW)
    monkeypatch.setattr(bundle_mod, "MAX_FILES", 2)
    with pytest.raises(BundleError, match="more than the 2 allowed"):
        extract_bundle(b, tmp_path / "out")
    monkeypatch.setattr(bundle_mod, "MAX_FILES", 10)
    monkeypatch.setattr(bundle_mod, "MAX_BYTES", 1000)
    with pytest.raises(BundleError, match="more than 1000 bytes uncompressed"):
        extract_bundle(b, tmp_path / "out")
    assert not (tmp_path / "out").exists()
