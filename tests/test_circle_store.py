"""Circle state on disk: atomic, private, and what must survive a restart does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accord.device.identity import Identity
from accord.errors import HomeError
from accord.trust.store import CircleStore, founding_state


def test_round_trip_and_mode(tmp_path: Path) -> None:
    ident = Identity.generate()
    store = CircleStore(tmp_path)
    assert store.load() is None
    state = founding_state(ident, "Nokia X60", "phone", "SL4", 1.0)
    state.pairing_failures = 3
    store.save(state)
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    loaded = store.load()
    assert loaded == state
    assert loaded is not None
    assert loaded.members.is_member(ident.device_id)
    assert len(loaded.circle_key) == 32


def test_boot_counter_survives_restart(tmp_path: Path) -> None:
    store = CircleStore(tmp_path)
    state = founding_state(Identity.generate(), "TV", "tv", "SL2", 1.0)
    store.save(state)
    assert store.next_boot(state) == 1
    again = store.load()
    assert again is not None
    assert store.next_boot(again) == 2
    final = store.load()
    assert final is not None
    assert final.boot == 2


def test_rotation_drops_old_keys(tmp_path: Path) -> None:
    state = founding_state(Identity.generate(), "TV", "tv", "SL2", 1.0)
    old = state.circle_key
    new = state.rotated("me")
    assert new.epoch == 2
    assert new.circle_key != old
    assert list(new.keys) == [2]
    assert state.epoch == 1  # the original is untouched until the caller commits


def test_damaged_file_is_a_clear_error_and_never_overwritten(tmp_path: Path) -> None:
    store = CircleStore(tmp_path)
    store.path.write_bytes(b"\x93garbage")
    with pytest.raises(HomeError, match="damaged"):
        store.load()
    assert store.path.read_bytes() == b"\x93garbage"


def test_failed_write_keeps_the_previous_state(tmp_path: Path) -> None:
    store = CircleStore(tmp_path)
    state = founding_state(Identity.generate(), "TV", "tv", "SL2", 1.0)
    store.save(state)
    before = store.path.read_bytes()
    store.path.with_suffix(".tmp").mkdir()  # the temp file cannot be created
    state.pairing_failures = 5
    with pytest.raises(HomeError, match="cannot write"):
        store.save(state)
    assert store.path.read_bytes() == before
