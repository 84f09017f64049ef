"""The communicator: put, get and close on top of libnq."""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
import uuid
import warnings
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from . import errors
from . import nqraw as _raw
from .options import (_CLIENT_AUTH, _MIN_VERSION, CommunicatorOptions, Message, Protocol,
                      Purpose, _wants_tls)

__all__ = ("Communicator", "new")

_PROTOCOLS = {Protocol.TCP: _raw.NQ_TCP, Protocol.MQTT: _raw.NQ_MQTT, Protocol.GRPC: _raw.NQ_GRPC}
_PURPOSES = {Purpose.CLIENT: _raw.NQ_CLIENT, Purpose.SERVER: _raw.NQ_SERVER}

# A blocking get waits in slices this long, so that signal handlers
# (KeyboardInterrupt) run while it waits; a message ends the wait at once.
_GET_SLICE_MS = 250


def _ms(seconds):
    """Seconds (None: libnq's default) to whole milliseconds, rounded up."""
    return None if seconds is None else max(0, math.ceil(seconds * 1000))


def _secret_source(secret):
    """secret (SecurityOptions.secret) as libnq's secret callback calls it:
    what it returns when that is str or bytes, else None, which fails the
    attempt; an exception or another type is reported as a warning, since
    the failure itself only reaches the application as NQ_EAUTH."""
    def source():
        try:
            value = secret()
        except Exception as exc:  # noqa: BLE001 - reported, and the attempt fails
            warnings.warn(f"nq: the secret callback failed, so the connection attempt "
                          f"fails: {exc!r}", RuntimeWarning)
            return None
        if isinstance(value, (str, bytes)):
            return value
        warnings.warn(f"nq: the secret callback returned {type(value).__name__}, not str or "
                      f"bytes, so the connection attempt fails", RuntimeWarning)
        return None
    return source


def _set_credentials(opts, security):
    """Sets the logins, tokens and names of security (libnq >= 1.4) in
    opts; returns the secret callback given to libnq, or None."""
    if security.user is not None:
        errors.check(opts.set_login(security.user, security.password))
    if security.token is not None:
        errors.check(opts.set_token(security.token))
    for token, identity in (security.accept_tokens or {}).items():
        errors.check(opts.accept_token(token, identity))
    if security.server_name is not None:
        errors.check(opts.set_tls_server_name(security.server_name))
    if security.alpn is not None:
        errors.check(opts.set_tls_alpn(",".join(security.alpn)))
    if security.secret is None:
        return None
    source = _secret_source(security.secret)
    errors.check(opts.set_secret(source))
    return source


def _set_security(opts, security, purpose):
    """Turns TLS on in opts as security says (see SecurityOptions): a
    client's cert is what it trusts unless anchors are given, and with a
    key it is also the client's own chain."""
    if not _wants_tls(security):
        return

    def path(value):
        return None if value is None else str(value)

    key, cert = path(security.key), path(security.certificate)
    if security.key_pem is not None:
        errors.check(opts.set_tls_identity(security.key_pem, security.cert_pem, True))
    elif key is not None and purpose is Purpose.CLIENT:
        errors.check(opts.set_tls_identity(key, cert, False))
    else:
        errors.check(opts.set_tls(key, cert))
    anchors = (path(security.ca), path(security.ca_dir), security.ca_pem)
    if (all(anchor is None for anchor in anchors) and key is not None and cert is not None
            and purpose is Purpose.CLIENT):
        # net-queue code gives a client the server's key and cert alike
        # (its client ignores the key and trusts cert): so does this one.
        anchors = (cert, None, None)
    if any(anchor is not None for anchor in anchors):
        errors.check(opts.set_tls_trust(*anchors))
    for option, value in ((_raw.NQ_OPT_TLS_CLIENT_AUTH, _CLIENT_AUTH[security.client_auth]),
                          (_raw.NQ_OPT_TLS_MIN_VERSION, _MIN_VERSION[security.min_version])):
        if value is not None:
            errors.check(opts.set_int(option, value))


def _raw_options(options, purpose):
    """A libnq options object for options in the role purpose (the caller
    frees it), and the secret callback it calls (None without one), which
    the communicator keeps."""
    opts = _raw.Opts()
    errors.check(opts.status())
    errors.check(opts.set_id(options.id.bytes))
    errors.check(opts.set_netloc(str(options.netloc[0]), int(options.netloc[1])))
    conn = options.connection
    transport = options.transport
    ints = [
        (_raw.NQ_OPT_GET_MERGE, int(bool(conn.get_merge))),
        (_raw.NQ_OPT_PUT_MERGE, int(bool(conn.put_merge))),
        (_raw.NQ_OPT_EFFICIENT_SIZE, conn.efficient_size),
        (_raw.NQ_OPT_PROTOCOL_SIZE, conn.protocol_size),
        (_raw.NQ_OPT_QUEUE_SIZE, conn.queue_size),
        (_raw.NQ_OPT_MESSAGE_SIZE, conn.message_size),
        (_raw.NQ_OPT_WORKERS, options.workers),
        (_raw.NQ_OPT_SEND_LIMIT, transport.send_limit),
        (_raw.NQ_OPT_HANDSHAKE_TIMEOUT_MS, _ms(transport.handshake_timeout)),
        (_raw.NQ_OPT_KEEPALIVE_MS, _ms(transport.keepalive)),
        (_raw.NQ_OPT_CLOSE_TIMEOUT_MS, _ms(transport.close_timeout)),
        (_raw.NQ_OPT_MQTT_QOS, transport.mqtt_qos),
        (_raw.NQ_OPT_RECONNECT_MS, _ms(transport.reconnect)),
        (_raw.NQ_OPT_RECONNECT_MAX_MS, _ms(transport.reconnect_max)),
        (_raw.NQ_OPT_RECONNECT_GIVE_UP_MS, _ms(transport.reconnect_give_up)),
        (_raw.NQ_OPT_DELIVERY, _raw.NQ_DELIVERY_ACKED if transport.acknowledged else None),
        (_raw.NQ_OPT_RESUME_MS, _ms(transport.resume)),
        (_raw.NQ_OPT_DROP_OLDEST, 1 if conn.drop_oldest else None),
        (_raw.NQ_OPT_MQTT_MAX_PUBLISH, transport.mqtt_max_publish),
    ]
    for option, value in ints:
        if value is not None:
            errors.check(opts.set_int(option, int(value)))
    if transport.mqtt_prefix:
        errors.check(opts.set_mqtt_prefix(transport.mqtt_prefix))
    if transport.mqtt_client_id is not None:
        errors.check(opts.set_mqtt_client_id(transport.mqtt_client_id))
    secret = None
    if options.security is not None:
        _set_security(opts, options.security, purpose)
        secret = _set_credentials(opts, options.security)
    return opts, secret


def _dispatch_events(events, handlers):
    """Body of the thread that calls EventOptions' ini and fin, in order, as
    libnq reports peer events."""
    event = _raw.Event()
    while events.next(-1, event) != _raw.NQ_ECLOSED:
        peer = uuid.UUID(bytes=event.peer())
        try:
            if event.kind() == _raw.NQ_EVENT_CONNECTED and handlers.ini is not None:
                handlers.ini(peer)
            elif event.kind() == _raw.NQ_EVENT_DISCONNECTED and handlers.fin is not None:
                if handlers.reason:
                    reason = None if event.reason() == _raw.NQ_OK else errors.from_code(event.reason())
                    handlers.fin(peer, reason)
                else:
                    handlers.fin(peer)
            elif event.kind() == _raw.NQ_EVENT_RECONNECTING and handlers.reconnecting is not None:
                server = None if peer.int == 0 else peer
                handlers.reconnecting(server, None if event.reason() == _raw.NQ_OK
                                      else errors.from_code(event.reason()))
        except Exception as exc:  # noqa: BLE001 - one handler's trouble must not stop the rest
            import warnings
            warnings.warn(f"nq event handler failed: {exc!r}", RuntimeWarning)


def _contiguous(data):
    """A C-contiguous memoryview of a bytes-like object (copied only when
    it is not contiguous)."""
    view = memoryview(data)
    return view if view.c_contiguous else memoryview(view.tobytes())


def _peer_bytes(peer):
    """The 16 bytes of a peer given as a UUID, its text or its bytes."""
    if isinstance(peer, uuid.UUID):
        return peer.bytes
    if isinstance(peer, str):
        return uuid.UUID(peer).bytes
    raw = bytes(peer)
    if len(raw) != 16:
        raise errors.InvalidArgument(f"a peer id is 16 bytes, not {len(raw)}")
    return raw


class _PutFuture(Future):
    """The future of one put, whose ``cancel()`` asks libnq to withdraw the
    put (see :meth:`Communicator.put`).

    withdraw() is libnq's cancel for this put: the number of copies it took
    back, 0 when nothing changed, or a negative NQ_* code."""

    def __init__(self, withdraw):
        super().__init__()
        self._withdraw = withdraw

    def cancel(self):
        if self.done():
            return self.cancelled()
        if self._withdraw() > 0:
            return super().cancel()
        return self.cancelled()

    def _withdrawn(self):
        """libnq reported the put withdrawn: cancelled, if cancel() has not
        done it already."""
        super().cancel()


def _resolve_futures(done, pending, lock):
    """Body of the thread that resolves put futures as libnq reports them.

    It holds no reference to the communicator, so an unused communicator can
    still be collected (and closed by __del__)."""
    completion = _raw.Completion()
    while done.next(-1, completion) != _raw.NQ_ECLOSED:
        with lock:
            # Dropping the view ends the buffer export (the put's wrapper may
            # still hold its own for a moment, so it is not released here).
            # A cancelled future's view is held until here too: the copies
            # of a broadcast that had started are read until libnq reports.
            future, _view = pending.pop(completion.token)
        del _view
        try:
            if completion.result == _raw.NQ_OK:
                future.set_result(None)
            elif completion.result == _raw.NQ_ECANCELED:
                future._withdrawn()
            else:
                future.set_exception(errors.from_code(completion.result))
        except Exception:  # noqa: BLE001 - one future's trouble must not stop the others
            pass


class Communicator:
    """A server (many clients) or a client (one server).

    Operations are thread-safe.  Communicator has ``with`` support: leaving
    the block closes it.
    """

    def __init__(self, protocol: Protocol | str = Protocol.TCP,
                 purpose: Purpose | str = Purpose.CLIENT,
                 options: CommunicatorOptions | None = None) -> None:
        self._raw = None
        self._closed = False
        self._close_lock = threading.Lock()
        self.options = CommunicatorOptions() if options is None else options
        self.protocol = Protocol(protocol)
        self.purpose = Purpose(purpose)
        # libnq may call the secret callback from its threads for as long
        # as the communicator lives: it is kept here as well as in libnq.
        opts, self._secret = _raw_options(self.options, self.purpose)
        self._events = None
        if self.options.events is not None:
            self._events = _raw.Events()
            errors.check(opts.set_events(self._events))
        comm = _raw.Comm()
        errors.check(comm.open(_PROTOCOLS[self.protocol], _PURPOSES[self.purpose], opts))
        self._id = uuid.UUID(bytes=comm.id())
        self._dispatcher = None
        if self._events is not None:
            self._dispatcher = threading.Thread(
                target=_dispatch_events, args=(self._events, self.options.events),
                name=f"nq-events-{self._id}", daemon=True)
            self._dispatcher.start()
        self._load = self.options.serialization.load
        self._dump = self.options.serialization.dump
        self._done = _raw.Completions()
        self._pending = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._resolver = threading.Thread(
            target=_resolve_futures, args=(self._done, self._pending, self._lock),
            name=f"nq-futures-{self._id}", daemon=True)
        self._resolver.start()
        self._raw = comm

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.protocol!s}, {self.purpose!s}, id={self._id})"

    @property
    def id(self) -> uuid.UUID:
        """This communicator's identity (``options.id``)."""
        return self._id

    @property
    def local_port(self) -> int:
        """A server's listening port (useful with port 0); a client's source port."""
        return errors.check(self._raw.local_port())

    @property
    def server_id(self) -> uuid.UUID | None:
        """A client's server identity once known, else None."""
        raw = self._raw.server_id()
        return None if raw == bytes(16) else uuid.UUID(bytes=raw)

    def peers(self) -> list[uuid.UUID]:
        """The identities of the connected clients (a server) or server (a client)."""
        ids = _raw.Ids()
        errors.check(self._raw.peers(ids))
        return [uuid.UUID(bytes=ids.at(i)) for i in range(ids.size())]

    def identity(self, peer: uuid.UUID) -> str:
        """What a connected peer presented to authenticate itself over TLS
        (libnq >= 1.3): the subject of its certificate in RFC 2253 form,
        then one line per subject alternative name, as in
        ``"CN=client-a\\nDNS:client-a.example\\nIP:127.0.0.1"``; ``""`` when
        it presented none (plain TCP, or a client not asked for one).  A
        client asks about its server (``server_id``).  Raises
        :class:`nq.NoPeer` when peer is not connected now."""
        text = _raw.Text()
        errors.check(self._raw.peer_identity(_peer_bytes(peer), text))
        return text.bytes().decode("utf-8", "replace")

    def fileno(self) -> int:
        """The readiness descriptor (libnq >= 1.2): readable exactly while
        :meth:`get` would return at once, level-triggered, for ``select``,
        ``selectors`` or an event loop's ``add_reader``.  Only its
        readability means anything; the communicator owns and closes it."""
        return errors.check(self._raw.fd())

    def stats(self) -> dict[str, int]:
        """libnq's counters, by name (messages_in, bytes_out, peers, ...)."""
        names = {
            "messages_in": _raw.NQ_STAT_MSGS_IN, "messages_out": _raw.NQ_STAT_MSGS_OUT,
            "bytes_in": _raw.NQ_STAT_BYTES_IN, "bytes_out": _raw.NQ_STAT_BYTES_OUT,
            "peers": _raw.NQ_STAT_PEERS, "connections": _raw.NQ_STAT_CONNECTIONS,
            "protocol_errors": _raw.NQ_STAT_PROTOCOL_ERRORS,
            "tls_errors": _raw.NQ_STAT_TLS_ERRORS,
            "connections_lost": _raw.NQ_STAT_CONNECTIONS_LOST,
            "handshake_timeouts": _raw.NQ_STAT_HANDSHAKE_TIMEOUTS,
            "read_pauses": _raw.NQ_STAT_READ_PAUSES,
            "reconnects": _raw.NQ_STAT_RECONNECTS,
            "acknowledged": _raw.NQ_STAT_ACKED, "resumed": _raw.NQ_STAT_RESUMED,
            "dropped": _raw.NQ_STAT_DROPPED, "refused": _raw.NQ_STAT_REFUSED,
        }
        return {name: errors.check(self._raw.stat(code)) for name, code in names.items()}

    def put(self, data: Any, *peers: uuid.UUID) -> Future[None]:
        """Publish data to peers; returns a ``concurrent.futures.Future``.

        A client sends to its server and takes no peers.  A server sends to
        the listed peers, or to every client when none are listed.  The
        serialized bytes are sent without a copy: a bytes-like ``data`` given
        to BytesSerializer must not be modified until the future resolves.
        The future fails with an :class:`nq.Error` (a ConnectionError) when
        the communicator is closed, a peer is not connected or is lost.
        Invalid arguments raise at once.

        The future's ``cancel()`` withdraws the put (libnq >= 1.2): every
        copy not yet started on the wire is taken out of its queue and never
        reaches its peer.  When any was, ``cancel()`` returns True and the
        future is cancelled at once (``result()`` raises
        ``concurrent.futures.CancelledError``); for a put to several peers
        the copies that had started still go out, and a bytes-like ``data``
        is still read by them until they are done.  Otherwise (every copy
        had started, the put has completed, the communicator is closed) it
        returns False and the put goes on.  It waits briefly for libnq's
        I/O threads.  Cancelling an asyncio task awaiting ``nq.aio``'s
        ``put`` withdraws the put the same way.
        """
        payload = self._dump(data)
        pieces = payload if isinstance(payload, list) else None
        if pieces is None:
            view = _contiguous(payload)
        else:
            view = [_contiguous(piece) for piece in pieces]
            chunks = _raw.Chunks()
            for piece in view:
                errors.check(chunks.add(piece))
        peer_bytes = b"".join(_peer_bytes(p) for p in peers)
        token = next(self._tokens)
        # The withdrawal holds the raw communicator, not this one, which may
        # still be collected (libnq's handle then lives until the future).
        future = _PutFuture(functools.partial(self._raw.cancel, self._done, token))
        with self._lock:
            self._pending[token] = (future, view)
        if pieces is None:
            rc = self._raw.put(view, peer_bytes, self._done, token)
        else:
            rc = self._raw.put_chunks(chunks, peer_bytes, self._done, token)
        if rc != _raw.NQ_OK:
            with self._lock:
                del self._pending[token]
            for v in view if pieces is not None else (view,):
                v.release()
            if rc == _raw.NQ_EINVAL:
                raise errors.from_code(rc)
            future.set_exception(errors.from_code(rc))
        return future

    def get(self, *peers: uuid.UUID, timeout: float | None = None) -> Message[Any]:
        """Take the next message, waiting up to timeout seconds (None: forever);
        with peers, the next message from one of them, leaving the others'
        messages queued in order (net-queue 2.x's ``get(*peers)``).

        Returns a :class:`nq.Message`.  Raises :class:`nq.Timeout` when the
        time runs out.  After close, queued messages are still returned, then
        :class:`nq.Closed` (a ConnectionAbortedError) is raised; a client
        whose connection failed gets why (:class:`nq.ConnectionLost`, ...).
        """
        peer_bytes = b"".join(_peer_bytes(p) for p in peers)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        msg = _raw.Msg()
        while True:
            wait = _GET_SLICE_MS
            if deadline is not None:
                wait = min(wait, max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            if peers:
                rc = self._raw.get_from(peer_bytes, wait, msg)
            else:
                rc = self._raw.get(wait, msg)
            if rc == _raw.NQ_OK:
                break
            if rc == _raw.NQ_ETIMEDOUT and (deadline is None or time.monotonic() < deadline):
                continue
            raise errors.from_code(rc)
        peer = uuid.UUID(bytes=msg.peer())
        data = msg.data()
        msg.release()
        return Message(peer=peer, data=self._load(data))

    def close(self) -> None:
        """Close the communicator, blocking until done.

        Queued puts are flushed and the close handshake runs; a server waits
        for its clients.  Raises an :class:`nq.Error` when the connection did
        not end cleanly (a client whose server vanished, ...).  Idempotent:
        later calls return at once.
        """
        if self._raw is None:  # never opened
            return
        rc = _raw.NQ_OK
        with self._close_lock:
            first = not self._closed
            if first:
                self._closed = True
                rc = self._raw.close()
                self._done.shutdown()
                if self._events is not None:
                    self._events.shutdown()
        if threading.current_thread() is not self._resolver:
            self._resolver.join()
        if self._dispatcher is not None and threading.current_thread() is not self._dispatcher:
            self._dispatcher.join()
        errors.check(rc)

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, cls: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except errors.Error:
            if exc is None:
                raise

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at collection
            pass


def new(protocol: Protocol | str = Protocol.TCP, purpose: Purpose | str = Purpose.CLIENT,
        options: CommunicatorOptions | None = None) -> Communicator:
    """Create a communicator (net-queue's ``nq.new``).

    ``options`` defaults to a fresh ``CommunicatorOptions()``.  A server binds
    before this returns; a client connects in the background.
    """
    return Communicator(protocol, purpose, options)
