"""nq: network queues on libnq, with net-queue's Python API (1.1.1 and 2.x).

    import nq

    with nq.new(purpose=nq.Purpose.SERVER) as queue:
        message = queue.get()
        queue.put("Hello, Client!", message.peer)
"""

from . import nqraw as _raw
from ._version import __version__
from .comm import Communicator, new
from .errors import (
    AddressError, AddressInUse, Closed, ConnectionLost, ConnectionRefused, Error,
    InvalidArgument, NoPeer, NotSupported, OutOfMemory, ProtocolError, SendLimitReached,
    SerializationError, SystemCallError, Timeout, TLSError, Replaced, Cancelled,
    AuthenticationError,
)
from .options import (
    CommunicatorOptions, ConnectionOptions, EventOptions, Message, NetworkLocation, Protocol,
    Purpose, SecurityOptions, SerializationOptions, TransportOptions,
)
from .serialization import BytesSerializer, PickleSerializer
# net-queue code reaches these as attributes (nq.utils.stream.BufferSerializer).
from . import core, utils  # noqa: F401
from .utils import stream as _stream, streamtools as _streamtools  # noqa: F401

#: The version of the libnq this package runs on (``nq_version()``), which
#: may differ from the package's own ``__version__``.
libnq_version: str = _raw.nq_version()

__all__ = (
    "__version__", "libnq_version",
    "Protocol", "Purpose", "Message", "NetworkLocation", "ConnectionOptions",
    "SerializationOptions", "SecurityOptions", "TransportOptions", "EventOptions",
    "CommunicatorOptions",
    "Communicator", "new", "PickleSerializer", "BytesSerializer",
    "Error", "InvalidArgument", "OutOfMemory", "Timeout", "Closed", "ConnectionLost", "NoPeer",
    "TLSError", "ProtocolError", "ConnectionRefused", "AddressError", "AddressInUse",
    "NotSupported", "SystemCallError", "SendLimitReached", "SerializationError", "Replaced",
    "Cancelled", "AuthenticationError",
)
