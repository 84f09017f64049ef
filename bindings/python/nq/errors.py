"""Exceptions raised by nq: one class per libnq error code.

Every class derives from :class:`nq.Error`, itself a :class:`ConnectionError`,
and where Python has a matching built-in exception from that one too, so
``except ConnectionResetError`` and ``except TimeoutError`` work as they do
with sockets.
"""

import concurrent.futures

from . import nqraw as _raw

__all__ = (
    "Error",
    "InvalidArgument",
    "OutOfMemory",
    "Timeout",
    "Closed",
    "ConnectionLost",
    "NoPeer",
    "TLSError",
    "ProtocolError",
    "ConnectionRefused",
    "AddressError",
    "AddressInUse",
    "NotSupported",
    "SystemCallError",
    "SendLimitReached",
    "SerializationError",
    "Replaced",
    "Cancelled",
    "AuthenticationError",
)


class Error(ConnectionError):
    """A libnq error; ``code`` is the negative NQ_E* number."""

    code = None

    def __init__(self, message=None, code=None):
        if code is not None:
            self.code = code
        if message is None:
            message = _raw.nq_strerror(self.code) if self.code is not None else "libnq error"
        super().__init__(message)


class InvalidArgument(Error, ValueError):
    code = _raw.NQ_EINVAL


class OutOfMemory(Error, MemoryError):
    code = _raw.NQ_ENOMEM


class Timeout(Error, TimeoutError):
    code = _raw.NQ_ETIMEDOUT


class Closed(Error, ConnectionAbortedError):
    code = _raw.NQ_ECLOSED


class ConnectionLost(Error, ConnectionResetError):
    code = _raw.NQ_ECONNRESET


class NoPeer(Error, ConnectionResetError):
    code = _raw.NQ_ENOPEER


class TLSError(Error):
    code = _raw.NQ_ETLS


class ProtocolError(Error):
    code = _raw.NQ_EPROTO


class ConnectionRefused(Error, ConnectionRefusedError):
    code = _raw.NQ_ECONNREFUSED


class AddressError(Error):
    code = _raw.NQ_EADDR


class AddressInUse(Error):
    code = _raw.NQ_EADDRINUSE


class NotSupported(Error):
    code = _raw.NQ_ENOTSUP


class SystemCallError(Error):
    code = _raw.NQ_ESYS


class SendLimitReached(Error, BufferError):
    code = _raw.NQ_EFULL


class SerializationError(Error):
    code = _raw.NQ_ESERIALIZE


class Replaced(Error, ConnectionResetError):
    """The peer connected again with the same id (libnq 1.1)."""
    code = _raw.NQ_EREPLACED


class Cancelled(Error, concurrent.futures.CancelledError):
    """The put was withdrawn (libnq 1.2).  A put future's ``cancel()`` that
    withdraws it cancels the future instead, as Python's contract says."""
    code = _raw.NQ_ECANCELED


class AuthenticationError(Error):
    """TLS credentials were refused (libnq 1.3): the server would not take
    this client's certificate (none, or one its anchors do not trust; see
    ``SecurityOptions.client_auth``), or the other way round."""
    code = _raw.NQ_EAUTH


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, OutOfMemory, Timeout, Closed, ConnectionLost, NoPeer, TLSError,
    ProtocolError, ConnectionRefused, AddressError, AddressInUse, NotSupported,
    SystemCallError, SendLimitReached, SerializationError, Replaced, Cancelled,
    AuthenticationError,
)}


def from_code(code, message=None):
    """The exception for a negative NQ_E* code (not raised)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return Error(message, code=code)
    return cls(message)


def check(code):
    """Raises the exception for code unless it is NQ_OK; returns code."""
    if code < 0:
        raise from_code(code)
    return code
