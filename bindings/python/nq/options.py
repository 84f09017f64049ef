"""Communicator options, with net-queue 1.1.1's names and defaults."""

from __future__ import annotations

import dataclasses
import enum
import typing
import uuid
from collections import abc
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .serialization import PickleSerializer

__all__ = (
    "Protocol",
    "Purpose",
    "Message",
    "NetworkLocation",
    "ConnectionOptions",
    "SerializationOptions",
    "SecurityOptions",
    "TransportOptions",
    "EventOptions",
    "CommunicatorOptions",
)

try:
    _StrEnum = enum.StrEnum
except AttributeError:  # Python < 3.11
    class _StrEnum(str, enum.Enum):
        def __str__(self):
            return self.value


class Protocol(_StrEnum):
    """Communication protocol."""
    TCP = "tcp"
    MQTT = "mqtt"
    GRPC = "grpc"


class Purpose(_StrEnum):
    """Communication purpose."""
    SERVER = "server"
    CLIENT = "client"


@dataclass(slots=True, frozen=True)
class Message:
    """A received message: who sent it and what."""
    peer: uuid.UUID
    data: typing.Any


class NetworkLocation(NamedTuple):
    """Network location: for TCP the server's address, for MQTT the broker's."""
    host: str = "127.0.0.1"
    port: int = 51966

    def __str__(self):
        return f"{self.host}:{self.port}"


@dataclass(order=False, slots=True, frozen=True)
class ConnectionOptions:
    """Connection tuning, with net-queue's names and defaults."""
    get_merge: bool = True
    put_merge: bool = True
    efficient_size: int = 64 * 1024 ** 1
    protocol_size: int = 4 * 1024 ** 2
    queue_size: int = 1 * 1024 ** 3
    message_size: int = 1 * 1024 ** 4


@dataclass(order=False, slots=True, frozen=True)
class SerializationOptions:
    """How objects become bytes (dump) and bytes become objects (load)."""
    load: abc.Callable[[bytes], typing.Any] = PickleSerializer().load
    dump: abc.Callable[[typing.Any], typing.Any] = PickleSerializer().dump


@dataclass(order=False, slots=True, frozen=True)
class SecurityOptions:
    """TLS: a server gives its key and certificate chain; a client gives the
    certificates it trusts, or nothing for the system's store."""
    key: Path | str | None = None
    certificate: Path | str | None = None


@dataclass(order=False, slots=True, frozen=True)
class TransportOptions:
    """libnq settings without a net-queue counterpart; None keeps libnq's
    default.  Times are in seconds."""
    send_limit: int | None = None
    handshake_timeout: float | None = None
    keepalive: float | None = None
    close_timeout: float | None = None
    mqtt_qos: int | None = None
    mqtt_prefix: str = ""
    #: client reconnection (libnq >= 1.1): the first delay before connecting
    #: again after a loss or a failed connect (None: no reconnection), the
    #: longest delay, and how long to keep trying (None: forever)
    reconnect: float | None = None
    reconnect_max: float | None = None
    reconnect_give_up: float | None = None
    #: acknowledged delivery (libnq >= 1.2), between libnq peers that both
    #: ask for it over TCP or TLS: a put's future completes when the peer
    #: has the message, and a reconnecting client's session goes on where
    #: it stopped, nothing lost or repeated; with anyone else, net-queue's
    #: meaning.  resume: how long a server keeps a lost peer's session for
    #: its return (None: libnq's 60 s)
    acknowledged: bool = False
    resume: float | None = None


@dataclass(order=False, slots=True, frozen=True)
class EventOptions:
    """Peer events (net-queue 2.5's names): ``ini(peer)`` when a peer has
    introduced itself, ``fin(peer)`` when it has gone, however it went; with
    ``reason=True`` fin is called as ``fin(peer, reason)``, reason None for
    a clean close or the :class:`nq.Error` that ended the connection
    (``nq.ConnectionLost``, ``nq.Replaced``, ...).  A reconnecting client
    (``TransportOptions.reconnect``) also calls ``reconnecting(server,
    reason)`` before each new attempt: the last server it knew (None before
    the first) and the error that ended the last connection or attempt.
    They run on one thread of the communicator, in order, and should return
    quickly."""
    ini: abc.Callable[[uuid.UUID], typing.Any] | None = None
    fin: abc.Callable[..., typing.Any] | None = None
    reason: bool = False
    reconnecting: abc.Callable[..., typing.Any] | None = None


@dataclass(order=False, slots=True, frozen=True)
class CommunicatorOptions:
    """Communicator options."""
    id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    netloc: NetworkLocation = NetworkLocation()
    connection: ConnectionOptions = ConnectionOptions()
    serialization: SerializationOptions = SerializationOptions()
    security: SecurityOptions | None = None
    workers: int = 1
    transport: TransportOptions = TransportOptions()
    events: EventOptions | None = None
