"""Serializers: how put turns a Python object into bytes and get turns bytes
back into an object.

``dump(obj)`` returns a bytes-like object (anything with the buffer
protocol), or a list of them that together make the message; they are sent
without another copy and kept alive until the put's future resolves.
``load(data)`` receives the message as ``bytes``.
"""

from __future__ import annotations

import io
import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Buffer as _Buffer

__all__ = ("PickleSerializer", "BytesSerializer")


class PickleSerializer:
    """Pickles with protocol 5, as net-queue does.

    **Warning**: unpickling runs code chosen by the sender.  Only load data
    you trust, or name the trusted globals in ``restrict``: module names
    (``"builtins"``) or single globals (``"uuid.UUID"``).
    """

    __slots__ = ("_restrict",)

    def __init__(self, restrict: Iterable[str] | None = None) -> None:
        self._restrict = None if restrict is None else frozenset(restrict)

    def dump(self, data: Any) -> _Buffer | list[_Buffer]:
        """Transform an object into bytes: a list of pieces when it holds
        large buffers (numpy arrays, bytes), which are then sent where they
        are, not copied, so they must not change until the put completes."""
        return pickle_pieces(data)

    def load(self, data: bytes) -> Any:
        """Transform bytes into an object."""
        if self._restrict is None:
            return pickle.loads(data)
        return _RestrictedUnpickler(io.BytesIO(data), self._restrict).load()


class _Pieces:
    """A file for pickle.Pickler that keeps what it is given: the pickler's
    frames (fresh bytes objects) and, as they are, the large buffers it
    writes straight through (protocol 5 in-band data of 64 KiB and more)."""

    __slots__ = ("pieces",)

    def __init__(self):
        self.pieces = []

    def write(self, data):
        self.pieces.append(data)
        return len(memoryview(data))


def pickle_pieces(data, persistent_id=None):
    """data pickled with protocol 5, as one bytes object or, when large
    buffers went through uncopied, the list of pieces in order."""
    out = _Pieces()
    pickler = pickle.Pickler(out, protocol=5)
    if persistent_id is not None:
        pickler.persistent_id = persistent_id
    pickler.dump(data)
    return out.pieces[0] if len(out.pieces) == 1 else out.pieces


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed):
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        prefix = qualified
        while prefix:
            if prefix in self._allowed:
                return super().find_class(module, name)
            prefix = prefix.rpartition(".")[0]
        raise pickle.UnpicklingError(f"global {qualified} is forbidden")


class BytesSerializer:
    """Sends bytes-like objects as they are and receives ``bytes``."""

    __slots__ = ()

    def dump(self, data: _Buffer) -> _Buffer:
        """Transform a bytes-like object into bytes (no copy)."""
        return data

    def load(self, data: bytes) -> bytes:
        """Transform bytes into bytes (no copy)."""
        return bytes(data)
