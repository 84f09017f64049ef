"""net-queue 1.1.1 as a conformance peer (peer.py --impl netqueue).

net-queue exchanges raw bytes here (its BytesSerializer), which is what the
libnq peers send and receive.  Four defects of net-queue 1.1.1 would make
runs fail for reasons the conformance cases are not about, so this module
works around them without changing a byte on the wire:

- BytesSerializer.load raises BlockingIOError on a zero-length message
  (Stream.read of nothing): load_bytes returns b"" instead.
- A TLS client registers its socket with the selector before its
  constructor sets the session up; the server's session tickets make the
  socket readable at once, the selector thread sets the session up first and
  the constructor then fails (bidict ValueDuplicationError).  _connection_ini
  is made idempotent per connection.
- An MQTT or gRPC client's put races the server's INI: the session is
  re-keyed under the server's id between the put's lookup and its use
  (KeyError from put, or in an MQTT worker, and the put's future never
  resolves), as can an MQTT client's close (KeyError from _session_fin).
  put, and the MQTT client's _c2s and _session_fin, run under the
  communicator's lock.
- An MQTT server returns from its constructor before the broker acknowledged
  its subscription, so a client's INI published at once (QoS 0) is lost.
  The constructor waits for the SUBACK.

Several net-queue gRPC clients in one process would share one HTTP/2
connection (grpcio pools connections per target), and servers key net-queue
sessions by connection, so each client channel gets a connection of its own
(grpc.use_local_subchannel_pool), as a client in a process of its own has.

get has no timeout in net-queue; the backend gives it one by making the
communicator's event queue honour the run's deadline (queue.Empty then ends
the get).  Defects the cases do observe stay visible; docs/conformance.md
lists them.
"""

import queue
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import net_queue
import net_queue.core.comm
import net_queue.grpc
import net_queue.grpc.client
import net_queue.mqtt
import net_queue.mqtt.client
from net_queue.core import CommunicatorOptions, NetworkLocation, SecurityOptions, SerializationOptions
from net_queue.utils.streamtools import BytesSerializer

# The workarounds the interop tests' net-queue peer uses too.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "interop"))
from netqueue_workarounds import (  # noqa: E402
    guard_connection_ini,
    load_bytes,
    pin_client_sessions,
    subscribe_before_open,
)

_local = threading.local()


class _DeadlineQueue(queue.SimpleQueue):
    """The communicator's event queue: a blocking get without a timeout
    waits until the calling run's deadline (when it has one)."""

    def get(self, block=True, timeout=None):
        deadline = getattr(_local, "deadline", None)
        if block and timeout is None and deadline is not None:
            timeout = max(0.0, deadline - time.monotonic())
        return super().get(block, timeout)


def _connection_per_grpc_client():
    cls = net_queue.grpc.Protocol
    original = cls.__init__

    def init(self, options=CommunicatorOptions()):
        original(self, options)
        self._grpc_options["grpc.use_local_subchannel_pool"] = 1

    cls.__init__ = init


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NetQueueBackend:
    """net-queue 1.1.1, with the work-arounds above."""

    name = "netqueue"

    def __init__(self):
        net_queue.core.comm.SimpleQueue = _DeadlineQueue
        guard_connection_ini()
        pin_client_sessions()
        _connection_per_grpc_client()
        subscribe_before_open(30)
        self._dump = BytesSerializer().dump

    def open(self, role, protocol, host, port, ident, tls, timeout):
        kinds = {"tcp": net_queue.Protocol.TCP, "tls": net_queue.Protocol.TCP,
                 "mqtt": net_queue.Protocol.MQTT, "grpc": net_queue.Protocol.GRPC}
        if role == "server" and protocol == "grpc" and port == 0:
            # net-queue drops the port grpc bound, so it needs a fixed one.
            port = _free_port()
        if any(tls.get(k) for k in ("ca", "client_auth", "token", "accept_token")):
            raise ValueError("net-queue's SecurityOptions has no trust anchors, client certificates or tokens")
        security = None
        if tls.get("cert"):
            key = tls.get("key")
            security = SecurityOptions(key=Path(key) if key else None, certificate=Path(tls["cert"]))
        options = CommunicatorOptions(
            id=ident,
            netloc=NetworkLocation(host, port),
            serialization=SerializationOptions(load=load_bytes, dump=self._dump),
            security=security,
        )
        purpose = net_queue.Purpose.SERVER if role == "server" else net_queue.Purpose.CLIENT
        comm = net_queue.new(kinds[protocol], purpose, options)
        if role == "server" and protocol in ("tcp", "tls"):
            port = comm._comm.getsockname()[1]
        return comm, port

    def put(self, comm, data, peers):
        return comm.put(data, *peers)

    def wait(self, future, timeout):
        future.result(timeout=timeout)

    def get(self, comm, timeout):
        _local.deadline = time.monotonic() + timeout
        try:
            message = comm.get()
        finally:
            _local.deadline = None
        return message.peer, message.data

    def close(self, comm):
        comm.close()

    def release(self, comm):
        # net-queue stops an MQTT communicator's network loop without a
        # DISCONNECT, so the broker would keep the connection (and a
        # server's c2s/+ subscription) until its keep-alive runs out.
        client = getattr(comm, "_client", None)
        if client is not None and comm._closed:
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - best effort after the run
                pass

    def error_name(self, exc):
        if isinstance(exc, ssl.SSLError):
            return "tls"
        code = getattr(exc, "code", None)
        if callable(code):
            # A failed gRPC round (grpc.RpcError): its status names it.
            return "other:grpc " + getattr(code(), "name", str(code()))
        for kind, name in ((ConnectionAbortedError, "closed"), (ConnectionResetError, "connection_reset"),
                           (ConnectionRefusedError, "refused"), (queue.Empty, "timeout"),
                           (TimeoutError, "timeout"), (AssertionError, "invalid")):
            if isinstance(exc, kind):
                return name
        return "other:" + type(exc).__name__
