"""The class an app developer subclasses: an Ability and its lifecycle hooks.

The runtime creates the Ability with no arguments, sets ``app_id``,
``device_id``, ``device_name`` and ``context``, then calls :meth:`on_start`. To
move or checkpoint the app it calls :meth:`on_save`, and passes those bytes to
``on_start(restored=...)`` on the next device.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import msgspec

from accord.apps.errors import AppError, ManifestError

MAX_STATE = 10 * 1024 * 1024
"""Most bytes an app's saved state may take (it travels whole between devices)."""


class Ability:
    """Base class of an app: override the async hooks you need."""

    app_id: str = ""
    device_id: str = ""
    """The device this instance runs on."""
    device_name: str = ""
    context: Any = None
    """Set by the runtime: access to the super device and the stores."""

    async def on_start(self, params: dict[str, Any], restored: bytes | None) -> None:
        """Start; ``restored`` is the last saved state when the app moved or failed over."""

    async def on_stop(self) -> None:
        """Stop: release what on_start took. Called on move, shutdown or uninstall."""

    async def on_save(self) -> bytes:
        """The state to carry to the next device (see :func:`state_bytes`)."""
        return b""

    async def on_continue(self, target: str) -> bool:
        """May the app move to device ``target`` now? False refuses the move."""
        return True

    async def on_message(self, message: Any) -> Any:
        """Answer a message sent with ``accord app send`` (any JSON-like value)."""
        raise AppError(f"app {self.app_id} takes no messages")

    def describe(self) -> dict[str, Any]:
        """A short, JSON-like status that ``accord ps`` shows."""
        return {}


def state_bytes(obj: object) -> bytes:
    """Bytes as they are, anything else as msgpack; at most :data:`MAX_STATE` bytes."""
    if isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
    else:
        try:
            data = msgspec.msgpack.encode(obj)
        except (TypeError, msgspec.EncodeError) as exc:
            raise AppError(
                f"cannot save app state of type {type(obj).__name__}: {exc}; return bytes, "
                "or values msgspec can encode (dicts, lists, str, numbers, Structs)"
            ) from exc
    if len(data) > MAX_STATE:
        raise AppError(
            f"app state is {len(data)} bytes, over the {MAX_STATE}-byte limit; keep large "
            "data in a store and save only a reference to it"
        )
    return data


def find_ability(module: ModuleType, class_name: str | None = None) -> type[Ability]:
    """The Ability class of an app's entry module (named, or the only one in it).

    Without a name, classes defined in the module win over imported ones, and a
    class that another candidate subclasses is not a candidate itself: importing a
    shared base class must not make the choice ambiguous.
    """
    where = module.__name__
    if class_name is not None:
        found = getattr(module, class_name, None)
        if found is None:
            raise ManifestError(f"module {where} has no class {class_name!r}; check 'entry'")
        if not (isinstance(found, type) and issubclass(found, Ability)) or found is Ability:
            raise ManifestError(
                f"{where}:{class_name} is not a subclass of accord.apps.Ability; check 'entry'"
            )
        return found
    pool = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, Ability)
        and v is not Ability
        and not inspect.isabstract(v)
    ]
    own = [v for v in pool if v.__module__ == where]
    pool = own or pool
    leaves = [v for v in pool if not any(o is not v and issubclass(o, v) for o in pool)]
    if not leaves:
        raise ManifestError(
            f"module {where} defines no subclass of accord.apps.Ability; add one, or name "
            "the class in the manifest's entry as 'module:Class'"
        )
    if len(leaves) > 1:
        names = ", ".join(sorted(v.__name__ for v in leaves))
        raise ManifestError(
            f"module {where} has several Ability classes ({names}); name one in the "
            f"manifest's entry, e.g. '{where}:{sorted(v.__name__ for v in leaves)[0]}'"
        )
    return leaves[0]
