"""App bundles: an app folder as one deterministic, signed zip.

A bundle travels between the devices of a circle; each checks it before it runs a
line of it. The same folder always gives the same zip bytes (sorted paths, fixed
timestamps and permissions), so the content hash names the app's code, and two
devices that build the same folder agree on it.

Signature. The signer's Ed25519 key signs exactly::

    b"accord/v1/app-bundle"
    + u32be(len(h)) + h        # h = content_hash, 64 lower-case hex chars, ASCII
    + u32be(len(i)) + i        # i = manifest.id, UTF-8
    + u32be(len(v)) + v        # v = manifest.version, UTF-8
    + f64be(built_at)

The length prefixes keep fields apart (no ``("a.b", "1")`` / ``("a", "b1")``
confusion); the domain string keeps this signature from being valid for anything
else the device key signs. The rest of the manifest is bound through the hash: the
manifest inside the zip must equal ``Bundle.manifest``.

Extraction refuses absolute paths, ``..`` and hidden components, duplicates, and
more than :data:`MAX_FILES` files or :data:`MAX_BYTES` bytes, whatever the
signature says: a member's device may be compromised, or its tools buggy.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec

from accord.apps.errors import BundleError, ManifestError, TamperedBundle, UntrustedBundle
from accord.apps.manifest import MANIFEST_NAME, AppManifest, load_manifest, parse_manifest
from accord.device.identity import Identity, device_id_for, verify

DOMAIN = b"accord/v1/app-bundle"
MAX_FILES = 10_000
MAX_BYTES = 64 * 1024 * 1024
"""Most files, and most uncompressed bytes, a bundle may hold."""
MAX_PATH = 1024
"""Longest relative path (UTF-8 bytes) of a file in a bundle."""
MAX_ZIP_BYTES = MAX_BYTES + 32 * 1024 * 1024
"""Most zip bytes: the uncompressed limit plus room for headers of MAX_FILES long paths."""
MARKER = ".accord-hash"
"""File in an extracted folder holding the bundle's content hash (for reuse)."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = (stat.S_IFREG | 0o644) << 16
_ZIP_UNIX = 3
_LEVEL = 9
_DRIVE = re.compile(r"^[A-Za-z]:")


class Bundle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed app: the manifest (for routing before unzipping), the zip, the proof."""

    manifest: AppManifest
    zip: Annotated[bytes, msgspec.Meta(max_length=MAX_ZIP_BYTES)]
    content_hash: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    signer: Annotated[str, msgspec.Meta(pattern=r"^[a-z2-7]{26}$")]
    """Device id of the signer."""
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    built_at: float
    """Unix time (s) of the build, as given by the builder."""


def signed_message(content_hash: str, app_id: str, version: str, built_at: float) -> bytes:
    """The exact bytes a bundle's signature covers (see the module docstring)."""
    out = bytearray(DOMAIN)
    for field in (content_hash.encode("ascii"), app_id.encode(), version.encode()):
        out += struct.pack(">I", len(field)) + field
    out += struct.pack(">d", built_at)
    return bytes(out)


# --- building ----------------------------------------------------------------------------


def build_bundle(folder: Path, identity: Identity, *, now: float) -> Bundle:
    """Zip and sign an app folder; the manifest must be present and valid.

    Skipped: ``__pycache__``, ``*.pyc`` and hidden (``.``) files and folders.
    Symlinks are followed if they stay inside the folder, refused otherwise.
    """
    load_manifest(folder)  # the friendly errors for a missing or invalid manifest
    files = _collect(folder)
    contents: list[tuple[str, bytes]] = []
    total = 0
    for rel, path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror}") from exc
        total += len(data)
        if total > MAX_BYTES:
            raise _too_big(folder, total)
        contents.append((rel, data))
    by_name = dict(contents)
    if MANIFEST_NAME not in by_name:
        raise BundleError(f"{folder / MANIFEST_NAME} must be a regular file at the folder's root")
    # Parse what goes into the zip, not what load_manifest read: the file may have changed.
    manifest = parse_manifest(by_name[MANIFEST_NAME], str(folder / MANIFEST_NAME))
    data = _deterministic_zip(contents)
    content_hash = hashlib.sha256(data).hexdigest()
    message = signed_message(content_hash, manifest.id, manifest.version, now)
    return Bundle(
        manifest=manifest,
        zip=data,
        content_hash=content_hash,
        signer=identity.device_id,
        signature=identity.sign(message),
        built_at=now,
    )


def _too_big(folder: Path, total: int) -> BundleError:
    return BundleError(
        f"{folder} holds more than {MAX_BYTES} bytes ({total}+ so far); an app bundle is at "
        "most 64 MiB uncompressed - move data out of the app folder or into a hidden folder"
    )


def _collect(folder: Path) -> list[tuple[str, Path]]:
    """``(relative posix path, path)`` of every file to bundle, sorted by relative path."""
    try:
        root = folder.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise BundleError(f"cannot open app folder {folder}: {exc}") from exc
    out: list[tuple[str, Path]] = []
    total = 0

    def walk(path: Path, prefix: str, chain: tuple[Path, ...]) -> None:
        nonlocal total
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            raise BundleError(f"cannot list {path}: {exc.strerror}") from exc
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name == "__pycache__" or name.endswith(".pyc"):
                continue
            rel = prefix + name
            child = Path(entry.path)
            try:
                real = child.resolve(strict=True)
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except (OSError, RuntimeError) as exc:
                raise BundleError(f"{child}: broken or looping symlink ({exc})") from exc
            if entry.is_symlink() and not real.is_relative_to(root):
                raise BundleError(
                    f"{child} is a symlink to {real}, outside the app folder {root}; "
                    "copy the file into the folder instead"
                )
            if is_dir:
                if real in chain:
                    raise BundleError(f"{child} is a symlink loop; remove it")
                walk(child, rel + "/", (*chain, real))
            elif is_file:
                if len(rel.encode("utf-8", "surrogatepass")) > MAX_PATH:
                    raise BundleError(f"{child}: path longer than {MAX_PATH} bytes; shorten it")
                out.append((rel, child))
                if len(out) > MAX_FILES:
                    raise BundleError(
                        f"{folder} holds more than {MAX_FILES} files; an app bundle is at most "
                        f"{MAX_FILES} - move data out of the app folder"
                    )
                try:
                    total += child.stat().st_size
                except OSError as exc:
                    raise BundleError(f"cannot stat {child}: {exc.strerror}") from exc
                if total > MAX_BYTES:
                    raise _too_big(folder, total)
            # Sockets, fifos and devices are not app code: skipped.

    walk(root, "", (root,))
    return out


def _deterministic_zip(contents: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, data in sorted(contents):
            try:
                rel.encode()
            except UnicodeEncodeError as exc:
                raise BundleError(f"file name {rel!r} is not valid UTF-8; rename it") from exc
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = _ZIP_MODE
            info.create_system = _ZIP_UNIX
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL)
    return buf.getvalue()


# --- wire --------------------------------------------------------------------------------

_DECODER = msgspec.msgpack.Decoder(Bundle)


def encode_bundle(bundle: Bundle) -> bytes:
    return msgspec.msgpack.encode(bundle)


def decode_bundle(data: bytes) -> Bundle:
    """Decode (and schema-check) a bundle; it still needs :func:`verify_bundle`."""
    if len(data) > MAX_ZIP_BYTES + 1024 * 1024:
        raise BundleError(f"app bundle of {len(data)} bytes is over the size limit")
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise BundleError(f"not a valid app bundle: {exc}") from exc


# --- checking ----------------------------------------------------------------------------


def verify_bundle(bundle: Bundle, public_key_of: Callable[[str], bytes | None]) -> None:
    """Raise unless a circle member signed exactly this zip and this manifest.

    ``public_key_of`` maps a device id to its public key, or None if not a member.
    Cheap checks and the signature come before the zip is opened at all.
    """
    label = f"app bundle {bundle.manifest.id} {bundle.manifest.version}"
    digest = hashlib.sha256(bundle.zip).hexdigest()
    if not hmac.compare_digest(digest, bundle.content_hash):
        raise TamperedBundle(
            f"{label}: its zip does not match its content hash (altered or corrupted in "
            "transit); fetch it again from the device that built it"
        )
    key = public_key_of(bundle.signer)
    if key is None:
        raise UntrustedBundle(
            f"{label} is signed by {bundle.signer}, who is not a member of this circle; "
            "pair that device first, or rebuild the bundle on a member"
        )
    if device_id_for(key) != bundle.signer:
        raise UntrustedBundle(f"{label}: the key on record for {bundle.signer} is not its key")
    message = signed_message(
        bundle.content_hash, bundle.manifest.id, bundle.manifest.version, bundle.built_at
    )
    if not verify(key, bundle.signature, message):
        raise TamperedBundle(
            f"{label}: the signature is not {bundle.signer}'s over this bundle (altered "
            "after signing, or forged); do not run it"
        )
    with _open_zip(bundle.zip, label) as zf:
        _checked_entries(zf, label)
        inner = _zip_manifest(zf, label)
    if inner != bundle.manifest:
        raise TamperedBundle(
            f"{label}: the manifest sent with the bundle differs from the one inside its zip; "
            "do not run it"
        )


def _open_zip(data: bytes, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{label}: not a readable zip: {exc}") from exc


def _zip_manifest(zf: zipfile.ZipFile, label: str) -> AppManifest:
    try:
        text = zf.read(MANIFEST_NAME)
    except KeyError as exc:
        raise BundleError(f"{label}: no {MANIFEST_NAME} in its zip") from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{label}: cannot read {MANIFEST_NAME} from its zip: {exc}") from exc
    try:
        return parse_manifest(text, f"{label}: {MANIFEST_NAME}")
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc


def _checked_entries(zf: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    """The zip's file entries, if every one is safe to extract; raise otherwise."""
    infos = zf.infolist()
    if len(infos) > MAX_FILES:
        raise BundleError(f"{label}: {len(infos)} entries, more than the {MAX_FILES} allowed")
    seen: set[str] = set()
    total = 0
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/") if info.is_dir() else name.split("/")
        unsafe = (
            name.startswith(("/", "\\"))
            or "\\" in name
            or _DRIVE.match(name) is not None
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
            or len(name.encode()) > MAX_PATH
        )
        if unsafe:
            raise BundleError(
                f"{label}: unsafe path {name!r} in its zip (absolute, '..', hidden or too "
                "long); refusing it - the bundle was made by a faulty or hostile tool"
            )
        if name in seen:
            raise BundleError(f"{label}: {name!r} appears twice in its zip; refusing it")
        seen.add(name)
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_BYTES:
            raise BundleError(f"{label}: more than {MAX_BYTES} bytes uncompressed; refusing it")
        files.append(info)
    return files


# --- extracting --------------------------------------------------------------------------


def extract_bundle(bundle: Bundle, dest: Path) -> Path:
    """Unzip into ``dest`` (replaced as a whole) and return it; call verify_bundle first.

    Files go to a temporary folder next to ``dest`` that is renamed into place, so
    ``dest`` is never half-written. A ``dest`` already holding this content hash is
    reused as is. Callers serialize extractions to the same ``dest``.
    """
    label = f"app bundle {bundle.manifest.id} {bundle.manifest.version}"
    if not hmac.compare_digest(hashlib.sha256(bundle.zip).hexdigest(), bundle.content_hash):
        raise TamperedBundle(f"{label}: its zip does not match its content hash; fetch it again")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BundleError(f"{dest} exists and is not a folder; remove it or choose another")
    try:
        if (dest / MARKER).read_text() == bundle.content_hash:
            return dest
    except (OSError, UnicodeDecodeError):
        pass
    with _open_zip(bundle.zip, label) as zf:
        infos = _checked_entries(zf, label)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        except OSError as exc:
            raise BundleError(f"cannot extract {label} into {dest}: {exc.strerror}") from exc
        try:
            _extract_into(zf, infos, tmp, label)
            (tmp / MARKER).write_text(bundle.content_hash)
            _swap_into_place(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BundleError(f"cannot extract {label} into {dest}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _extract_into(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], root: Path, label: str
) -> None:
    real_root = root.resolve()
    total = 0
    for info in infos:
        target = root / info.filename
        # Names were checked already; this catches whatever that check did not foresee.
        if not target.resolve().is_relative_to(real_root):
            raise BundleError(f"{label}: {info.filename!r} would land outside {root}")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                while chunk := src.read(1 << 20):
                    total += len(chunk)
                    if total > MAX_BYTES:
                        raise BundleError(f"{label}: more than {MAX_BYTES} bytes uncompressed")
                    out.write(chunk)
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
            raise BundleError(f"{label}: {info.filename!r} is corrupt in its zip: {exc}") from exc


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.old")
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
