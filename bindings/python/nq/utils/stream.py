"""net-queue 2.x's serializers (``net_queue.utils.stream``).

net-queue hands them its own stream objects; here ``load`` receives the
message's bytes and ``dump`` may return any bytes-like object, which is sent
without a copy.  Their results are what net-queue's give: a pickled object,
a ``memoryview`` of the bytes, or a readable stream.
"""

import io
import pickle
import re

from ..serialization import pickle_pieces

__all__ = ("PickleSerializer", "BufferSerializer", "StreamSerializer")


class PickleSerializer:
    """Pickles (protocol 5), as net-queue 2.x does.

    **Warning**: unpickling runs code chosen by the sender.  ``allow(name)``
    says whether a global may be loaded (see :meth:`allow_by_name`);
    ``dump(obj)`` and ``load(pid)`` are pickle's ``persistent_id`` and
    ``persistent_load``.
    """

    __slots__ = ("_allow", "_dump", "_load")

    @staticmethod
    def allow_by_name(*names):
        """An allow function for the given module names (``"builtins"``) or
        single globals (``"uuid.UUID"``)."""
        return re.compile(rf"^({'|'.join(map(re.escape, names))})(\.|$)").match

    def __init__(self, allow=None, dump=None, load=None):
        self._allow = allow
        self._dump = dump
        self._load = load

    def dump(self, data):
        """Transform an object into bytes (large buffers go uncopied, see
        nq.PickleSerializer.dump)."""
        return pickle_pieces(data, self._dump)

    def load(self, data):
        """Transform bytes into an object."""
        unpickler = _Unpickler(io.BytesIO(data), self._allow)
        if self._load is not None:
            unpickler.persistent_load = self._load
        return unpickler.load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, allow):
        super().__init__(file)
        self._allow = allow

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if self._allow is not None and not self._allow(qualified):
            raise pickle.UnpicklingError(f"{qualified} is forbidden")
        return super().find_class(module, name)


class BufferSerializer:
    """Sends a bytes-like object as it is; receives a ``memoryview``."""

    __slots__ = ()

    def load(self, data):
        """Transform bytes into a buffer."""
        return memoryview(data)

    def dump(self, data):
        """Transform a buffer into bytes (no copy)."""
        return data


class StreamSerializer:
    """Passes streams through: ``load`` gives a readable binary stream
    (``io.BytesIO``), ``dump`` takes a readable stream (read to its end) or a
    bytes-like object."""

    __slots__ = ()

    def load(self, data):
        """The message as a readable stream."""
        return io.BytesIO(data)

    def dump(self, data):
        """A stream's remaining bytes, or a bytes-like object as it is."""
        if hasattr(data, "getbuffer"):
            return data.getbuffer()[data.tell():]
        if hasattr(data, "read"):
            return data.read()
        return data
