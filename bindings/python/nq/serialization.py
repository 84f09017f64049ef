"""Serializers: how put turns a Python object into bytes and get turns bytes
back into an object.

``dump(obj)`` returns a bytes-like object (anything with the buffer
protocol); it is sent without another copy and kept alive until the put's
future resolves.  ``load(data)`` receives the message as ``bytes``.
"""

import io
import pickle

__all__ = ("PickleSerializer", "BytesSerializer")


class PickleSerializer:
    """Pickles with protocol 5, as net-queue does.

    **Warning**: unpickling runs code chosen by the sender.  Only load data
    you trust, or name the trusted globals in ``restrict``: module names
    (``"builtins"``) or single globals (``"uuid.UUID"``).
    """

    __slots__ = ("_restrict",)

    def __init__(self, restrict=None):
        self._restrict = None if restrict is None else frozenset(restrict)

    def dump(self, data):
        """Transform an object into bytes."""
        return pickle.dumps(data, protocol=5)

    def load(self, data):
        """Transform bytes into an object."""
        if self._restrict is None:
            return pickle.loads(data)
        return _RestrictedUnpickler(io.BytesIO(data), self._restrict).load()


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

    def dump(self, data):
        """Transform a bytes-like object into bytes (no copy)."""
        return data

    def load(self, data):
        """Transform bytes into bytes (no copy)."""
        return bytes(data)
