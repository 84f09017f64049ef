"""Communicator options, with the names of both net-queue generations.

Code written for net-queue 1.1.1 and code written for net-queue 2.x run
with only the import changed: where 2.x renamed an option (1.1's
``ConnectionOptions.protocol_size`` is 2.x's ``transport_size``,
``SecurityOptions.certificate`` is ``cert``) both names are accepted and
mean the same thing, and giving both with different values is a
``ValueError``.  Positional arguments follow the order of the generation
they belong to.  One default differs from net-queue 2.x on purpose:
``drop_oldest`` is False, so a full receive queue holds the sender back
instead of dropping messages; a program that wants 2.x's policy sets
``drop_oldest=True`` itself.
"""

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


_T = typing.TypeVar("_T")


@dataclass(slots=True, frozen=True)
class Message(typing.Generic[_T]):
    """A received message: who sent it and what (``Message[T]`` as in
    net-queue 2.x)."""
    peer: uuid.UUID
    data: _T


class NetworkLocation(NamedTuple):
    """Network location: for TCP the server's address, for MQTT the broker's."""
    host: str = "127.0.0.1"
    port: int = 51966

    def __str__(self):
        return f"{self.host}:{self.port}"


_MIB = 1024 ** 2


def _init_fields(obj, args, kwargs, orders, defaults):
    """Sets a frozen dataclass's fields from positional arguments in the
    order of the generation they match (the first order whose test
    accepts them) and from keywords, with defaults for the rest."""
    cls = type(obj).__name__
    order = next(names for names, accepts in orders if accepts(args))
    if len(args) > len(order):
        raise TypeError(f"{cls}() takes at most {len(order)} positional arguments "
                        f"({len(args)} given)")
    values = dict(kwargs)
    for name, value in zip(order, args):
        if name in values:
            raise TypeError(f"{cls}() got multiple values for argument {name!r}")
        values[name] = value
    unknown = set(values) - set(defaults)
    if unknown:
        raise TypeError(f"{cls}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    for name, default in defaults.items():
        value = values.get(name, default)
        if isinstance(value, _Factory):
            value = value.make()
        object.__setattr__(obj, name, value)


def _one_of(obj, old, new, default):
    """Resolves an option with two names (net-queue 1.1's and 2.x's): both
    end up holding the value given, or default when neither was."""
    a, b = getattr(obj, old), getattr(obj, new)
    if a is not None and b is not None and a != b:
        raise ValueError(f"{type(obj).__name__}: {old}={a!r} and {new}={b!r} name the same "
                         f"option (net-queue 1.1's and 2.x's spelling) with different values")
    value = default if a is None and b is None else (a if a is not None else b)
    object.__setattr__(obj, old, value)
    object.__setattr__(obj, new, value)


class _Factory:
    def __init__(self, make):
        self.make = make


@dataclass(order=False, slots=True, frozen=True, init=False)
class ConnectionOptions:
    """Connection tuning, with net-queue's names and defaults.

    ``ConnectionOptions(get_merge, put_merge, efficient_size, protocol_size,
    queue_size, message_size)`` as in net-queue 1.1, or
    ``ConnectionOptions(get_merge, put_merge, drop_oldest, transport_size,
    queue_size, message_size)`` as in 2.x.  ``protocol_size`` and
    ``transport_size`` are one option: the largest piece handed to the
    transport (libnq's 4 MiB when neither is given).  ``queue_size`` is the
    number of received messages held per peer; when a peer has that many
    waiting, libnq stops reading from it until ``get`` makes room, or, with
    ``drop_oldest=True`` (net-queue 2.x's default, not libnq's), drops that
    peer's oldest waiting message for each new one (``stats()["dropped"]``).
    """
    get_merge: bool
    put_merge: bool
    efficient_size: int
    protocol_size: int
    queue_size: int
    message_size: int
    transport_size: int
    drop_oldest: bool

    def __init__(self, *args, **kwargs):
        _init_fields(self, args, kwargs, _CONNECTION_ORDERS, _CONNECTION_DEFAULTS)
        _one_of(self, "protocol_size", "transport_size", 4 * _MIB)


_CONNECTION_DEFAULTS = {
    "get_merge": True, "put_merge": True, "efficient_size": 64 * 1024,
    "protocol_size": None, "queue_size": 1 * 1024 ** 3, "message_size": 1 * 1024 ** 4,
    "transport_size": None, "drop_oldest": False,
}
# 2.x put drop_oldest (a bool) where 1.1 had efficient_size (an int).
_CONNECTION_ORDERS = (
    (("get_merge", "put_merge", "drop_oldest", "transport_size", "queue_size", "message_size"),
     lambda args: len(args) > 2 and isinstance(args[2], bool)),
    (("get_merge", "put_merge", "efficient_size", "protocol_size", "queue_size", "message_size"),
     lambda args: True),
)


@dataclass(order=False, slots=True, frozen=True)
class SerializationOptions:
    """How objects become bytes (dump) and bytes become objects (load)."""
    load: abc.Callable[[bytes], typing.Any] = PickleSerializer().load
    dump: abc.Callable[[typing.Any], typing.Any] = PickleSerializer().dump


_CLIENT_AUTH = {None: None, "optional": 1, "required": 2}
_MIN_VERSION = {None: None, "1.2": 12, "1.3": 13}


@dataclass(order=False, slots=True, frozen=True)
class SecurityOptions:
    """TLS, as in net-queue: a server gives its PEM ``key`` and certificate
    chain ``cert``; a client gives in ``cert`` the PEM certificates it
    trusts, or nothing for the system's store.  ``certificate`` (net-queue
    1.1) and ``cert`` (2.x) are one option.

    libnq adds client certificates (libnq >= 1.3 over TCP, 1.4 over MQTT
    and gRPC; see docs/credentials.md for what each transport takes),
    keyword fields after net-queue's:

    - A client given a ``key`` presents ``key`` and ``cert`` (its own chain)
      when the server asks, and trusts ``ca``, ``ca_dir`` or ``ca_pem``;
      without them it trusts ``cert`` as net-queue's client does (net-queue
      code gives both roles the same key and cert, and its client ignores
      the key).
    - ``key_pem`` and ``cert_pem``: the key and chain as PEM text instead of
      files (a secret from the environment, never written to disk), in
      either role; they go together and replace ``key`` and ``cert``.
    - ``ca`` (a PEM file), ``ca_dir`` (a directory hashed by ``openssl
      rehash``), ``ca_pem`` (PEM text): the trust anchors, any of them; a
      client checks its server against them, a server its clients'
      certificates.
    - ``client_auth``: None (clients are not asked, net-queue's
      behaviour), ``"optional"`` (a certificate shown must verify against
      the anchors, a client without one is served) or ``"required"``.  A
      refused client's ``get``, futures and ``close`` raise
      :class:`nq.AuthenticationError`.
    - ``min_version``: the lowest TLS version accepted, ``"1.2"`` (None,
      the default) or ``"1.3"``.

    :meth:`nq.Communicator.identity` tells what a peer presented.

    Logins, tokens and server names (libnq >= 1.4); a transport that cannot
    use one raises :class:`nq.NotSupported` when the communicator is made,
    and credentials the other side refuses raise
    :class:`nq.AuthenticationError`:

    - ``user`` and ``password``: the MQTT broker login of either role
      (``password`` may be None).  Given alone (with ``secret`` at most)
      they leave TLS off, unless ``tls=True``: the password then travels
      in clear text.
    - ``token``: a gRPC client's bearer token, sent with every call over
      TLS.  ``accept_tokens``: a gRPC server's ``{token: identity}``; once
      given, a client without one of these tokens is refused, and
      :meth:`nq.Communicator.identity` names an accepted client
      ``"token:<identity>"``.
    - ``secret``: a callable without arguments returning the password (with
      ``user``) or the token as str or bytes, called again before every
      connection attempt (and reconnection) so that an expiring secret is
      renewed in time; it replaces ``password`` or ``token``.  It runs on
      libnq's threads (or the MQTT library's), must return quickly and
      must not use the communicator; an exception or another type fails
      the attempt with :class:`nq.AuthenticationError` and is reported as
      a ``RuntimeWarning``.
    - ``server_name``: the name a client expects in the server's
      certificate and sends as SNI (gRPC's ``:authority`` too), when it is
      not the host connected to.
    - ``alpn``: the ALPN protocols offered to an MQTT broker over TLS, a
      list of names (``["x-amzn-mqtt-ca"]``).
    - ``tls``: None (the default) turns TLS on unless the options hold
      nothing but a login; True or False decides.
    """
    key: Path | str | None = None
    certificate: Path | str | None = None
    cert: Path | str | None = None
    ca: Path | str | None = None
    ca_dir: Path | str | None = None
    ca_pem: str | None = None
    key_pem: str | None = None
    cert_pem: str | None = None
    client_auth: str | None = None
    min_version: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    accept_tokens: abc.Mapping[str, str] | None = None
    secret: abc.Callable[[], str | bytes] | None = None
    server_name: str | None = None
    alpn: abc.Sequence[str] | None = None
    tls: bool | None = None

    def __post_init__(self):
        _one_of(self, "certificate", "cert", None)
        _check_credentials(self)
        if self.accept_tokens is not None:
            object.__setattr__(self, "accept_tokens", dict(self.accept_tokens))
        if self.alpn is not None:
            object.__setattr__(self, "alpn", tuple(self.alpn))
        if (self.key_pem is None) != (self.cert_pem is None):
            raise ValueError("SecurityOptions: key_pem and cert_pem go together")
        if self.key_pem is not None and (self.key is not None or self.cert is not None):
            raise ValueError("SecurityOptions: key_pem and cert_pem replace key and cert; "
                             "give one pair (trust anchors go in ca, ca_dir or ca_pem)")
        if self.client_auth not in _CLIENT_AUTH:
            raise ValueError(f"SecurityOptions: client_auth={self.client_auth!r} is not "
                             f"None, 'optional' or 'required'")
        if self.min_version not in _MIN_VERSION:
            raise ValueError(f"SecurityOptions: min_version={self.min_version!r} is not "
                             f"None, '1.2' or '1.3'")


_LOGIN_ONLY = ("user", "password", "secret")


def _check_credentials(security):
    """Raises ValueError or TypeError naming what is wrong with the
    credentials of security (libnq >= 1.4)."""
    def text(name, value, allow_empty=False):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"SecurityOptions: {name} is a str, not {type(value).__name__}")
        if value == "" and not allow_empty:
            raise ValueError(f"SecurityOptions: {name} is empty (leave it None for none)")

    text("user", security.user)
    text("password", security.password, allow_empty=True)
    text("token", security.token)
    text("server_name", security.server_name)
    if security.password is not None and security.user is None:
        raise ValueError("SecurityOptions: a password needs a user")
    if security.secret is not None and not callable(security.secret):
        raise TypeError(f"SecurityOptions: secret is a callable returning str or bytes, "
                        f"not {type(security.secret).__name__}")
    tokens = security.accept_tokens
    if tokens is not None:
        if not isinstance(tokens, abc.Mapping):
            raise TypeError(f"SecurityOptions: accept_tokens is a dict of token -> identity, "
                            f"not {type(tokens).__name__}")
        for token, identity in tokens.items():
            if not isinstance(token, str) or not isinstance(identity, str) or not token:
                raise ValueError(f"SecurityOptions: accept_tokens maps non-empty str tokens "
                                 f"to str identities, not {token!r}: {identity!r}")
    alpn = security.alpn
    if alpn is not None:
        if isinstance(alpn, (str, bytes)) or not isinstance(alpn, abc.Iterable):
            raise TypeError(f"SecurityOptions: alpn is a list of protocol names, "
                            f"not {type(alpn).__name__}")
        for name in alpn:
            if (not isinstance(name, str) or not name or "," in name
                    or len(name.encode()) > 255):
                raise ValueError(f"SecurityOptions: alpn protocol {name!r} is not a name of "
                                 f"1 to 255 bytes without a comma")
        if not alpn:
            raise ValueError("SecurityOptions: alpn is empty (leave it None for none)")
    if security.tls not in (None, True, False):
        raise ValueError(f"SecurityOptions: tls={security.tls!r} is not None, True or False")


def _wants_tls(security):
    """Whether security turns TLS on: its tls field, or when that is None,
    unless it holds nothing but a login."""
    if security.tls is not None:
        return security.tls
    given = [field.name for field in dataclasses.fields(security)
             if getattr(security, field.name) is not None and field.name != "tls"]
    return not given or any(name not in _LOGIN_ONLY for name in given) or security.user is None


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
    #: MQTT (libnq >= 1.4): the client id given to the broker instead of
    #: the communicator's id in hex (for brokers that bind client ids to
    #: logins or cap their length), and the largest publish the broker
    #: takes, in bytes (None: libnq's slices; else 1024 to 2**28)
    mqtt_client_id: str | None = None
    mqtt_max_publish: int | None = None


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


@dataclass(order=False, slots=True, frozen=True, init=False)
class CommunicatorOptions:
    """Communicator options: ``CommunicatorOptions(id, netloc, connection,
    serialization, security, workers, transport, events)``, or in net-queue
    2.x's order ``(id, netloc, connection, serialization, security, events,
    workers)``; keywords are the same in both."""
    id: uuid.UUID
    netloc: NetworkLocation
    connection: ConnectionOptions
    serialization: SerializationOptions
    security: SecurityOptions | None
    workers: int
    transport: TransportOptions
    events: EventOptions | None

    def __init__(self, *args, **kwargs):
        _init_fields(self, args, kwargs, _COMMUNICATOR_ORDERS, _COMMUNICATOR_DEFAULTS)


_COMMUNICATOR_DEFAULTS = {
    "id": _Factory(uuid.uuid4), "netloc": NetworkLocation(), "connection": ConnectionOptions(),
    "serialization": SerializationOptions(), "security": None, "workers": 1,
    "transport": TransportOptions(), "events": None,
}
# 2.x put events (an EventOptions) where 1.1 had workers (an int).
_COMMUNICATOR_ORDERS = (
    (("id", "netloc", "connection", "serialization", "security", "events", "workers"),
     lambda args: len(args) > 5 and isinstance(args[5], EventOptions)),
    (("id", "netloc", "connection", "serialization", "security", "workers", "transport",
      "events"), lambda args: True),
)
