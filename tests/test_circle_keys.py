"""Circle keys from members: a hostile member cannot brick a device with an epoch the
frame format cannot carry, make itself impossible to revoke, or jump the epoch."""

from __future__ import annotations

import secrets
from pathlib import Path

import msgspec
import pytest

from accord.clock import ManualClock
from accord.device.home import init_home, open_home
from accord.errors import HomeError, TrustError
from accord.trust.circle import Circle
from accord.trust.store import MAX_EPOCH, CircleStore


def _circle(tmp_path: Path, name: str = "phone") -> Circle:
    home = tmp_path / name
    init_home(home, profile_name="nokia-x60", name=name)
    return Circle(open_home(home), ManualClock())


@pytest.mark.parametrize("epoch", [2**32, 2**32 - 1, MAX_EPOCH, 2**40, 10**9, 3, 0, -1])
def test_a_key_update_beyond_the_justified_epoch_is_refused(tmp_path: Path, epoch: int) -> None:
    circle = _circle(tmp_path)
    assert not circle.install_key(epoch, secrets.token_bytes(32), "zz")
    assert circle.state.epoch == 1
    # The device still starts: what is on disk loads and seals.
    again = Circle(open_home(tmp_path / "phone"), ManualClock())
    assert again.state.epoch == 1
    again.seal("k", b"still works")


def test_one_step_ahead_is_taken(tmp_path: Path) -> None:
    circle = _circle(tmp_path)
    key = secrets.token_bytes(32)
    assert circle.install_key(2, key, "zz")
    assert circle.state.circle_key == key
    assert CircleStore(open_home(tmp_path / "phone").data_dir).load().epoch == 2  # type: ignore[union-attr]


def test_a_device_that_missed_rotations_may_catch_up_as_far_as_revocations_justify(
    tmp_path: Path,
) -> None:
    """Each rotation follows a revocation, so the signed revoked set bounds the epoch."""
    circle = _circle(tmp_path)
    revoked = tuple(f"{i:026d}" for i in range(3))
    circle.state.members = msgspec.structs.replace(circle.state.members, revoked=revoked)
    assert not circle.install_key(5, secrets.token_bytes(32), "zz")  # 1 + 3 = 4 at most
    assert circle.install_key(4, secrets.token_bytes(32), "zz")


def test_a_state_with_an_epoch_past_the_frame_format_is_a_clear_error(tmp_path: Path) -> None:
    """A file written by an older version that accepted 2^32: a HomeError that says
    what to do, not a struct.error at start-up."""
    circle = _circle(tmp_path)
    store = CircleStore(open_home(tmp_path / "phone").data_dir)
    state = circle.state
    state.epoch = 2**32
    state.keys = {2**32: secrets.token_bytes(32)}
    store.save(state)
    with pytest.raises(HomeError, match="damaged"):
        store.load()


def test_revoke_at_the_epoch_limit_changes_nothing(tmp_path: Path) -> None:
    """Revocation is all or nothing: if the key cannot rotate, the member list, key,
    sealer and file stay as they were."""
    circle = _circle(tmp_path)
    other = _circle(tmp_path, "fridge")
    circle.add_member(other.state.members.member(other._home.device_id))  # type: ignore[arg-type]
    key = secrets.token_bytes(32)
    circle.state.epoch = MAX_EPOCH
    circle.state.keys = {MAX_EPOCH: key}
    before = (circle.state.members, circle.state.epoch, circle.state.circle_key)
    on_disk = circle._store.path.read_bytes()
    with pytest.raises(TrustError, match="limit"):
        circle.revoke(other._home.device_id)
    assert (circle.state.members, circle.state.epoch, circle.state.circle_key) == before
    assert circle._store.path.read_bytes() == on_disk
