"""App manifests are strict and name the file and key; the Ability loader finds the one
class an entry means; saved state is bytes within the limit."""

from __future__ import annotations

import re
import types
from pathlib import Path

import msgspec
import pytest

from accord.apps import (
    MANIFEST_NAME,
    MAX_STATE,
    Ability,
    AppError,
    AppManifest,
    ManifestError,
    find_ability,
    load_manifest,
    parse_manifest,
    state_bytes,
)
from accord.errors import AccordError

MINIMAL = 'id = "com.example.notes"\nversion = "1.0.0"\nentry = "notes"\n'


# --- manifests ---------------------------------------------------------------------------


def test_minimal_manifest_has_defaults() -> None:
    m = parse_manifest(MINIMAL, "x.toml")
    assert m == AppManifest(id="com.example.notes", version="1.0.0", entry="notes")
    assert m.requires == []
    assert m.continuable is True
    assert m.keep_alive is False
    assert m.checkpoint_s == 5.0
    assert m.prefer_display is False
    assert (m.name, m.description) == ("", "")
    assert (m.entry_module, m.entry_class) == ("notes", None)


def test_full_manifest() -> None:
    text = (
        MINIMAL.replace('"notes"', '"notes.app:Notes"')
        + 'requires = ["display", "door-sensor"]\ncontinuable = false\nkeep_alive = true\n'
        + 'checkpoint_s = 10\nprefer_display = true\nname = "Notes"\ndescription = "Jot."\n'
    )
    m = parse_manifest(text.encode(), "x.toml")
    assert m.requires == ["display", "door-sensor"]
    assert (m.continuable, m.keep_alive, m.prefer_display) == (False, True, True)
    assert m.checkpoint_s == 10.0
    assert (m.entry_module, m.entry_class) == ("notes.app", "Notes")
    assert (m.name, m.description) == ("Notes", "Jot.")


def test_state_label_and_stores() -> None:
    m = parse_manifest(MINIMAL + 'state_label = "S3"\nstores = ["notes", "notes.v2"]\n')
    assert (m.state_label, m.stores) == ("S3", ["notes", "notes.v2"])
    assert parse_manifest(MINIMAL).state_label == "S1"
    assert parse_manifest(MINIMAL).stores == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('state_label = "S5"\n', "state_label is the data label"),
        ('state_label = "SL3"\n', "S1, S2, S3 or S4"),
        ('stores = ["Notes"]\n', "stores lists the store names"),
        ('stores = ["a", "a"]\n', "stores lists 'a' twice"),
        ('stores = ["accord.apps"]\n', "stores named accord.* are the node's own"),
        ('stores = ["accord"]\n', "an app cannot open them"),
    ],
)
def test_bad_state_label_or_stores(extra: str, message: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(message)):
        parse_manifest(MINIMAL + extra, "x.toml")


def test_unknown_key_is_named() -> None:
    with pytest.raises(ManifestError, match=r"x\.toml: unknown key 'colour'.*known keys"):
        parse_manifest(MINIMAL + 'colour = "red"\n', "x.toml")


def test_app_table_gets_a_hint() -> None:
    text = "[app]\n" + MINIMAL
    with pytest.raises(ManifestError, match="unknown key 'app'; put the app's keys at the top"):
        parse_manifest(text, "x.toml")


@pytest.mark.parametrize(
    "bad_id",
    ["Com.example", "1app", "app..x", "app.", ".app", "app_x", "a" * 65, "", "app x"],
)
def test_bad_id(bad_id: str) -> None:
    text = MINIMAL.replace("com.example.notes", bad_id)
    with pytest.raises(ManifestError, match=r"x\.toml: .*\$\.id.*e\.g\. 'com\.example\.notes'"):
        parse_manifest(text, "x.toml")


def test_id_limits() -> None:
    ok = "a" * 64
    assert parse_manifest(MINIMAL.replace("com.example.notes", ok), "x").id == ok
    assert parse_manifest(MINIMAL.replace("com.example.notes", "a.1-b.c"), "x").id == "a.1-b.c"


@pytest.mark.parametrize(
    "entry", ["notes-app", "1notes", "a:b:c", "a.:B", "a:1B", "", "notes.", "a b"]
)
def test_bad_entry(entry: str) -> None:
    text = MINIMAL.replace('"notes"', f'"{entry}"')
    with pytest.raises(ManifestError, match=r"\$\.entry.*'notes\.app:Notes'"):
        parse_manifest(text, "x.toml")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('requires = "display"\n', "$.requires"),
        ('requires = ["Display"]\n', "$.requires[0]"),
        ('keep_alive = "yes"\n', "$.keep_alive"),
        ("checkpoint_s = 0.1\n", "$.checkpoint_s"),
        ("checkpoint_s = 3601\n", "$.checkpoint_s"),
        ("checkpoint_s = true\n", "$.checkpoint_s"),
        ("name = 3\n", "$.name"),
    ],
)
def test_wrong_types_and_ranges(extra: str, where: str) -> None:
    with pytest.raises(ManifestError, match=r"x\.toml: .*at `" + re.escape(where)):
        parse_manifest(MINIMAL + extra, "x.toml")


def test_version_must_be_a_non_empty_string() -> None:
    for bad in ("version = 1", 'version = ""', f'version = "{"1" * 33}"'):
        text = MINIMAL.replace('version = "1.0.0"', bad)
        with pytest.raises(ManifestError, match=r"\$\.version.*e\.g\. '1\.0\.0'"):
            parse_manifest(text, "x.toml")


def test_missing_required_key() -> None:
    with pytest.raises(ManifestError, match="missing required field `entry`"):
        parse_manifest('id = "a"\nversion = "1"\n', "x.toml")


def test_duplicate_requirement() -> None:
    with pytest.raises(ManifestError, match="'camera' twice"):
        parse_manifest(MINIMAL + 'requires = ["camera", "camera"]\n', "x.toml")


def test_malformed_toml_and_bytes() -> None:
    with pytest.raises(ManifestError, match=r"x\.toml: malformed TOML"):
        parse_manifest("id = ", "x.toml")
    with pytest.raises(ManifestError, match="malformed TOML"):
        parse_manifest(b"\xff\xfe", "x.toml")


def test_load_manifest(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text(MINIMAL)
    assert load_manifest(tmp_path).id == "com.example.notes"


def test_load_manifest_missing_file_has_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=f"has no {MANIFEST_NAME}.*id = "):
        load_manifest(tmp_path)


def test_load_manifest_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text(MINIMAL + "oops = 1\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value)


def test_errors_share_the_root() -> None:
    assert issubclass(ManifestError, AppError)
    assert issubclass(AppError, AccordError)


def test_manifest_round_trips_msgpack() -> None:
    m = parse_manifest(MINIMAL + 'requires = ["camera"]\n', "x")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(m), type=AppManifest) == m


# --- find_ability ------------------------------------------------------------------------


def _module(name: str, source: str, **names: object) -> types.ModuleType:
    """A module executed from source, so its classes have ``__module__ == name``."""
    mod = types.ModuleType(name)
    mod.__dict__.update(names)
    exec(compile(source, f"{name}.py", "exec"), mod.__dict__)
    return mod


def test_find_the_single_ability() -> None:
    mod = _module(
        "notes",
        "from accord.apps import Ability\nclass Helper: pass\nclass Notes(Ability): pass\n",
    )
    assert find_ability(mod).__name__ == "Notes"


def test_imported_base_class_is_not_ambiguous() -> None:
    base = _module("shared", "from accord.apps import Ability\nclass Base(Ability): pass\n")
    mod = _module("notes", "class Notes(Base): pass\n", Base=base.Base)
    assert find_ability(mod).__name__ == "Notes"


def test_own_class_wins_over_imported_one() -> None:
    other = _module("other", "from accord.apps import Ability\nclass Other(Ability): pass\n")
    mod = _module(
        "notes",
        "from accord.apps import Ability\nclass Notes(Ability): pass\n",
        Other=other.Other,
    )
    assert find_ability(mod).__name__ == "Notes"


def test_only_an_imported_class() -> None:
    other = _module("other", "from accord.apps import Ability\nclass Other(Ability): pass\n")
    mod = _module("notes", "", Other=other.Other)
    assert find_ability(mod) is other.Other


def test_no_ability_is_an_error() -> None:
    mod = _module("notes", "from accord.apps import Ability\nclass Helper: pass\n")
    with pytest.raises(ManifestError, match="notes defines no subclass"):
        find_ability(mod)


def test_several_abilities_need_a_name() -> None:
    mod = _module(
        "notes",
        "from accord.apps import Ability\nclass B(Ability): pass\nclass A(Ability): pass\n",
    )
    with pytest.raises(ManifestError, match=r"several Ability classes \(A, B\).*'notes:A'"):
        find_ability(mod)
    assert find_ability(mod, "B").__name__ == "B"


def test_named_class_errors() -> None:
    mod = _module(
        "notes", "from accord.apps import Ability\nclass Plain: pass\nclass A(Ability): pass\n"
    )
    with pytest.raises(ManifestError, match="has no class 'Nope'"):
        find_ability(mod, "Nope")
    with pytest.raises(ManifestError, match="notes:Plain is not a subclass"):
        find_ability(mod, "Plain")
    with pytest.raises(ManifestError, match="notes:Ability is not a subclass"):
        find_ability(mod, "Ability")


async def test_default_hooks() -> None:
    class Notes(Ability):
        pass

    notes = Notes()
    await notes.on_start({}, None)
    assert await notes.on_save() == b""
    assert await notes.on_continue("someone") is True
    await notes.on_stop()
    assert (notes.app_id, notes.device_id, notes.device_name, notes.context) == ("", "", "", None)


# --- state_bytes -------------------------------------------------------------------------


def test_state_bytes_passes_bytes_through() -> None:
    assert state_bytes(b"abc") == b"abc"
    assert state_bytes(bytearray(b"abc")) == b"abc"
    assert state_bytes(memoryview(b"abc")) == b"abc"


def test_state_bytes_encodes_objects_as_msgpack() -> None:
    state = {"notes": ["a", "b"], "cursor": 3}
    assert msgspec.msgpack.decode(state_bytes(state)) == state


def test_state_bytes_limit() -> None:
    assert len(state_bytes(b"x" * MAX_STATE)) == MAX_STATE
    with pytest.raises(AppError, match=f"over the {MAX_STATE}-byte limit"):
        state_bytes(b"x" * (MAX_STATE + 1))
    with pytest.raises(AppError, match="over the"):
        state_bytes({"blob": b"x" * MAX_STATE})


def test_state_bytes_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(AppError, match="cannot save app state of type object"):
        state_bytes(object())
